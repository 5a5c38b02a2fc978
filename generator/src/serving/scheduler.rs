//! Iteration-level scheduling (as in Orca, vLLM and LoRAX): the requests of a local model share
//! its decoding steps. One thread owns the running batch; between two steps, requests join
//! (FIFO, while the KV budget and the row limit allow) and leave (finished, or their consumer
//! went away, which frees their cache at once). Each row has its own adapter mix, sampling,
//! stop strings and token limit ([`Sequence`]). Prompts run in fixed pieces of
//! [`SchedulerConfig::prefill_chunk`] tokens, a budget of them per iteration, between decoding
//! steps, so a long prompt does not stall the answers already streaming.
//!
//! Every row keeps a cache of its own that grows by doubling up to its prompt plus `max_tokens`
//! (no paged blocks): admission reserves that most, so a request admitted never fails for
//! memory mid-answer, and one that can never fit, or finds the queue full, is refused at once
//! with [`Error::Overloaded`].
//!
//! A row's arithmetic does not depend on the other rows (see [`Model::step_rows`] and the
//! fixed prompt pieces): greedy decoding gives a request the same tokens alone as in any batch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc as std_mpsc};

use tokio::sync::mpsc;

use crate::adapters::lora::AdapterMix;
use crate::error::{Error, Result};
use crate::runtime::kv::KvCache;
use crate::serving::backend::StreamEvent;
use crate::serving::engine::{FinishReason, GenerationParams, LocalModel, PREFILL_CHUNK, Sequence, positions, step};

/// How the scheduler batches and what it admits.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SchedulerConfig {
    /// Requests decoded together in one step.
    pub max_rows: usize,
    /// Requests waiting for a row; beyond, a request is refused.
    pub max_waiting: usize,
    /// Memory for the rows' keys and values. A request reserves what its cache can reach.
    pub kv_budget_bytes: usize,
    /// Prompt tokens run in one piece, and per iteration between two decoding steps.
    pub prefill_chunk: usize,
    /// Memory for the keys and values of recent prompts, reused by prompts that begin with the
    /// same tokens under the same adapters (0: off): at any length where prompts run fused,
    /// else in whole pieces ([`crate::Model::exact_prefixes`]), so reuse changes no bit.
    pub prefix_cache_bytes: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_rows: 16,
            max_waiting: 64,
            kv_budget_bytes: 4 << 30,
            prefill_chunk: PREFILL_CHUNK,
            prefix_cache_bytes: 256 << 20,
        }
    }
}

/// What the scheduler is doing, for metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SchedulerStats {
    /// Rows in the running batch (prefilling or decoding).
    pub running: usize,
    /// Requests waiting for a row.
    pub waiting: usize,
    /// KV bytes the running rows reserve.
    pub kv_reserved_bytes: usize,
    pub kv_budget_bytes: usize,
    /// Decoding steps run, and rows they carried (their ratio is the mean batch size).
    pub steps: u64,
    pub step_rows: u64,
    /// Prompt tokens run.
    pub prefill_tokens: u64,
    /// Requests refused: no room in the queue or the budget.
    pub refused: u64,
    /// Requests that started from a cached prefix, and the prompt tokens that saved.
    pub prefix_hits: u64,
    pub prefix_tokens: u64,
    /// Bytes the prefix cache holds.
    pub prefix_cache_bytes: usize,
    /// Times the scheduler's thread failed outside the model work and started again.
    pub restarts: u64,
}

/// A request handed to the scheduler.
pub(crate) struct Job {
    pub(crate) prompt: Vec<u32>,
    pub(crate) params: GenerationParams,
    pub(crate) mix: AdapterMix,
    /// Where its events go; sized so that a send never finds it full (see `stream`).
    pub(crate) events: mpsc::Sender<Result<StreamEvent>>,
}

/// The scheduler's thread, and what requests and metrics share with it.
pub(crate) struct Scheduler {
    jobs: std_mpsc::Sender<(Job, usize)>,
    shared: Arc<Shared>,
    config: SchedulerConfig,
    bytes_per_position: usize,
    context: usize,
}

#[derive(Default)]
struct Shared {
    waiting: AtomicUsize,
    running: AtomicUsize,
    reserved: AtomicUsize,
    steps: AtomicU64,
    step_rows: AtomicU64,
    prefill_tokens: AtomicU64,
    refused: AtomicU64,
    prefix_hits: AtomicU64,
    prefix_tokens: AtomicU64,
    prefix_bytes: AtomicUsize,
    restarts: AtomicU64,
    /// Test support: the next iteration panics outside the guarded model work.
    fail_next: AtomicBool,
}

impl Scheduler {
    /// Starts the scheduler's thread for `local`.
    pub(crate) fn start(local: Arc<LocalModel>, config: SchedulerConfig) -> Result<Self> {
        let (jobs, queue) = std_mpsc::channel();
        let shared = Arc::new(Shared::default());
        let bytes_per_position = local.model().kv_bytes_per_position();
        let context = local.context_length();
        let (thread_shared, thread_config) = (shared.clone(), config.clone());
        std::thread::Builder::new()
            .name("tributary-scheduler".into())
            .spawn(move || supervise(&local, &queue, &thread_shared, &thread_config))
            .map_err(|e| Error::Io("starting the scheduler thread".into(), e))?;
        Ok(Scheduler { jobs, shared, config, bytes_per_position, context })
    }

    /// Bytes the cache of a request can reach: its prompt and answer (its cache never grows
    /// beyond them; see [`Sequence::new`]).
    pub(crate) fn reservation(&self, prompt: usize, max_tokens: usize) -> usize {
        positions(prompt, max_tokens, self.context) * self.bytes_per_position
    }

    /// Queues `job`, or refuses it at once: it can never fit the KV budget, or the queue is
    /// full.
    pub(crate) fn submit(&self, job: Job) -> Result<()> {
        let reserved = self.reservation(job.prompt.len(), job.params.max_tokens);
        let refuse = |detail: String| {
            self.shared.refused.fetch_add(1, Ordering::Relaxed);
            Err(Error::Overloaded(detail))
        };
        if reserved > self.config.kv_budget_bytes {
            return refuse(format!(
                "the answer's cache needs {} MiB; the whole KV budget is {} MiB",
                reserved.div_ceil(1 << 20),
                self.config.kv_budget_bytes >> 20
            ));
        }
        let waiting = self.shared.waiting.fetch_add(1, Ordering::AcqRel);
        if waiting >= self.config.max_waiting {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            return refuse(format!("{waiting} answers are already waiting for the model"));
        }
        if self.jobs.send((job, reserved)).is_err() {
            self.shared.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Model("the scheduler has stopped".into()));
        }
        Ok(())
    }

    /// Test support: makes the scheduler's next iteration panic outside the guarded model
    /// work, as a bug in its bookkeeping would, to show that it recovers.
    pub(crate) fn fail_next_iteration(&self) {
        self.shared.fail_next.store(true, Ordering::Release);
    }

    pub(crate) fn stats(&self) -> SchedulerStats {
        let s = &self.shared;
        SchedulerStats {
            running: s.running.load(Ordering::Relaxed),
            waiting: s.waiting.load(Ordering::Relaxed),
            kv_reserved_bytes: s.reserved.load(Ordering::Relaxed),
            kv_budget_bytes: self.config.kv_budget_bytes,
            steps: s.steps.load(Ordering::Relaxed),
            step_rows: s.step_rows.load(Ordering::Relaxed),
            prefill_tokens: s.prefill_tokens.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            prefix_hits: s.prefix_hits.load(Ordering::Relaxed),
            prefix_tokens: s.prefix_tokens.load(Ordering::Relaxed),
            prefix_cache_bytes: s.prefix_bytes.load(Ordering::Relaxed),
            restarts: s.restarts.load(Ordering::Relaxed),
        }
    }
}

/// Fewest shared prompt tokens worth copying instead of running.
const MIN_PREFIX: usize = 16;

/// The keys and values of recent prompts, least recently used evicted first.
struct PrefixCache {
    entries: Vec<PrefixEntry>,
    bytes: usize,
    budget: usize,
    clock: u64,
}

struct PrefixEntry {
    tokens: Vec<u32>,
    /// The adapters it ran with (held: an adapter's address is not reused while it lives).
    mix: AdapterMix,
    kv: KvCache,
    bytes: usize,
    used: u64,
}

fn same_mix(a: &AdapterMix, b: &AdapterMix) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((x, v), (y, w))| Arc::ptr_eq(x, y) && v.to_bits() == w.to_bits())
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixCache {
    fn new(budget: usize) -> Self {
        PrefixCache { entries: Vec::new(), bytes: 0, budget, clock: 0 }
    }

    /// The entry sharing the longest prefix with `prompt` under `mix`, and that length.
    fn longest(&mut self, prompt: &[u32], mix: &AdapterMix) -> Option<(&KvCache, usize)> {
        self.clock += 1;
        let (index, shared) = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| same_mix(&e.mix, mix))
            .map(|(i, e)| (i, common_prefix(&e.tokens, prompt)))
            .max_by_key(|(_, shared)| *shared)?;
        let entry = &mut self.entries[index];
        entry.used = self.clock;
        Some((&entry.kv, shared))
    }

    /// Keeps the keys and values of `sequence`'s prompt (just run), unless an entry covers it.
    fn insert(&mut self, sequence: &Sequence<'_>) -> Result<()> {
        let (tokens, mix) = (sequence.prompt(), sequence.mix());
        self.clock += 1;
        if let Some(entry) =
            self.entries.iter_mut().find(|e| same_mix(&e.mix, mix) && common_prefix(&e.tokens, tokens) == tokens.len())
        {
            entry.used = self.clock;
            return Ok(());
        }
        // Entries this prompt extends are covered by it.
        let (mut kept, mut freed) = (Vec::with_capacity(self.entries.len()), 0);
        for entry in self.entries.drain(..) {
            if same_mix(&entry.mix, mix) && common_prefix(&entry.tokens, tokens) == entry.tokens.len() {
                freed += entry.bytes;
            } else {
                kept.push(entry);
            }
        }
        self.entries = kept;
        self.bytes -= freed;
        let kv = sequence.cache().prefix(tokens.len())?;
        let bytes = kv.bytes();
        if bytes > self.budget {
            return Ok(());
        }
        while self.bytes + bytes > self.budget {
            let Some(oldest) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.used).map(|(i, _)| i) else {
                break;
            };
            self.bytes -= self.entries.swap_remove(oldest).bytes;
        }
        self.bytes += bytes;
        self.entries.push(PrefixEntry { tokens: tokens.to_vec(), mix: mix.clone(), kv, bytes, used: self.clock });
        Ok(())
    }
}

/// What a caught panic said, when it said it as text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// `work`, a panic in it (a bug) turned into an error of the rows it served, so that one bad
/// request does not take the scheduler, and every other answer, down with it.
fn guarded<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let what = panic_message(panic.as_ref());
        tracing::error!(panic = %what, "generation panicked; its rows fail, the scheduler goes on");
        Err(Error::Model(format!("generation failed: {what}")))
    })
}

/// A request in the running batch.
struct Row<'m> {
    sequence: Sequence<'m>,
    events: mpsc::Sender<Result<StreamEvent>>,
    reserved: usize,
}

/// What the scheduler's thread holds: answers waiting for a row, and the running batch.
#[derive(Default)]
struct Batch<'m> {
    waiting: VecDeque<(Job, usize)>,
    rows: Vec<Row<'m>>,
}

/// Runs the scheduler until its queue closes. A panic outside the guarded model work (a bug in
/// the bookkeeping) would otherwise end the thread, and every later answer would fail until the
/// process restarts: the answers it held get an error, the counters are reset, and it starts
/// again with an empty batch (and an empty prefix cache).
fn supervise(local: &LocalModel, queue: &std_mpsc::Receiver<(Job, usize)>, shared: &Shared, config: &SchedulerConfig) {
    loop {
        let mut batch = Batch::default();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(local, queue, shared, config, &mut batch)));
        let Err(panic) = outcome else { return };
        let what = panic_message(panic.as_ref());
        tracing::error!(panic = %what, "the scheduler failed; its answers fail and it starts again");
        let failed = || Err(Error::Model(format!("the scheduler failed ({what}) and restarted: ask again")));
        for (job, _) in batch.waiting.drain(..) {
            shared.waiting.fetch_sub(1, Ordering::AcqRel);
            let _ = job.events.blocking_send(failed());
        }
        for row in batch.rows.drain(..) {
            let _ = row.events.blocking_send(failed());
        }
        shared.running.store(0, Ordering::Relaxed);
        shared.reserved.store(0, Ordering::Relaxed);
        shared.prefix_bytes.store(0, Ordering::Relaxed);
        shared.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

/// The scheduler's loop: until every sender is gone and nothing runs.
fn run<'m>(
    local: &'m LocalModel,
    queue: &std_mpsc::Receiver<(Job, usize)>,
    shared: &Shared,
    config: &SchedulerConfig,
    batch: &mut Batch<'m>,
) {
    let Batch { waiting, rows } = batch;
    let mut reserved = 0usize;
    // Prompts run in whole pieces from their start: a cached prefix cut at a piece boundary
    // holds the bits the prompt would compute itself; with prompts that run fused, any cut does.
    let any_cut = local.model().exact_prefixes();
    let piece = config.prefill_chunk.max(1);
    let reuse = config.prefix_cache_bytes > 0;
    let mut prefixes = PrefixCache::new(config.prefix_cache_bytes);
    loop {
        if shared.fail_next.swap(false, Ordering::AcqRel) {
            panic!("a failure injected by a test");
        }
        if rows.is_empty() && waiting.is_empty() {
            match queue.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        waiting.extend(queue.try_iter());

        // Requests whose consumer went away leave now, and free what they held.
        waiting.retain(|(job, _)| {
            let gone = job.events.is_closed();
            if gone {
                shared.waiting.fetch_sub(1, Ordering::AcqRel);
            }
            !gone
        });
        rows.retain(|row| {
            let gone = row.events.is_closed();
            if gone {
                reserved -= row.reserved;
            }
            !gone
        });

        // Admission, first come first served: the head waits for room rather than being passed.
        while rows.len() < config.max_rows.max(1)
            && let Some((_, need)) = waiting.front()
            && reserved + need <= config.kv_budget_bytes
            && let Some((job, need)) = waiting.pop_front()
        {
            shared.waiting.fetch_sub(1, Ordering::AcqRel);
            reserved += need;
            let Job { prompt, params, mix, events } = job;
            let mut sequence = Sequence::new(local, prompt, params, mix);
            if reuse
                && sequence.prefilling()
                && let Some((kv, common)) = prefixes.longest(sequence.prompt(), sequence.mix())
                // At least one prompt token runs: its logits give the first answer token.
                && let common = common.min(sequence.prompt().len() - 1)
                && let usable = if any_cut { common } else { common / piece * piece }
                && usable >= MIN_PREFIX
            {
                match sequence.reuse(kv, usable) {
                    Ok(()) => {
                        shared.prefix_hits.fetch_add(1, Ordering::Relaxed);
                        shared.prefix_tokens.fetch_add(sequence.cache().len() as u64, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, "a cached prefix did not fit; running the prompt"),
                }
            }
            rows.push(Row { sequence, events, reserved: need });
        }
        shared.running.store(rows.len(), Ordering::Relaxed);
        shared.reserved.store(reserved, Ordering::Relaxed);

        // Prompts: whole pieces, up to the per-iteration budget (at least one piece).
        let mut failed: Vec<(usize, Error)> = Vec::new();
        let mut budget = config.prefill_chunk.max(1);
        for (r, row) in rows.iter_mut().enumerate() {
            if budget == 0 {
                break;
            }
            if row.sequence.prefilling() {
                match guarded(|| row.sequence.prefill(config.prefill_chunk)) {
                    Ok(ran) => {
                        shared.prefill_tokens.fetch_add(ran as u64, Ordering::Relaxed);
                        budget = budget.saturating_sub(ran);
                        // The whole prompt is in its cache now (the first answer token is not).
                        if reuse && !row.sequence.prefilling() {
                            if let Err(e) = prefixes.insert(&row.sequence) {
                                tracing::warn!(error = %e, "a prompt's keys and values were not cached");
                            }
                            shared.prefix_bytes.store(prefixes.bytes, Ordering::Relaxed);
                        }
                    }
                    Err(e) => failed.push((r, e)),
                }
            }
        }

        // One decoding step for every row past its prompt.
        let mut decoding: Vec<(usize, &mut Sequence<'_>)> = rows
            .iter_mut()
            .enumerate()
            .filter(|(r, row)| row.sequence.next_input().is_some() && !failed.iter().any(|(f, _)| f == r))
            .map(|(r, row)| (r, &mut row.sequence))
            .collect();
        if !decoding.is_empty() {
            shared.steps.fetch_add(1, Ordering::Relaxed);
            shared.step_rows.fetch_add(decoding.len() as u64, Ordering::Relaxed);
            let index: Vec<usize> = decoding.iter().map(|(r, _)| *r).collect();
            let mut sequences: Vec<&mut Sequence<'_>> = decoding.iter_mut().map(|(_, s)| &mut **s).collect();
            match guarded(|| Ok(step(local.model(), &mut sequences))) {
                Ok(errors) => failed.extend(errors.into_iter().map(|(i, e)| (index[i], e))),
                // Which row it was is unknown: the step's rows fail; the others go on.
                Err(e) => failed.extend(index.iter().map(|&r| (r, Error::Model(e.to_string())))),
            }
        }

        // Out with the text; finished and failed rows leave.
        let mut keep = Vec::with_capacity(rows.len());
        for (r, mut row) in rows.drain(..).enumerate() {
            if let Some(at) = failed.iter().position(|(f, _)| *f == r) {
                let (_, error) = failed.swap_remove(at);
                let _ = row.events.blocking_send(Err(error));
                reserved -= row.reserved;
                continue;
            }
            let piece = row.sequence.pending();
            if !piece.is_empty() {
                match row.events.try_send(Ok(StreamEvent::Token(piece.to_string()))) {
                    Ok(()) => row.sequence.mark_sent(),
                    // Sized so it cannot fill; should it, the text waits for the next step.
                    Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => row.sequence.cancel(),
                }
            }
            match row.sequence.finished() {
                Some(FinishReason::Cancelled) => reserved -= row.reserved,
                Some(_) if row.sequence.pending().is_empty() => {
                    let _ = row.events.blocking_send(Ok(StreamEvent::Done(row.sequence.completion())));
                    reserved -= row.reserved;
                }
                _ => keep.push(row),
            }
        }
        *rows = keep;
        shared.running.store(rows.len(), Ordering::Relaxed);
        shared.reserved.store(reserved, Ordering::Relaxed);
    }
}
