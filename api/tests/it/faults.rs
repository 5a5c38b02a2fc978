//! Faults at the edges (issue #24, suite 2): the database gone mid-request, the disk full. Each
//! gives a clear error, leaves nothing corrupt, and the service works again once the fault is
//! gone.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tributary::http::ServeConfig;
use tributary_indexer::testing::fresh_pg_schema;

use crate::BOB;
use crate::http::{PAYER, Server, doc};

/// A TCP proxy in front of PostgreSQL that the test can cut (open connections dropped, new ones
/// closed at once, as a crashed or partitioned server looks from here) and restore.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (cut_flag, open) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if cut_flag.load(Ordering::SeqCst) {
                    continue; // dropped: the client reads EOF
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                open.lock().unwrap().push(link.abort_handle());
            }
        });
        Proxy { addr, cut, links }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Where `url` (`postgres://user@host:port/db?...`) points: its host:port span and address.
fn host_of(url: &str) -> (std::ops::Range<usize>, SocketAddr) {
    let start = url.find('@').map_or_else(|| url.find("://").unwrap() + 3, |at| at + 1);
    let end = start + url[start..].find('/').unwrap();
    (start..end, url[start..end].parse().expect("TEST_DATABASE_URL names host:port as an IP"))
}

fn money(account: &Value, field: &str) -> u128 {
    account[field].as_str().unwrap().parse().unwrap()
}

/// PostgreSQL unreachable, then back: requests answer 503 `database_unavailable` with
/// `Retry-After` (they were 500s), a paid answer is not charged, and once the database is back
/// the same server answers, charges and balances its books without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_gone_mid_request_is_a_503_and_the_server_recovers() {
    let url = fresh_pg_schema("faults").await.expect("PostgreSQL reachable at TEST_DATABASE_URL");
    let (host, upstream) = host_of(&url);
    let proxy = Proxy::start(upstream).await;
    let proxied = format!("{}{}{}", &url[..host.start], proxy.addr, &url[host.end..]);
    let s = Server::start(ServeConfig::default(), Some(proxied)).await;
    let (admin, payer) = s.rivers_and_payer().await;
    let question = json!({"question": "How long is the Missouri River?", "datanets": ["rivers"], "max_tokens": 24});
    let answered = s.call("POST", "/v1/answers", Some(&payer), Some(question.clone())).await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);

    proxy.cut();
    for (method, uri, key, body) in [
        ("GET", "/v1/datanets", None, None),
        ("GET", "/v1/datanets", Some(&admin), None),
        ("POST", "/v1/answers", Some(&payer), Some(question.clone())),
        (
            "POST",
            "/v1/datanets/rivers/documents",
            Some(&admin),
            Some(json!({"documents": [doc("b.txt", "Glaciers carve valleys.")], "contributor": BOB})),
        ),
    ] {
        let started = std::time::Instant::now();
        let down = s.call(method, uri, key.map(String::as_str), body).await;
        assert_eq!(
            (down.status, down.body["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("database_unavailable")),
            "{method} {uri}: {}",
            down.body
        );
        assert_eq!(down.headers["retry-after"], "5");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{method} {uri} waited {:?}",
            started.elapsed()
        );
    }

    proxy.restore();
    let back = s.call("POST", "/v1/answers", Some(&payer), Some(question)).await;
    assert_eq!(back.status, StatusCode::OK, "{}", back.body);
    let account = s.call("GET", &format!("/v1/accounts/{PAYER}"), Some(&payer), None).await.body;
    let fee: u128 = back.body["receipt"]["fee"].as_str().unwrap().parse().unwrap();
    assert_eq!(money(&account, "spent"), 2 * fee, "two answers charged, the one refused while down was not: {account}");
    assert_eq!(money(&account, "balance") + money(&account, "spent"), 10u128.pow(18), "{account}");
    let verified = s.call("GET", "/v1/admin/verify", Some(&admin), None).await;
    assert_eq!(verified.body["problems"], json!([]), "{}", verified.body);
}

/// The disk full mid-ingest (a small tmpfs, mounted in a private mount namespace by `unshare
/// -rm`, so the test needs no privileges beyond user namespaces): the ingest fails saying so,
/// never with a signal or a panic (it was killed by SIGBUS: the vector index writes through
/// memory maps, and a full tmpfs faults the write); once there is room again the store checks
/// consistent, and the same ingest re-run holds exactly what a clean one does.
#[test]
fn a_full_disk_fails_an_ingest_cleanly_and_a_rerun_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    crate::write_corpus(&corpus, 600);
    let (data, out) = (dir.path().join("data"), dir.path().join("out"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let script = r#"
        set -u
        mount -t tmpfs -o size="$SIZE" tmpfs "$TRIBUTARY_DATA_DIR" || exit 90
        "$BIN" datanet create full > /dev/null || exit 91
        run() { "$BIN" "$@" > "$OUT/$step.out" 2> "$OUT/$step.err"; echo $? > "$OUT/$step.rc"; }
        step=full run ingest --datanet full --contributor "$BOB" --batch-chunks 16 "$CORPUS"
        step=still-full run verify --datanet full
        mount -o remount,size=512m "$TRIBUTARY_DATA_DIR" || exit 92
        step=room run verify --datanet full
        step=rerun run ingest --datanet full --contributor "$BOB" --batch-chunks 16 "$CORPUS"
        step=after run verify --datanet full
    "#;
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-rm", "sh", "-c", script])
        .envs(crate::tributary(&data).get_envs().filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))))
        .env("BIN", env!("CARGO_BIN_EXE_tributary"))
        .env("SIZE", "8m")
        .env("TRIBUTARY_MIN_FREE_DISK_MB", "5")
        .env("OUT", &out)
        .env("BOB", BOB)
        .env("CORPUS", &corpus);
    let status = cmd.status().expect("unshare runs");
    assert!(status.success(), "the namespace script failed: {status} (90: no tmpfs mount; 91: no room to start)");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let rc = |step: &str| read(&format!("{step}.rc")).trim().parse::<i32>().unwrap();
    assert_eq!(rc("full"), 1, "the ingest must fail on a full disk: {}", read("full.err"));
    assert!(read("full.err").contains("MiB kept free"), "a clear error: {}", read("full.err"));
    assert!(rc("still-full") < 100, "no panic or signal on a full disk: {}", read("still-full.err"));
    assert_eq!(rc("room"), 0, "{}", read("room.err"));
    let room: Value = serde_json::from_str(&read("room.out")).unwrap();
    for disagreement in ["missing_from_vectors", "orphan_vectors", "orphan_keywords", "missing_from_keywords"] {
        assert_eq!(room[disagreement], json!([]), "{room}");
    }
    assert_eq!(rc("rerun"), 0, "{}", read("rerun.err"));
    let clean = dir.path().join("clean");
    crate::run_ok(crate::tributary(&clean).args(["datanet", "create", "full"]));
    crate::run_ok(crate::tributary(&clean).args(["ingest", "--datanet", "full", "--contributor", BOB]).arg(&corpus));
    let expected: Value =
        serde_json::from_str(&crate::run_ok(crate::tributary(&clean).args(["verify", "--datanet", "full"]))).unwrap();
    let after: Value = serde_json::from_str(&read("after.out")).unwrap();
    assert_eq!(after, expected, "after a full disk and a rerun, the store differs from a clean ingest");
}

/// A client that reads its answer's stream slowly (here: not at all for a while) holds neither
/// the generation slot nor the ledger: the answer is generated, charged and recorded at the
/// model's pace, the next question is answered meanwhile, and the reader still gets every
/// event, ending with the receipt, when it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_reader_holds_no_slot_and_gets_its_receipt() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Server::start(ServeConfig { max_generating: 1, ..Default::default() }, None).await;
    let (_admin, payer) = s.rivers_and_payer().await;

    let url = crate::http::listen(&s).await;
    let question = json!({"question": "How long is the Missouri River?", "datanets": ["rivers"], "max_tokens": 64});
    let body = question.to_string();
    let mut slow = TcpStream::connect(url.trim_start_matches("http://")).await.unwrap();
    let request = format!(
        "POST /v1/answers HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\naccept: text/event-stream\r\n\
         authorization: Bearer {payer}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    slow.write_all(request.as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    slow.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Not reading on: the answer is charged all the same, at the model's pace.
    let started = std::time::Instant::now();
    loop {
        let account = s.call("GET", &format!("/v1/accounts/{PAYER}"), Some(&payer), None).await.body;
        if money(&account, "spent") > 0 {
            assert_eq!(account["held"], "0", "{account}");
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "never recorded: {account}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let next = s.call("POST", "/v1/answers", Some(&payer), Some(question)).await;
    assert_eq!(next.status, StatusCode::OK, "the slot is free while the slow reader reads: {}", next.body);
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest).await.unwrap();
    let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let events = crate::http::sse_events(&dechunk(&rest[head_end..]));
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert!(names.ends_with(&["answer", "receipt"]), "{names:?}");
}

/// An HTTP/1.1 chunked body's content.
fn dechunk(mut body: &[u8]) -> String {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    String::from_utf8(out).unwrap()
}

/// The model's KV memory as the scarce resource (issue #22): an answer whose cache cannot fit
/// the budget is refused with 503 `overloaded` before anything streams (JSON, server-sent
/// events and the OpenAI endpoint alike), and its payer keeps every unit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_the_kv_budget_cannot_hold_is_a_503_before_the_stream_and_costs_nothing() {
    let s = Server::start_with(ServeConfig::default(), None, |settings| {
        settings.scheduler.kv_budget_bytes = 1 << 20;
    })
    .await;
    let (_admin, payer) = s.rivers_and_payer().await;
    let question = json!({"question": "How long is the Missouri River?", "datanets": ["rivers"], "max_tokens": 64});
    let refused = s.call("POST", "/v1/answers", Some(&payer), Some(question.clone())).await;
    assert_eq!((refused.status, refused.body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("overloaded")));
    assert!(refused.headers.contains_key("retry-after"));
    assert!(refused.body["detail"].as_str().unwrap().contains("KV budget"), "{}", refused.body);

    let url = crate::http::listen(&s).await;
    let client = reqwest::Client::new();
    let streamed = client
        .post(format!("{url}/v1/answers"))
        .header("accept", "text/event-stream")
        .bearer_auth(&payer)
        .json(&question)
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 503, "refused before the stream began");
    assert_eq!(streamed.headers()["content-type"], "application/problem+json");
    let chat = json!({"model": "base", "stream": true, "max_tokens": 64, "datanets": ["rivers"],
        "messages": [{"role": "user", "content": "How long is the Missouri River?"}]});
    let openai =
        client.post(format!("{url}/v1/chat/completions")).bearer_auth(&payer).json(&chat).send().await.unwrap();
    assert_eq!(openai.status(), 503);

    let account = s.call("GET", &format!("/v1/accounts/{PAYER}"), Some(&payer), None).await.body;
    assert_eq!((account["spent"].as_str(), account["held"].as_str()), (Some("0"), Some("0")), "{account}");
}
