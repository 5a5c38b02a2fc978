//! The OpenAI-compatible client against a real HTTP server on 127.0.0.1:0 speaking the
//! streaming chat-completions protocol (no vLLM here: the server replays what one sends).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use tributary_generator::{
    AnswerRequest, ChatMessage, ChatRequest, CitationKind, CitationPolicy, Error, FinishReason, GenerationParams,
    Generator, Origin, RemoteConfig, RemoteGenerator, Source, StreamEvent,
};

use crate::answered;

type Seen = Arc<Mutex<Vec<serde_json::Value>>>;

fn event(content: &str) -> String {
    format!("data: {}\n\n", serde_json::json!({"choices": [{"delta": {"content": content}, "finish_reason": null}]}))
}

async fn completions(State(seen): State<Seen>, body: axum::Json<serde_json::Value>) -> Response {
    seen.lock().unwrap().push(body.0.clone());
    if body.0["model"] == "broken" {
        return Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body(Body::from("engine down")).unwrap();
    }
    if body.0["model"] == "crlf" {
        return crlf_split();
    }
    let pieces: &[&str] = if body.0["model"] == "wrong-fact" {
        &["The Missouri River is ", "3,767 km long [1]."]
    } else {
        &["The Missouri", " River is the longest", " tributary in North America [1]."]
    };
    let mut text = String::new();
    for piece in pieces {
        text.push_str(&event(piece));
    }
    text.push_str(&format!(
        "data: {}\n\n",
        serde_json::json!({"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 42, "completion_tokens": 12}})
    ));
    text.push_str("data: [DONE]\n\n");
    // Delivered in uneven pieces, splitting events, as a network would.
    let bytes = text.into_bytes();
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = bytes.chunks(37).map(|c| Ok(c.to_vec())).collect();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(futures_util::stream::iter(parts)))
        .unwrap()
}

/// Valid SSE that a naive parser gets wrong: CRLF line endings, and every byte its own read
/// (each multibyte character split across reads).
fn crlf_split() -> Response {
    let mut text = String::new();
    for piece in ["Río Grande — ", "3 034 km ✓ ", "日本語 [1]."] {
        text.push_str(&event(piece).replace("\n\n", "\r\n\r\n"));
    }
    text.push_str("data: [DONE]\r\n\r\n");
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = text.into_bytes().chunks(1).map(|c| Ok(c.to_vec())).collect();
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(futures_util::stream::iter(parts)))
        .unwrap()
}

/// Issue #22, item 6: the client's SSE parser read a multibyte character split across two reads
/// as two U+FFFD, and never ended an event that ended with CRLF.
#[tokio::test]
async fn crlf_events_and_characters_split_across_reads_arrive_intact() {
    let (url, _) = server().await;
    let mut request = ChatRequest { messages: vec![ChatMessage::user("q")], ..Default::default() };
    request.adapters = vec![("crlf".into(), 1.0)];
    let mut events = client(&url).stream(request);
    let mut text = String::new();
    let done = loop {
        match events.recv().await.unwrap().unwrap() {
            StreamEvent::Token(piece) => text.push_str(&piece),
            StreamEvent::Done(done) => break done,
        }
    };
    assert_eq!(text, "Río Grande — 3 034 km ✓ 日本語 [1].");
    assert_eq!(done.text, text);
    assert_eq!(done.completion_tokens, 3);
}

async fn server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new().route("/v1/chat/completions", post(completions)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn client(url: &str) -> RemoteGenerator {
    RemoteGenerator::new(RemoteConfig {
        base_url: url.into(),
        model: "smollm2".into(),
        api_key: Some("secret".into()),
        context_length: 4096,
    })
    .unwrap()
}

/// A passage of the Datanet `rivers` (chunk `c1`).
fn passage(text: &str) -> Source {
    Source {
        chunk_id: "c1".into(),
        text: text.into(),
        document: "tributaries.md".into(),
        contributor: "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into(),
        datanet: "rivers".into(),
        start: 0,
        end: text.len(),
        relevance: 0.7,
        score: 1.0,
    }
}

#[tokio::test]
async fn streams_and_answers_through_an_openai_compatible_server() {
    let (url, seen) = server().await;
    let remote = client(&url);
    let request = ChatRequest {
        messages: vec![ChatMessage::user("hi")],
        params: GenerationParams { max_tokens: 50, stop: vec!["###".into()], ..Default::default() },
        adapters: vec![("hydrology".into(), 1.0)],
    };
    let mut events = remote.stream(request);
    let mut text = String::new();
    let mut done = None;
    while let Some(event) = events.recv().await {
        match event.unwrap() {
            StreamEvent::Token(piece) => text.push_str(&piece),
            StreamEvent::Done(completion) => done = Some(completion),
        }
    }
    let done = done.unwrap();
    assert_eq!(done.text, text);
    assert_eq!(text, "The Missouri River is the longest tributary in North America [1].");
    assert_eq!((done.prompt_tokens, done.completion_tokens, done.finish_reason), (42, 12, FinishReason::Stop));
    let body = seen.lock().unwrap()[0].clone();
    assert_eq!(body["model"], "hydrology", "one adapter is served as a model name");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stop"], serde_json::json!(["###"]));
    assert_eq!(body["max_tokens"], 50);

    // The same backend behind a cited answer.
    let request = AnswerRequest {
        question: "Which river is the longest tributary in North America?".into(),
        sources: vec![passage("The Missouri River is the longest tributary in North America.")],
        params: GenerationParams::default(),
        adapters: Vec::new(),
        policy: CitationPolicy::default(),
        // A remote engine cannot score text: the answer says so instead of failing.
        influence: true,
        history: Vec::new(),
    };
    let answer = answered(Arc::new(client(&url)), request).await;
    assert_eq!(answer.citations.len(), 1);
    assert_eq!(answer.citations[0].chunk_id, "c1");
    assert_eq!(answer.stats.marker, 1);
    assert!(answer.influence.is_empty());
    assert!(
        answer.influence_error.as_deref().is_some_and(|e| e.contains("cannot score")),
        "{:?}",
        answer.influence_error
    );
}

#[tokio::test]
async fn a_remote_engines_wrong_fact_is_checked_repaired_once_then_quoted() {
    let (url, seen) = server().await;
    let text = "The Missouri River is the longest tributary in North America. It flows 2,341 miles from the \
                Rocky Mountains to the Mississippi.";
    let request = AnswerRequest {
        question: "How long is the Missouri River?".into(),
        sources: vec![passage(text)],
        params: GenerationParams::default(),
        adapters: vec![("wrong-fact".into(), 1.0)],
        policy: CitationPolicy::default(),
        influence: false,
        history: Vec::new(),
    };
    let answer = answered(Arc::new(client(&url)), request).await;
    // 3,767 km is in no passage: not credited; the engine's second try says it again; the
    // passage's sentence is quoted instead, and credited.
    assert_eq!(answer.draft.as_deref(), Some("The Missouri River is 3,767 km long [1]."));
    assert_eq!((answer.stats.fact_failures, answer.stats.repaired, answer.stats.quoted), (1, 0, 1));
    assert_eq!(answer.sentences.len(), 1, "{answer:?}");
    let quote = &answer.sentences[0];
    assert_eq!(quote.text, "It flows 2,341 miles from the Rocky Mountains to the Mississippi.");
    assert_eq!(
        (quote.kind, quote.origin, quote.citations.as_slice()),
        (Some(CitationKind::Quote), Origin::Quoted, &[1][..])
    );
    assert_eq!(answer.answer, "It flows 2,341 miles from the Rocky Mountains to the Mississippi [1].");
    assert!(answer.grounded);
    // The repair asked with the one supporting sentence as passage [1].
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let repair = seen[1]["messages"][0]["content"].as_str().unwrap();
    assert!(repair.contains("[1] It flows 2,341 miles") && !repair.contains("longest tributary"), "{repair}");
}

#[tokio::test]
async fn engine_errors_are_errors() {
    let (url, _) = server().await;
    let remote = client(&url);
    let broken = ChatRequest { adapters: vec![("broken".into(), 1.0)], ..Default::default() };
    let mut events = remote.stream(broken);
    let err = events.recv().await.unwrap().unwrap_err();
    assert!(matches!(&err, Error::Remote(m) if m.contains("500") && m.contains("engine down")), "{err}");
    let mix = ChatRequest { adapters: vec![("a".into(), 0.5), ("b".into(), 0.5)], ..Default::default() };
    let err = remote.stream(mix).recv().await.unwrap().unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    // Nothing listening.
    let gone = client("http://127.0.0.1:9/v1");
    assert!(matches!(gone.stream(ChatRequest::default()).recv().await.unwrap(), Err(Error::Remote(_))));
    assert!(
        RemoteGenerator::new(RemoteConfig {
            base_url: "ftp://x".into(),
            model: "m".into(),
            api_key: None,
            context_length: 1
        })
        .is_err()
    );
}

/// An engine that lists `models` and answers every completion with `reply`, or with `status`
/// when that is an error; it counts the completions it was asked for.
async fn engine(
    models: &'static [&'static str],
    reply: &'static str,
    status: StatusCode,
) -> (String, Arc<Mutex<usize>>) {
    let asked: Arc<Mutex<usize>> = Arc::default();
    let counter = asked.clone();
    let app = Router::new()
        .route(
            "/v1/models",
            axum::routing::get(move || async move {
                axum::Json(serde_json::json!({"object": "list", "data": models.iter().map(|m| serde_json::json!({"id": m})).collect::<Vec<_>>()}))
            }),
        )
        .route(
            "/v1/chat/completions",
            post(move || {
                let counter = counter.clone();
                async move {
                    *counter.lock().unwrap() += 1;
                    if status != StatusCode::OK {
                        return Response::builder().status(status).body(Body::from("overloaded")).unwrap();
                    }
                    let text = format!("{}data: [DONE]\n\n", event(reply));
                    Response::builder().header(header::CONTENT_TYPE, "text/event-stream").body(Body::from(text)).unwrap()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, asked)
}

async fn answer_text(remote: &RemoteGenerator, adapter: Option<&str>) -> Result<String, Error> {
    let mut request = ChatRequest { messages: vec![ChatMessage::user("q")], ..Default::default() };
    if let Some(id) = adapter {
        request.adapters = vec![(id.into(), 1.0)];
    }
    let mut events = remote.stream(request);
    loop {
        match events.recv().await.unwrap()? {
            StreamEvent::Token(_) => {}
            StreamEvent::Done(done) => return Ok(done.text),
        }
    }
}

/// Issue #23: several engines. Each request goes to an engine that lists its model (the base,
/// or the adapter), round-robin; an engine that is unreachable or answers 5xx before streaming
/// is skipped for the next one.
#[tokio::test]
async fn several_engines_route_by_adapter_and_fail_over() {
    let (a, asked_a) = engine(&["smollm2", "legal"], "from A", StatusCode::OK).await;
    let (b, asked_b) = engine(&["smollm2"], "from B", StatusCode::OK).await;
    let unreachable = "http://127.0.0.1:9/v1";
    let remote = client(&format!("{a}, {b}, {unreachable}"));
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(answer_text(&remote, None).await.unwrap());
    }
    assert_eq!(
        seen,
        ["from A".to_string(), "from B".to_string()].into(),
        "base requests spread over the engines that are up"
    );
    let before_b = *asked_b.lock().unwrap();
    for _ in 0..3 {
        assert_eq!(answer_text(&remote, Some("legal")).await.unwrap(), "from A", "only A serves the adapter");
    }
    assert_eq!(*asked_b.lock().unwrap(), before_b, "B was never asked for an adapter it does not list");
    assert!(*asked_a.lock().unwrap() >= 3);

    // An engine answering 503 before streaming: the request goes on to the next.
    let (busy, asked_busy) = engine(&["smollm2"], "never", StatusCode::SERVICE_UNAVAILABLE).await;
    let (spare, _) = engine(&["smollm2"], "from the spare", StatusCode::OK).await;
    let remote = client(&format!("{busy},{spare}"));
    for _ in 0..3 {
        assert_eq!(answer_text(&remote, None).await.unwrap(), "from the spare");
    }
    assert_eq!(*asked_busy.lock().unwrap(), 1, "marked down after its failure, tried no more until rechecked");
    // A base request goes to an engine whatever name it lists for its model (llama.cpp's
    // server lists its file name).
    let (renamed, _) = engine(&["SmolLM2-135M-Instruct.Q4_1.gguf"], "from the renamed", StatusCode::OK).await;
    assert_eq!(answer_text(&client(&renamed), None).await.unwrap(), "from the renamed");
    // An adapter no engine lists is refused without asking any.
    let remote = client(&format!("{a},{b}"));
    let err = answer_text(&remote, Some("medical")).await.unwrap_err();
    assert!(matches!(&err, Error::Remote(m) if m.contains("no remote engine serves")), "{err}");
}
