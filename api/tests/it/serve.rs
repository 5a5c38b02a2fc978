//! `tributary serve` as a process: the OpenAI Python client and schemathesis against it, keys
//! from `tributary apikey create`, and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{ALICE, run_ok, tributary};

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python")
}

/// A running server and its base URL; killed on drop if the test did not stop it.
pub struct Serving {
    child: Child,
    pub url: String,
}

impl Serving {
    fn start(data: &Path, flags: &[&str]) -> Serving {
        Serving::spawn(tributary(data), flags)
    }

    /// `command` (a `tributary` command with its environment) running `serve` on a free port,
    /// with `flags`.
    pub fn spawn(mut command: Command, flags: &[&str]) -> Serving {
        let mut child = command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected: {line:?}")).to_string();
        Serving { child, url }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample_datanet(data: &Path) {
    run_ok(tributary(data).args(["datanet", "create", "rivers", "--owner", ALICE]));
    let file = data.join("missouri.txt");
    std::fs::write(
        &file,
        "The Missouri River is the longest river in North America. It flows 3,767 km from the Rocky \
         Mountains to the Mississippi River near St. Louis.",
    )
    .unwrap();
    run_ok(tributary(data).args(["ingest", "--datanet", "rivers", "--contributor", ALICE]).arg(&file));
}

const TREASURY: &str = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc";
const PAYER: &str = "0x976EA74026E726554dB657fA54763abd0C3a0aa9";
const BROKE: &str = "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955";

/// A reader key acting as (and paying from) `address`.
fn payer_key(data: &Path, address: &str) -> String {
    let created =
        run_ok(tributary(data).args(["apikey", "create", "--role", "reader", "--address", address, "--json"]));
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    created["key"].as_str().unwrap().to_string()
}

/// A new key from `tributary apikey create`.
pub fn api_key(data: &Path, role: &str) -> String {
    let created = run_ok(tributary(data).args(["apikey", "create", "--role", role, "--json"]));
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    created["key"].as_str().unwrap().to_string()
}

#[test]
fn openai_python_client_works_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    sample_datanet(data);
    // The operator names the protocol's account; one payer is funded, the other is not.
    run_ok(tributary(data).args(["pricing", "set", "--protocol-account", TREASURY]));
    let key = payer_key(data, PAYER);
    let broke = payer_key(data, BROKE);
    run_ok(tributary(data).args(["account", "fund", PAYER, "100000000000000000"]));
    let server = Serving::start(data, &[]);
    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/openai_client.py"))
        .args([&server.url, "rivers", &key, &broke])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openai client failed\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut receipt = tributary(data);
    let shown = run_ok(receipt.args(["receipt", seen["receipt_id"].as_str().unwrap(), "--json"]));
    assert!(shown.contains(ALICE), "the receipt the client saw is in the ledger and pays the contributor");
    let balance = run_ok(tributary(data).args(["account", "balance", PAYER, "--json"]));
    let balance: serde_json::Value = serde_json::from_str(&balance).unwrap();
    let cost: u128 = seen["cost"].as_str().unwrap().parse().unwrap();
    let spent: u128 = balance["spent"].as_str().unwrap().parse().unwrap();
    assert_eq!(spent, 2 * cost, "two paid completions (JSON and streamed), each charged its cost: {balance}");
    assert!(server.stop().success(), "SIGTERM stops the server cleanly");
}

/// Schemathesis generates requests from the committed spec against the live server: no 5xx,
/// every response (errors included) matches its schema, content type and documented status.
#[test]
fn schemathesis_finds_no_contract_violations() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    sample_datanet(data);
    let key = api_key(data, "admin");
    // Answers are generated for real (the spec's examples name the sample Datanet), capped at
    // a few tokens to keep the run short.
    let server = Serving::start(data, &["--key-rate-per-minute", "1000000", "--max-answer-tokens", "8"]);
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let st = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/st");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/schemathesis.toml");
    let out = Command::new(st)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(&spec)
        .args(["--url", &server.url])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "all", "--max-examples", "25", "--seed", "1"])
        // Claims, deployment and the registry need a chain (tests/it/chain.rs); without one they
        // answer 503 chain_not_configured, which schemathesis counts as a server error.
        .args(["--exclude-path", "/v1/claims", "--exclude-path", "/v1/admin/chain/deploy"])
        .args(["--exclude-path", "/v1/admin/chain/push", "--exclude-path", "/v1/admin/chain/sync"])
        .args(["--exclude-path", "/v1/datanets/{name}/registry"])
        .args(["--exclude-path", "/v1/datanets/{name}/registry/chunks/{chunk}"])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let report = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{report}");
    assert!(server.stop().success());
}

/// Issue #24, defect 4: a client that sends its headers a byte at a time is cut off once the
/// header-read timeout is up (it held its socket for as long as it liked), and past
/// `--max-connections` a new connection waits until one closes.
#[test]
fn slow_clients_are_cut_off_and_connections_are_capped() {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let server = Serving::start(dir.path(), &["--header-read-timeout-secs", "1"]);
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut slow = TcpStream::connect(&addr).unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: {}", "a".repeat(100));
    // Three seconds of headers, a byte every 0.1 s (writes may fail once the server closed).
    for byte in request.bytes().take(30) {
        if slow.write_all(&[byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = Vec::new();
    match slow.read_to_end(&mut rest) {
        Ok(_) => {} // closed (after a 408, or without a word)
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "the slow connection is still open: {e}"
        ),
    }
    drop(server);

    let server = Serving::start(dir.path(), &["--max-connections", "1"]);
    let addr = server.url.trim_start_matches("http://").to_string();
    let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect(&addr).unwrap();
    first.write_all(get).unwrap();
    let mut buffer = [0u8; 1024];
    let n = first.read(&mut buffer).unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..n]));
    // The first connection stays open (kept alive): the second waits.
    let mut second = TcpStream::connect(&addr).unwrap();
    second.write_all(get).unwrap();
    second.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
    let waited = second.read(&mut buffer).unwrap_err();
    assert!(matches!(waited.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut), "{waited}");
    drop(first);
    second.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = second.read(&mut buffer).unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buffer[..n]));
}
