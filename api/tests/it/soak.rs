//! Soak (issue #24, suite 4): `tributary serve` on 127.0.0.1 under a steady mix of uploads,
//! searches and paid answers for `TRIBUTARY_SOAK_SECS` (CI: 20 s; `scripts/soak.sh`: 600),
//! the server's resident memory sampled every 2 s. No response may be an error other than a
//! deliberate 429 or 503, the books must balance at the end, and (runs of 5 minutes or more)
//! the memory of the last quarter may not exceed that of the first quarter's end by more than
//! 15%. Figures: one `soak {...}` JSON line (and `TRIBUTARY_SOAK_REPORT`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::serve::{Serving, api_key};
use crate::{ALICE, BOB, run_ok, tributary};

const TREASURY: &str = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc";
const PAYER: &str = "0x976EA74026E726554dB657fA54763abd0C3a0aa9";

/// Resident set size of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_mixed_load_keeps_memory_flat_and_answers_without_errors() {
    let seconds: u64 = std::env::var("TRIBUTARY_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run_ok(tributary(&data).args(["datanet", "create", "soak", "--owner", ALICE]));
    run_ok(tributary(&data).args(["pricing", "set", "--protocol-account", TREASURY, "--slash-sink", TREASURY]));
    let corpus = dir.path().join("seed.jsonl");
    crate::write_corpus(&corpus, 50);
    run_ok(tributary(&data).args(["ingest", "--datanet", "soak", "--contributor", BOB]).arg(&corpus));
    let funded: u128 = 10u128.pow(24);
    run_ok(tributary(&data).args(["account", "fund", PAYER, &funded.to_string()]));
    let admin = api_key(&data, "admin");
    let created = run_ok(tributary(&data).args(["apikey", "create", "--role", "reader", "--address", PAYER, "--json"]));
    let payer = serde_json::from_str::<serde_json::Value>(&created).unwrap()["key"].as_str().unwrap().to_string();
    let server = Serving::spawn(tributary(&data), &["--max-generating", "2", "--key-rate-per-minute", "100000"]);
    let pid = server.pid();

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let statuses: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let failures: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let mut workers = Vec::new();
    for worker in 0..4u64 {
        let (client, url, statuses, failures) =
            (client.clone(), server.url.clone(), statuses.clone(), failures.clone());
        let (admin, payer) = (admin.clone(), payer.clone());
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                // Per worker: answers, uploads and searches, one in three each.
                let (kind, request) = match (worker + n) % 3 {
                    0 => (
                        "answer",
                        client.post(format!("{url}/v1/answers")).bearer_auth(&payer).json(&json!({
                            "question": format!("What does the river number {} feed?", n % 50),
                            "datanets": ["soak"], "max_tokens": 16,
                        })),
                    ),
                    1 => (
                        "upload",
                        client.post(format!("{url}/v1/datanets/soak/documents")).bearer_auth(&admin).json(&json!({
                            "documents": [{"name": format!("w{worker}-{n}.txt"),
                                "text": format!("Soak note {worker}-{n}: the delta number {n} drains region {worker}.")}],
                            "contributor": BOB,
                        })),
                    ),
                    _ => (
                        "search",
                        client.post(format!("{url}/v1/search")).json(&json!({
                            "query": format!("which glacier number {} cools region {}", n % 97, n % 12),
                            "datanets": ["soak"], "k": 5,
                        })),
                    ),
                };
                let status = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse().ok());
                        let body = response.text().await.unwrap_or_default();
                        if !(200..300).contains(&status) && status != 429 && status != 503 {
                            failures.lock().unwrap().push(format!("{kind}: {status} {body}"));
                        }
                        // A deliberate refusal says when to come back; a client that listens waits.
                        if let Some(seconds) = retry_after {
                            tokio::time::sleep(Duration::from_secs(seconds)).await;
                        }
                        status.to_string()
                    }
                    Err(e) => {
                        failures.lock().unwrap().push(format!("{kind}: {e}"));
                        "transport".to_string()
                    }
                };
                *statuses.lock().unwrap().entry(format!("{kind} {status}")).or_default() += 1;
            }
        }));
    }
    let sampler = {
        let done = done.clone();
        tokio::spawn(async move {
            let (started, mut samples) = (Instant::now(), Vec::new());
            while !done.load(Ordering::SeqCst) {
                samples.push((started.elapsed().as_secs_f64(), rss_kib(pid)));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            samples
        })
    };
    for worker in workers {
        worker.await.unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let samples = sampler.await.unwrap();

    // The first quarter's end (after warm-up: models loaded, caches filled) against the last
    // quarter's peak.
    let quarter = samples.len() / 4;
    let warm = samples.get(quarter).map_or(0, |s| s.1);
    let late_peak = samples[samples.len() - quarter.max(1)..].iter().map(|s| s.1).max().unwrap_or(0);
    let growth = late_peak as f64 / warm.max(1) as f64;
    let statuses = statuses.lock().unwrap().clone();
    let line = json!({
        "seconds": seconds, "requests": statuses.values().sum::<u64>(), "statuses": statuses,
        "rss_mib_warm": warm / 1024, "rss_mib_late_peak": late_peak / 1024,
        "rss_growth": (growth * 1000.0).round() / 1000.0,
        "rss_mib_samples": samples.iter().step_by((samples.len() / 20).max(1)).map(|s| s.1 / 1024).collect::<Vec<_>>(),
    });
    println!("soak {line}");
    if let Some(path) = std::env::var_os("TRIBUTARY_SOAK_REPORT") {
        std::fs::write(path, format!("{line}\n")).unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(failures.is_empty(), "{} failed requests, first: {:?}", failures.len(), failures.first());
    for kind in ["answer 200", "upload 200", "search 200"] {
        assert!(statuses.get(kind).is_some_and(|n| *n > 0), "no {kind} in {line}");
    }
    if seconds >= 300 {
        assert!(growth < 1.15, "memory grew {growth:.2}x from the warm mark to the last quarter: {line}");
    }
    // The books balance after the load: what the payer spent is what the ledger credited.
    drop(server);
    let balance: serde_json::Value =
        serde_json::from_str(&run_ok(tributary(&data).args(["account", "balance", PAYER, "--json"]))).unwrap();
    let spent: u128 = balance["spent"].as_str().unwrap().parse().unwrap();
    let left: u128 = balance["balance"].as_str().unwrap().parse().unwrap();
    assert_eq!(spent + left, funded, "{balance}");
    assert!(spent > 0, "{balance}");
    run_ok(tributary(&data).arg("verify"));
}
