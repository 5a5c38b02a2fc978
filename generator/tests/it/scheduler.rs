//! The scheduler on the real SmolLM2: requests that join and leave a running batch get exactly
//! the tokens they get alone; a cancelled request frees its row and its cache; the KV budget
//! and the queue refuse at once rather than fail an answer midway.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Device;
use tokio::sync::mpsc;
use tributary_generator::{
    AdapterRegistry, AdapterSource, ChatMessage, ChatRequest, Completion, Error, GenerationParams, Generator,
    LocalGenerator, LocalModel, Projection, Result, SamplingParams, SchedulerConfig, StreamEvent,
};

use crate::lora::write_adapter_scaled;
use crate::smollm2;

/// The real model with two registered adapters, `a` and `b`.
fn generator(dir: &Path, config: SchedulerConfig) -> LocalGenerator {
    generator_with(dir, config, false)
}

/// [`generator`], its prompts through the fused step or through candle's ops.
fn generator_with(dir: &Path, config: SchedulerConfig, fused_prompts: bool) -> LocalGenerator {
    let mut model = LocalModel::load(&smollm2(), &Device::Cpu).unwrap();
    model.set_fused_prompts(fused_prompts);
    let registry = Arc::new(AdapterRegistry::open(dir.join("adapters.json")).unwrap());
    // Random (the test compares runs of the same adapter, so any values do).
    write_adapter_scaled(&dir.join("a"), model.model(), 8, &[Projection::Q, Projection::V, Projection::Down], 0.08);
    write_adapter_scaled(&dir.join("b"), model.model(), 4, &[Projection::O, Projection::Up, Projection::Gate], 0.08);
    for id in ["a", "b"] {
        registry.register(id, AdapterSource::Path(dir.join(id)), model.model().config()).unwrap();
    }
    LocalGenerator::with_scheduler(model, registry, 256 << 20, config)
}

fn request(question: &str, max_tokens: usize, adapters: &[(&str, f32)]) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::user(question)],
        params: GenerationParams { max_tokens, ..Default::default() },
        adapters: adapters.iter().map(|(id, w)| (id.to_string(), *w)).collect(),
    }
}

/// Reads a stream to its end: the text pieces joined, and the completion.
async fn collect(mut events: mpsc::Receiver<Result<StreamEvent>>) -> Result<(String, Completion)> {
    let mut text = String::new();
    while let Some(event) = events.recv().await {
        match event? {
            StreamEvent::Token(piece) => text.push_str(&piece),
            StreamEvent::Done(done) => return Ok((text, done)),
        }
    }
    Err(Error::Model("the stream ended without a result".into()))
}

/// Requests alone ([`LocalModel::complete`]) and then all at once through the scheduler,
/// arriving while others run: every one gets the same text, token count and finish reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_joining_and_leaving_get_the_tokens_they_get_alone() {
    let dir = tempfile::tempdir().unwrap();
    // Prompts in pieces of 16 tokens interleave with the others' steps; through the fused step,
    // where pieces are cut does not matter, so `complete` (pieces of 128) is the reference.
    let config = SchedulerConfig { prefill_chunk: 16, ..Default::default() };
    let generator = Arc::new(generator_with(dir.path(), config, true));
    let long = "Explain, step by step, how rivers carry sediment from mountains to the sea, and what \
                happens to it in deltas, estuaries and on the continental shelf.";
    let mut sampled = request("Name three colours of the sky.", 20, &[("a", 1.0)]);
    sampled.params.sampling = SamplingParams { temperature: 0.8, top_p: Some(0.9), seed: 7 };
    let mut stopped = request("Count from one to twenty in words.", 40, &[]);
    stopped.params.stop = vec!["3".into(), "three".into(), "Three".into()];
    let requests = vec![
        request("What is the capital of France?", 24, &[]),
        request("Why is the sea salty?", 12, &[("a", 1.0)]),
        request(long, 30, &[("b", 1.0)]),
        request("Say hello.", 6, &[("a", 0.5), ("b", 0.5)]),
        sampled,
        stopped,
        request("What do bees make?", 18, &[("b", 1.0)]),
    ];

    let mut alone = Vec::new();
    for r in &requests {
        let mix = generator.resolve(&r.adapters).unwrap();
        let mut text = String::new();
        let done = generator
            .model()
            .complete(&r.messages, &r.params, &mix, &mut |piece| {
                text.push_str(piece);
                true
            })
            .unwrap();
        assert_eq!(text, done.text);
        alone.push(done);
    }
    // The adapters change answers (else the test would not tell rows' adapters apart).
    let mut changed = 0;
    for i in [1, 2, 3, 6] {
        let mut base = requests[i].clone();
        base.adapters.clear();
        let (_, base) = collect(generator.stream(base)).await.unwrap();
        changed += usize::from(base.text != alone[i].text);
    }
    assert!(changed >= 2, "adapters changed {changed} of 4 answers");

    // Three start together; the others join one by one while those decode.
    let mut runs = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let events = generator.stream(r.clone());
        runs.push(tokio::spawn(collect(events)));
        if i >= 2 {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    for (i, run) in runs.into_iter().enumerate() {
        let (text, done) = run.await.unwrap().unwrap();
        assert_eq!(text, done.text, "request {i}: the pieces make the text");
        assert_eq!(done, alone[i], "request {i}: the same answer alone and batched");
    }
    assert_eq!(alone[5].finish_reason, tributary_generator::FinishReason::Stop, "{:?}", alone[5]);
    assert!(!alone[5].text.contains('3') && !alone[5].text.to_lowercase().contains("three"));
    let stats = generator.scheduler_stats();
    assert!(stats.step_rows > stats.steps, "steps carried several rows: {stats:?}");
    // Every row's cache is released (the counters follow the last result by a moment).
    until_idle(&generator).await;
}

/// Waits until the scheduler holds nothing, or fails after 60 s.
async fn until_idle(generator: &LocalGenerator) {
    let start = Instant::now();
    loop {
        let stats = generator.scheduler_stats();
        if stats.running == 0 && stats.waiting == 0 && stats.kv_reserved_bytes == 0 {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "still busy: {stats:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_frees_its_row_and_its_cache_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let generator = generator(dir.path(), SchedulerConfig::default());
    let mut long = generator.stream(request("Write a long story about a river.", 400, &[("a", 1.0)]));
    // It is decoding: a piece of text came.
    if let StreamEvent::Done(done) = long.recv().await.unwrap().unwrap() {
        panic!("finished before the test could cancel it: {done:?}");
    }
    assert_eq!(generator.scheduler_stats().running, 1);
    assert!(generator.scheduler_stats().kv_reserved_bytes > 0);
    drop(long);
    let started = Instant::now();
    until_idle(&generator).await;
    // Freed within a few steps, not after the 400 tokens it asked for.
    assert!(started.elapsed() < Duration::from_secs(5), "freed after {:?}", started.elapsed());
    let steps = generator.scheduler_stats().steps;
    assert!(steps < 100, "it stopped decoding: {steps} steps");
    // The scheduler goes on serving.
    let (_, done) = collect(generator.stream(request("Say hello.", 4, &[]))).await.unwrap();
    assert!(done.completion_tokens > 0);
}

/// A panic in the scheduler's own bookkeeping (outside the guarded model work) used to end its
/// thread: the answers it held saw their streams close without a word, and every later answer
/// failed with "the scheduler has stopped" until the process restarted. Now those answers get
/// an error and the scheduler starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_starts_again_after_a_failure_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let generator = generator(dir.path(), SchedulerConfig::default());
    let mut long = generator.stream(request("Write a long story about a river.", 400, &[]));
    if let StreamEvent::Done(done) = long.recv().await.unwrap().unwrap() {
        panic!("finished before the failure: {done:?}");
    }
    generator.fail_scheduler_once().unwrap();
    let failed = loop {
        match long.recv().await {
            Some(Ok(StreamEvent::Token(_))) => continue,
            other => break other,
        }
    };
    match failed {
        Some(Err(Error::Model(detail))) => assert!(detail.contains("restarted"), "{detail}"),
        other => panic!("expected the answer to fail with a word, got {other:?}"),
    }
    until_idle(&generator).await;
    assert_eq!(generator.scheduler_stats().restarts, 1);
    let (_, done) = collect(generator.stream(request("Say hello.", 4, &[]))).await.unwrap();
    assert!(done.completion_tokens > 0, "the scheduler serves again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kv_budget_and_the_queue_refuse_at_once_and_admitted_answers_finish() {
    let dir = tempfile::tempdir().unwrap();
    let model = LocalModel::load(&smollm2(), &Device::Cpu).unwrap();
    let per_position = model.model().kv_bytes_per_position();
    drop(model);
    // Room for one answer of about 40 prompt tokens and 120 answer tokens at a time.
    let config = SchedulerConfig {
        max_rows: 4,
        max_waiting: 2,
        kv_budget_bytes: 250 * per_position,
        prefill_chunk: 64,
        ..Default::default()
    };
    let generator = generator(dir.path(), config);

    // Can never fit: refused at once, before any token.
    let mut huge = generator.stream(request("Tell me everything.", 4000, &[]));
    match huge.recv().await {
        Some(Err(Error::Overloaded(detail))) => assert!(detail.contains("KV budget"), "{detail}"),
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Fits one at a time: the first runs, two wait, the fourth finds the queue full.
    let list = |i: usize| request(&format!("List the numbers from {i} to 200, separated by commas."), 120, &[]);
    let until = |running: usize, waiting: usize| {
        let generator = &generator;
        async move {
            let start = Instant::now();
            while (generator.scheduler_stats().running, generator.scheduler_stats().waiting) != (running, waiting) {
                assert!(start.elapsed() < Duration::from_secs(30), "{:?}", generator.scheduler_stats());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let mut streams = vec![generator.stream(list(0))];
    until(1, 0).await;
    streams.extend((1..3).map(|i| generator.stream(list(i))));
    until(1, 2).await;
    let mut refused = generator.stream(request("One more.", 32, &[]));
    match refused.recv().await {
        Some(Err(Error::Overloaded(detail))) => assert!(detail.contains("waiting"), "{detail}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    for events in streams {
        let (_, done) = collect(events).await.expect("an admitted answer finishes");
        assert!(done.completion_tokens > 0);
    }
    let stats = generator.scheduler_stats();
    assert_eq!(stats.refused, 2, "{stats:?}");
    assert_eq!(stats.step_rows, stats.steps, "one row at a time fits the budget: {stats:?}");
    until_idle(&generator).await;
}

/// Prompts that begin alike (the same passages, another question) start from the cached keys
/// and values of the earlier one, under the same adapters only, and answer exactly as without:
/// prompts through the fused step reuse any shared length, prompts through candle's ops whole
/// pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_prompt_prefix_is_reused_and_changes_no_token() {
    for fused in [false, true] {
        shared_prefix(fused, SchedulerConfig::default()).await;
    }
}

async fn shared_prefix(fused: bool, config: SchedulerConfig) {
    let dir = tempfile::tempdir().unwrap();
    let generator = generator_with(dir.path(), config, fused);
    assert_eq!(generator.model().model().exact_prefixes(), fused);
    let passages = "Passages:\n[1] The Missouri River is the longest river in North America, flowing 3,767 \
                    kilometres from the Rocky Mountains of western Montana to the Mississippi River at St. Louis.\n\n\
                    [2] The Mississippi River drains most of the continental United States between the Rocky \
                    Mountains and the Appalachians, and reaches the Gulf of Mexico south of New Orleans.\n\n\
                    [3] The Colorado River rises in the Rocky Mountains of Colorado and flows southwest for \
                    2,330 kilometres through the Colorado Plateau and the Grand Canyon before reaching Lake \
                    Mead, the Lower Colorado basin and, in wet years only, the Gulf of California in Mexico. \
                    Its waters are shared among seven American states and two Mexican states under a compact \
                    of 1922, and dams such as Hoover and Glen Canyon store several years of its flow.\n\n";
    let ask =
        |question: &str, adapters: &[(&str, f32)]| request(&format!("{passages}Question: {question}"), 16, adapters);
    let requests = [
        ask("How long is the Missouri River?", &[]),
        ask("Where does the Mississippi end?", &[]),
        ask("How long is the Missouri River?", &[("a", 1.0)]),
        ask("Which river drains the United States?", &[("a", 1.0)]),
    ];
    for (i, r) in requests.iter().enumerate() {
        let mix = generator.resolve(&r.adapters).unwrap();
        let alone = generator.model().complete(&r.messages, &r.params, &mix, &mut |_| true).unwrap();
        let (_, served) = collect(generator.stream(r.clone())).await.unwrap();
        assert_eq!(served, alone, "request {i}: the same answer with and without the cached prefix");
    }
    let stats = generator.scheduler_stats();
    // The second question of each adapter mix found the first's prompt; the first did not
    // find the other mix's.
    assert_eq!(stats.prefix_hits, 2, "fused {fused}: {stats:?}");
    assert!(stats.prefix_tokens >= 2 * 128, "fused {fused}: the passages were reused: {stats:?}");
    if !fused {
        assert_eq!(stats.prefix_tokens % 128, 0, "whole pieces: {stats:?}");
    }
    assert!(stats.prefix_cache_bytes > 0);
}
