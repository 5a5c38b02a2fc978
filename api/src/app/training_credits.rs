//! Training-data credits: an answer of an adapter trained here credits, beside the passages it
//! cited, the chunks of the training examples that most influenced it, under the policy's
//! training share (`Shares::training_bps`).
//!
//! Which examples: the answer's gradient on the adapter's parameters against each training
//! example's, sketched at training time (`tributary_trainer::influence`), by cosine. The best
//! [`TOP_EXAMPLES`] whose similarity is positive and at least [`RELATIVE_FLOOR`] of the best
//! one's are credited, in proportion to it; an example's weight is divided equally among its
//! chunks. Only examples the training log shows a step trained on count.
//!
//! What may be credited is fixed when the adapter is published ([`register`]): the chunks its
//! verified training log names, registered in the ledger under (adapter, log root). The ledger
//! refuses any other chunk, takes each chunk's first contributor from the catalog, and
//! `verify` rechecks both.
//!
//! One worker thread computes the gradients, one answer at a time: a forward and backward pass
//! over the prompt and the answer takes every core and about a gigabyte, so concurrent passes
//! would only slow each other and multiply the memory. It keeps the frozen base (its dense
//! copies) and the last adapters' parameters and sketches loaded between answers. Answers from a
//! remote engine (`--llm-url`) are not attributed: the gradients need the model here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use tributary_attribution::{TrainedChunk, training_weights};
use tributary_generator::{AdapterSource, ChatMessage, LocalGenerator};
use tributary_indexer::Address;
use tributary_trainer::FrozenBase;

use crate::app::App;
use crate::app::training::{
    ExampleRecord, SIMILARITY, Trained, TrainingRecord, adapter_dir, load_trained, training_record,
};

/// Training examples credited per adapter and answer, at most.
pub const TOP_EXAMPLES: usize = 5;

/// An example is credited when its similarity is at least this share of the best example's:
/// the answer's gradient is somewhat aligned with most training examples of the same task, and
/// crediting all of those would spread the share over examples that did not shape the answer.
pub const RELATIVE_FLOOR: f64 = 0.5;

/// Adapters whose parameters and sketches the worker keeps loaded.
const LOADED_ADAPTERS: usize = 4;

/// What an adapter's published training registered: the log's root, its Datanet, and the
/// examples its steps trained on.
#[derive(Debug, Clone)]
pub struct Registered {
    pub root: String,
    pub datanet: String,
    pub datanet_id: i64,
    pub trained_on: Arc<HashSet<String>>,
    pub chunks: usize,
}

/// Verifies a published adapter's training log against its `training.json` and registers the
/// chunks its steps name in the ledger (idempotent): from then on its answers may credit them.
pub async fn register(app: &App, name: &str) -> Result<Registered> {
    let record = published(app, name)?.with_context(|| format!("adapter {name} is not a published trained adapter"))?;
    let log = adapter_dir(app, name).join(tributary_trainer::LOG_FILE);
    let verified = tributary_trainer::verify_log(&log, Some(&record.log_root))
        .with_context(|| format!("adapter {name}'s training log"))?;
    let datanet = app.datanet(&record.datanet).await?;
    let mut chunks: Vec<String> = verified.steps.iter().flat_map(|s| s.chunks.iter().cloned()).collect();
    chunks.sort_unstable();
    chunks.dedup();
    app.ledger().register_training(name, &record.log_root, datanet.id, &chunks).await?;
    let trained_on: HashSet<String> = verified.steps.iter().flat_map(|s| s.examples.iter().cloned()).collect();
    Ok(Registered {
        root: record.log_root,
        datanet: datanet.name,
        datanet_id: datanet.id,
        trained_on: Arc::new(trained_on),
        chunks: chunks.len(),
    })
}

/// `training.json` of `name` when it was trained here, is published, and is the adapter the
/// registry serves under that name (an admin may have removed it and registered another).
fn published(app: &App, name: &str) -> Result<Option<TrainingRecord>> {
    let Some(record) = training_record(app, name)?.filter(|r| r.published_at.is_some()) else { return Ok(None) };
    let Ok(entry) = app.adapters()?.get(name) else { return Ok(None) };
    let here = std::fs::canonicalize(adapter_dir(app, name)).ok();
    let served_here = matches!(&entry.source, AdapterSource::Path(path) if Some(path) == here.as_ref());
    Ok(served_here.then_some(record))
}

/// One answer to attribute.
struct Job {
    adapter: String,
    root: String,
    dir: PathBuf,
    prompt: Vec<ChatMessage>,
    text: String,
    reply: tokio::sync::oneshot::Sender<Result<Vec<(ExampleRecord, f64)>>>,
}

/// The worker and what it registered (see the module docs).
pub struct TrainingCredits {
    jobs: std::sync::mpsc::Sender<Job>,
    registered: Mutex<HashMap<(String, String), Registered>>,
}

impl TrainingCredits {
    /// Starts the worker over `generator`'s model. It stops when this is dropped.
    pub fn start(generator: Arc<LocalGenerator>) -> Result<Self> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("training-credits".into())
            .spawn(move || work(&generator, queue))
            .context("starting the training-credits worker")?;
        Ok(TrainingCredits { jobs, registered: Mutex::new(HashMap::new()) })
    }

    /// The training chunks to credit for `text`, the reply of the adapters `adapters` to
    /// `prompt`: for each adapter trained and published here, its influential examples'
    /// chunks (see the module docs). Adapters not trained here add nothing.
    pub async fn attribute(
        &self,
        app: &App,
        adapters: &[(String, f32)],
        prompt: &[ChatMessage],
        text: &str,
    ) -> Result<Vec<TrainedChunk>> {
        let mut out = Vec::new();
        for (name, _) in adapters {
            let Some(record) = published(app, name)? else { continue };
            let registered = self.registered(app, name, &record).await?;
            let (reply, answer) = tokio::sync::oneshot::channel();
            let job = Job {
                adapter: name.clone(),
                root: registered.root.clone(),
                dir: adapter_dir(app, name),
                prompt: prompt.to_vec(),
                text: text.to_string(),
                reply,
            };
            self.jobs.send(job).map_err(|_| anyhow!("the training-credits worker has stopped"))?;
            let ranked = answer.await.map_err(|_| anyhow!("the training-credits worker dropped an answer"))??;
            out.extend(credited_chunks(name, &registered, &ranked));
        }
        Ok(out)
    }

    /// `name`'s registration, made once per process (and log root).
    async fn registered(&self, app: &App, name: &str, record: &TrainingRecord) -> Result<Registered> {
        let key = (name.to_string(), record.log_root.clone());
        if let Some(found) = self.registered.lock().map_err(|_| anyhow!("a lock is poisoned"))?.get(&key) {
            return Ok(found.clone());
        }
        let registered = register(app, name).await?;
        if registered.root != record.log_root {
            bail!("adapter {name}'s training record changed while it was registered");
        }
        self.registered.lock().map_err(|_| anyhow!("a lock is poisoned"))?.insert(key, registered.clone());
        Ok(registered)
    }
}

/// The examples a credit pays from `ranked` (examples with their similarity, best first):
/// those `eligible` with chunks, of positive similarity within [`RELATIVE_FLOOR`] of the best
/// of them, at most [`TOP_EXAMPLES`].
pub fn credited_examples<E: std::borrow::Borrow<ExampleRecord>>(
    ranked: &[(E, f64)],
    eligible: impl Fn(&ExampleRecord) -> bool,
) -> Vec<&(E, f64)> {
    let eligible: Vec<&(E, f64)> = ranked
        .iter()
        .filter(|(e, score)| *score > 0.0 && !e.borrow().chunks.is_empty() && eligible(e.borrow()))
        .collect();
    let best = eligible.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    eligible.into_iter().filter(|(_, s)| *s >= best * RELATIVE_FLOOR).take(TOP_EXAMPLES).collect()
}

/// The chunks to credit from `ranked`: the [`credited_examples`] among those the training log
/// trained on, each example's weight divided among its chunks, summed per chunk.
fn credited_chunks(adapter: &str, registered: &Registered, ranked: &[(ExampleRecord, f64)]) -> Vec<TrainedChunk> {
    let chosen = credited_examples(ranked, |e| registered.trained_on.contains(&e.hash));
    let weights = training_weights(&chosen.iter().map(|(_, s)| *s).collect::<Vec<_>>());
    let mut by_chunk: BTreeMap<&str, (u64, Vec<String>)> = BTreeMap::new();
    for ((example, _), weight) in chosen.iter().zip(weights) {
        let share = (weight / example.chunks.len() as u64).max(1);
        for chunk in &example.chunks {
            let entry = by_chunk.entry(chunk.as_str()).or_default();
            entry.0 += share;
            entry.1.push(example.hash.clone());
        }
    }
    by_chunk
        .into_iter()
        .map(|(chunk_id, (weight, examples))| TrainedChunk {
            adapter: adapter.to_string(),
            training_root: registered.root.clone(),
            datanet: registered.datanet.clone(),
            datanet_id: registered.datanet_id,
            chunk_id: chunk_id.to_string(),
            contributor: Address::ZERO,
            examples,
            weight,
        })
        .collect()
}

/// The worker's loop: one job at a time, the frozen base made on the first and kept.
fn work(generator: &LocalGenerator, queue: std::sync::mpsc::Receiver<Job>) {
    let local = generator.model();
    let mut base: Option<FrozenBase<'_>> = None;
    // Most recently used last.
    let mut loaded: Vec<((String, String), Trained)> = Vec::new();
    while let Ok(job) = queue.recv() {
        let run = std::panic::AssertUnwindSafe(|| -> Result<Vec<(ExampleRecord, f64)>> {
            if base.is_none() {
                base = Some(FrozenBase::new(local.model())?);
            }
            let Some(base) = base.as_ref() else { bail!("the frozen base is missing") };
            let key = (job.adapter.clone(), job.root.clone());
            let at = match loaded.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    if loaded.len() >= LOADED_ADAPTERS {
                        loaded.remove(0);
                    }
                    loaded.push((key, load_trained(local, &job.adapter, &job.dir)?));
                    loaded.len() - 1
                }
            };
            let entry = loaded.remove(at);
            let sketch = entry.1.sketch(local, base, &job.prompt, &job.text);
            let ranked = sketch.map(|sketch| {
                let ranked = entry.1.rank(&sketch, entry.1.examples.len(), SIMILARITY);
                ranked.into_iter().map(|(i, s)| (entry.1.examples[i].clone(), s)).collect()
            });
            loaded.push(entry);
            ranked
        });
        let result = std::panic::catch_unwind(run)
            .unwrap_or_else(|_| Err(anyhow!("training-data attribution panicked on this answer")));
        let _ = job.reply.send(result);
    }
}
