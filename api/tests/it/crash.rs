//! Crash injection (issue #24, suite 1): ingest, paid answers and settlement each run in a child
//! process that is SIGKILLed at a random moment (seeded), then the store is checked as the next
//! start finds it: `tributary verify` and direct checks of the books. Every trial's outcome is
//! counted (inconsistent states, lost or minted credits, doubled payouts) and the test fails on
//! any. CI runs a few trials per workload; `scripts/crash.sh` runs 100 each and records the
//! figures (`TRIBUTARY_CRASH_TRIALS`, `TRIBUTARY_CRASH_SEED`, `TRIBUTARY_CRASH_REPORT`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use tributary::app::batch::HOLD_LEASE;
use tributary_contracts::chain::{ANVIL_KEYS, Anvil, Chain};

use crate::{BOB, Rng, run_ok, tributary, write_corpus_range};

const CAROL: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const DAVE: &str = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65";
const ERIN: &str = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc";
const TREASURY: &str = "0x90F79bf6EB2c4f870365E785982E1f101E93b906";

/// What the next start found after each kill, over one workload's trials.
#[derive(Default)]
struct Report {
    workload: &'static str,
    seed: u64,
    trials: usize,
    /// Children killed before they finished (the others ended first).
    killed: usize,
    /// `verify` failed, the indexes disagreed, or the books did not balance.
    inconsistencies: usize,
    /// Money charged to a payer that no credit accounts for; chunks an interrupted ingest lost.
    lost: usize,
    /// Credits that no charge accounts for.
    minted: usize,
    /// An account paid on chain more than its ledger total.
    doubled_payouts: usize,
    /// Children killed after they had written something (chunks, a hold or a receipt, an
    /// epoch, a payout): kills past the start-up, where the crash recovery had work to do.
    killed_after_writing: usize,
    /// Answers killed while their fee was held (it must lapse within the lease).
    held_at_kill: usize,
    notes: Vec<String>,
    started: Option<Instant>,
}

impl Report {
    fn new(workload: &'static str, seed: u64) -> Report {
        Report { workload, seed, started: Some(Instant::now()), ..Report::default() }
    }

    fn problem(&mut self, kind: &str, detail: String) {
        match kind {
            "inconsistent" => self.inconsistencies += 1,
            "lost" => self.lost += 1,
            "minted" => self.minted += 1,
            "doubled" => self.doubled_payouts += 1,
            _ => unreachable!("{kind}"),
        }
        self.notes.push(format!("trial {}: {kind}: {detail}", self.trials));
    }

    /// Prints the figures (and appends them to `TRIBUTARY_CRASH_REPORT`), then fails on any problem.
    fn finish(self) {
        let seconds = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let line = serde_json::json!({
            "workload": self.workload, "seed": self.seed, "trials": self.trials, "killed": self.killed,
            "inconsistencies": self.inconsistencies, "lost": self.lost, "minted": self.minted,
            "doubled_payouts": self.doubled_payouts, "killed_after_writing": self.killed_after_writing,
            "held_at_kill": self.held_at_kill,
            "seconds": (seconds * 10.0).round() / 10.0,
        });
        println!("crash-injection {line}");
        if let Some(path) = std::env::var_os("TRIBUTARY_CRASH_REPORT") {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
            writeln!(file, "{line}").unwrap();
        }
        assert!(
            self.inconsistencies + self.lost + self.minted + self.doubled_payouts == 0,
            "{line}\n{}",
            self.notes.join("\n")
        );
        assert!(self.killed > 0, "no child was killed mid-run: the trials test nothing ({line})");
    }
}

/// Trials per workload and the seed: `TRIBUTARY_CRASH_TRIALS` (default 3, the CI version) and
/// `TRIBUTARY_CRASH_SEED`.
fn plan() -> (usize, u64) {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    (var("TRIBUTARY_CRASH_TRIALS").unwrap_or(3) as usize, var("TRIBUTARY_CRASH_SEED").unwrap_or(24))
}

/// A kill moment within `span` (a run may still end before it), reproducible from the seed.
fn moment(rng: &mut Rng, span: Duration) -> Duration {
    Duration::from_micros(rng.draw() % (span.as_micros() as u64).max(1))
}

/// Runs `cmd` and SIGKILLs it at a moment within `span` unless it ended first: whether it was
/// killed. A run that ended first shortens `span` to its length, so that the next kill lands
/// within a run (other work on the cores makes runs' lengths vary).
fn kill_within(cmd: &mut Command, rng: &mut Rng, span: &mut Duration) -> bool {
    let after = moment(rng, *span);
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("tributary starts");
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            *span = (*span).min(started.elapsed());
            return false;
        }
        if started.elapsed() >= after {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How long `cmd` takes uninterrupted (the span kill moments are drawn from).
fn timed(cmd: &mut Command) -> (Duration, String) {
    let started = Instant::now();
    let out = run_ok(cmd);
    (started.elapsed(), out)
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn amount(value: &serde_json::Value) -> u128 {
    value.as_str().unwrap_or_else(|| panic!("{value} is not a decimal string")).parse().unwrap()
}

/// `tributary verify`: the receipts' chain, every split and every epoch root, from the data.
fn ledger_checks(data: &Path) -> Result<(), String> {
    let out = tributary(data).arg("verify").output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("verify: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// `sql`'s rows, read straight from the SQLite file.
async fn rows(data: &Path, sql: &'static str) -> Vec<sqlx::any::AnyRow> {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite:{}", data.join("tributary.db").display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

/// Every credit in the ledger, summed.
async fn credited(data: &Path) -> u128 {
    let credits = rows(data, "SELECT amount FROM ledger_entries WHERE kind = 'credit'").await;
    credits.iter().map(|row| sqlx::Row::get::<String, _>(row, "amount").parse::<u128>().unwrap()).sum()
}

/// How far past now the last hold expires: a killed answer's hold must lapse within the lease
/// (`app::batch::HOLD_LEASE`), nobody renewing it, and its money return to the payer.
async fn held_for(data: &Path) -> Duration {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let holds = rows(data, "SELECT expires_at FROM payer_holds").await;
    let last = holds.iter().map(|row| sqlx::Row::get::<i64, _>(row, "expires_at")).max().unwrap_or(now);
    Duration::from_millis((last - now).max(0) as u64)
}

/// The books of one payer that alone pays every answer: what it was given less what it spent
/// is its balance, and what it spent is exactly what the ledger credited.
async fn books(report: &mut Report, data: &Path, payer: &str, funded: u128) -> serde_json::Value {
    let balance = json(&run_ok(tributary(data).args(["account", "balance", payer, "--json"])));
    let (spent, left) = (amount(&balance["spent"]), amount(&balance["balance"]));
    if funded.checked_sub(spent) != Some(left) {
        report.problem("inconsistent", format!("funded {funded}, spent {spent}, balance {left}"));
    }
    let credits = credited(data).await;
    if credits < spent {
        report.problem("lost", format!("charged {spent}, credited {credits}"));
    } else if credits > spent {
        report.problem("minted", format!("charged {spent}, credited {credits}"));
    }
    balance
}

#[test]
fn kill_9_during_ingest_loses_nothing() {
    let (trials, seed) = plan();
    let mut report = Report::new("ingest", seed);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    let data = dir.path().join("data");
    run_ok(tributary(&data).args(["datanet", "create", "crash"]));
    let ingest = |data: &Path, path: &Path| {
        let mut cmd = tributary(data);
        cmd.args(["ingest", "--datanet", "crash", "--contributor", BOB, "--batch-chunks", "8"]).arg(path);
        cmd
    };
    // The chunks the catalog holds, after checking it against both indexes.
    let check = |report: &mut Report| {
        let state = json(&run_ok(tributary(&data).args(["verify", "--datanet", "crash"])));
        for disagreement in ["missing_from_vectors", "orphan_vectors", "orphan_keywords", "missing_from_keywords"] {
            if state[disagreement] != serde_json::json!([]) {
                report.problem("inconsistent", format!("{disagreement}: {}", state[disagreement]));
            }
        }
        state["catalog_chunks"].as_u64().unwrap()
    };
    // Each trial ingests documents of its own, so every run has work to be interrupted in.
    let batch = |trial: usize| {
        let path = corpus.join(format!("part{trial:03}.jsonl"));
        write_corpus_range(&path, trial * 60..(trial + 1) * 60);
        path
    };
    let (mut span, _) = timed(&mut ingest(&data, &batch(0)));
    let mut chunks = check(&mut report);
    for trial in 1..=trials {
        report.trials += 1;
        let killed = kill_within(&mut ingest(&data, &batch(trial)), &mut rng, &mut span);
        let now = check(&mut report);
        report.killed += killed as usize;
        report.killed_after_writing += (killed && now > chunks) as usize;
        chunks = now;
    }
    // The same files again, uninterrupted, hold what one clean ingest of them holds.
    run_ok(&mut ingest(&data, &corpus));
    check(&mut report);
    let clean = dir.path().join("clean");
    run_ok(tributary(&clean).args(["datanet", "create", "crash"]));
    run_ok(&mut ingest(&clean, &corpus));
    let (resumed, expected) = (
        json(&run_ok(tributary(&data).args(["verify", "--datanet", "crash"]))),
        json(&run_ok(tributary(&clean).args(["verify", "--datanet", "crash"]))),
    );
    if resumed != expected {
        report.problem("lost", format!("after the kills {resumed}, a clean ingest {expected}"));
    }
    assert!(expected["catalog_chunks"].as_u64().unwrap() >= 60 * (trials as u64 + 1));
    report.finish();
}

/// A Datanet of BOB's and DAVE's documents owned by ERIN, the protocol's share to the treasury.
fn answerable(dir: &Path, data: &Path) {
    run_ok(tributary(data).args(["datanet", "create", "crash", "--owner", ERIN]));
    run_ok(tributary(data).args(["pricing", "set", "--protocol-account", TREASURY, "--slash-sink", TREASURY]));
    for (i, contributor) in [BOB, DAVE].into_iter().enumerate() {
        let path = dir.join(format!("corpus{i}.jsonl"));
        write_corpus_range(&path, i * 40..(i + 1) * 40);
        run_ok(tributary(data).args(["ingest", "--datanet", "crash", "--contributor", contributor]).arg(&path));
    }
}

fn ask(data: &Path, trial: usize) -> Command {
    let topics = ["river", "glacier", "delta", "aquifer", "estuary", "wetland", "canyon", "lake"];
    // Documents of both contributors (0-39 are BOB's, 40-79 DAVE's).
    let document = trial * 37 % 80;
    let question =
        format!("What does the {} number {document} feed during season {}?", topics[document % 8], trial % 13);
    let mut cmd = tributary(data);
    cmd.args(["ask", "--json", "--payer", CAROL, "--datanet", "crash", "--max-tokens", "24", &question]);
    cmd
}

#[tokio::test]
async fn kill_9_during_paid_answers_keeps_the_books() {
    let (trials, seed) = plan();
    let mut report = Report::new("paid answers", seed);
    let mut rng = Rng(seed ^ 0xa5);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    answerable(dir.path(), &data);
    let funded = 1_000_000_000_000_000_000u128;
    run_ok(tributary(&data).args(["account", "fund", CAROL, &funded.to_string()]));
    // The shorter of two answers (the first also warms the page cache) is the span.
    let (first, out) = timed(&mut ask(&data, 0));
    assert!(amount(&json(&out)["fee"]) > 0, "the calibration answer is paid: {out}");
    let mut span = first.min(timed(&mut ask(&data, 1)).0);
    for trial in 1..=trials {
        report.trials += 1;
        let written = async || {
            let holds = rows(&data, "SELECT id FROM payer_holds").await.len();
            (holds, holds + rows(&data, "SELECT id FROM receipts").await.len())
        };
        let (holds_before, before) = written().await;
        let killed = kill_within(&mut ask(&data, trial), &mut rng, &mut span);
        if let Err(problem) = ledger_checks(&data) {
            report.problem("inconsistent", problem);
        }
        books(&mut report, &data, CAROL, funded).await;
        let (holds_after, after) = written().await;
        report.killed += killed as usize;
        report.killed_after_writing += (killed && after > before) as usize;
        report.held_at_kill += (killed && holds_after > holds_before) as usize;
        let held = held_for(&data).await;
        if held > HOLD_LEASE {
            report.problem("inconsistent", format!("a killed answer's hold lasts {held:?} more"));
        }
    }
    // The books still take answers: one more, uninterrupted, is charged and credited in full.
    run_ok(&mut ask(&data, trials + 1));
    books(&mut report, &data, CAROL, funded).await;
    report.finish();
}

#[tokio::test]
async fn kill_9_during_settle_and_push_posts_and_pays_once() {
    let (trials, seed) = plan();
    let mut report = Report::new("settle and push", seed);
    let mut rng = Rng(seed ^ 0x5a);
    let anvil = Anvil::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    answerable(dir.path(), &data);
    let on_chain = |mut cmd: Command| {
        cmd.env("TRIBUTARY_RPC_URL", anvil.url()).env("TRIBUTARY_SIGNER_KEY", ANVIL_KEYS[0]);
        cmd
    };
    let deployment = json(&run_ok(on_chain(tributary(&data)).args(["chain", "deploy", "--json"])));
    let token: Address = deployment["token"].as_str().unwrap().parse().unwrap();
    let deposit = 10u128.pow(20);
    run_ok(on_chain(tributary(&data)).args(["chain", "deposit", CAROL, &deposit.to_string()]));
    let reader = Chain::connect(anvil.url(), ANVIL_KEYS[3]).unwrap();
    // Each payee's tokens (none of them had any) against its ledger total in the latest epoch.
    let payees = [BOB, DAVE, ERIN, TREASURY];
    let owed_and_paid = async |data: &Path| {
        let mut rows = Vec::new();
        for payee in payees {
            let proof = tributary(data).args(["proof", payee, "--json"]).output().unwrap();
            let cumulative = if proof.status.success() {
                amount(&json(&String::from_utf8_lossy(&proof.stdout))["cumulative"])
            } else {
                0 // no epoch names it yet
            };
            let address: Address = payee.parse().unwrap();
            let paid = reader.token(token).balanceOf(address).call().await.unwrap();
            rows.push((payee, U256::from(cumulative), paid));
        }
        rows
    };

    run_ok(&mut ask(&data, 0));
    let (mut settle_span, _) = timed(on_chain(tributary(&data)).args(["settle"]));
    let (mut push_span, _) = timed(on_chain(tributary(&data)).args(["chain", "push", "--batch-size", "1"]));
    for trial in 1..=trials {
        report.trials += 1;
        run_ok(&mut ask(&data, trial));
        let epochs = || {
            let status = json(&run_ok(on_chain(tributary(&data)).args(["chain", "status", "--json"])));
            (status["ledger_latest_epoch"].as_i64(), status["chain_latest_epoch"].as_i64())
        };
        let before = epochs();
        let killed = kill_within(on_chain(tributary(&data)).arg("settle"), &mut rng, &mut settle_span);
        report.killed += killed as usize;
        report.killed_after_writing += (killed && epochs() != before) as usize;
        // The next start posts what the killed one left pending, and nothing twice.
        let settled = on_chain(tributary(&data)).args(["settle", "--json"]).output().unwrap();
        if !settled.status.success() {
            report
                .problem("inconsistent", format!("settle after a kill: {}", String::from_utf8_lossy(&settled.stderr)));
        }
        let status = json(&run_ok(on_chain(tributary(&data)).args(["chain", "status", "--json"])));
        if status["pending_on_chain"] != serde_json::json!([])
            || status["chain_latest_epoch"].as_i64() != status["ledger_latest_epoch"].as_i64()
        {
            report.problem("inconsistent", format!("chain status {status}"));
        }
        let (paid_out, epoch_total, deposited) =
            (amount(&status["paid_out"]), amount(&status["epoch_total"]), amount(&status["deposited"]));
        if paid_out > epoch_total || epoch_total > deposited {
            report.problem("doubled", format!("paid out {paid_out} of {epoch_total}, {deposited} deposited"));
        }
        if let Err(problem) = ledger_checks(&data) {
            report.problem("inconsistent", problem);
        }
        let paid_before: Vec<U256> = owed_and_paid(&data).await.into_iter().map(|(_, _, paid)| paid).collect();
        let killed = kill_within(
            on_chain(tributary(&data)).args(["chain", "push", "--batch-size", "1"]),
            &mut rng,
            &mut push_span,
        );
        let mut paid_during = false;
        for ((payee, owed, paid), before) in owed_and_paid(&data).await.into_iter().zip(paid_before) {
            if paid > owed {
                report.problem("doubled", format!("{payee} was paid {paid} of {owed}"));
            }
            paid_during |= paid > before;
        }
        report.killed += killed as usize;
        report.killed_after_writing += (killed && paid_during) as usize;
    }
    // An uninterrupted push pays every payee exactly its total.
    run_ok(on_chain(tributary(&data)).args(["chain", "push", "--batch-size", "1"]));
    let mut earned = Vec::new();
    for (payee, owed, paid) in owed_and_paid(&data).await {
        if paid != owed {
            report.problem(if paid > owed { "doubled" } else { "lost" }, format!("{payee} was paid {paid} of {owed}"));
        }
        if owed > U256::ZERO {
            earned.push(payee);
        }
    }
    // The owner and the protocol share every fee; the contributors, the passages cited.
    assert!(
        earned.contains(&ERIN) && earned.contains(&TREASURY) && earned.len() >= 3,
        "too few payees earned for the payouts to test anything: {earned:?}"
    );
    books(&mut report, &data, CAROL, deposit).await;
    report.finish();
}
