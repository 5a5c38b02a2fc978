//! Model Factory (`tributary adapter train`): a LoRA adapter fine-tuned on a Datanet's
//! question/answer pairs, evaluated on pairs held out of training, saved in PEFT's format with
//! its training log, and registered.
//!
//! A pair names the chunks its answer rests on, or retrieval finds the Datanet's passage that
//! best supports it (the question and the answer as the query) and the log records which. An
//! example is laid out as the generator asks (passages, instruction, question), so the adapter
//! learns to answer from passages and cite them. Runs live in `<data-dir>/training/<name>/`
//! (checkpoints: a run killed midway resumes when started again with the same settings), the
//! result in `<data-dir>/adapters/<name>/`: `adapter_config.json`,
//! `adapter_model.safetensors`, `training_log.jsonl` and `training.json` (the log's root,
//! the Datanet versions, the evaluation).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tributary_retriever::{Fusion, Mode, Query};
use tributary_trainer::{
    Control, DatanetVersion, Example, FrozenBase, InfluenceIndex, LoraShape, Passage, Row, RunHeader, Similarity,
    StepRecord, TokenizedExample, TrainSettings, row_log_likelihoods,
};

use crate::app::App;
use crate::app::search::{CLI_SCOPE, retriever};

/// One line of a pairs file.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Pair {
    pub question: String,
    pub answer: String,
    /// The ids of the chunks the answer rests on; found by retrieval when absent.
    #[serde(default)]
    pub chunks: Vec<String>,
}

pub fn read_pairs(path: &Path) -> Result<Vec<Pair>> {
    crate::app::read_jsonl(path)
}

/// What to train.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRequest {
    pub name: String,
    pub datanet: String,
    pub pairs: Vec<Pair>,
    pub lora: LoraShape,
    pub settings: TrainSettings,
    /// Share of the pairs held out for evaluation (at least one when there are two or more).
    pub holdout: f64,
    /// Longest example, in tokens.
    pub max_tokens: usize,
    /// Pairs to write from the Datanet's own chunks besides `pairs` (see [`synthesized_pairs`]).
    #[serde(default)]
    pub synthesize: usize,
}

/// Held-out figures of the adapter against its base.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    pub heldout_pairs: usize,
    /// Mean negative log-likelihood per answer token of the held-out answers.
    pub base_loss: f64,
    pub adapter_loss: f64,
    /// Mean token F1 of the answers written to the held-out questions against theirs.
    pub base_answer_f1: f64,
    pub adapter_answer_f1: f64,
}

impl Evaluation {
    /// Better than the base on held-out pairs: a lower loss, and answers no worse.
    pub fn beats_base(&self) -> bool {
        self.heldout_pairs > 0 && self.adapter_loss < self.base_loss && self.adapter_answer_f1 >= self.base_answer_f1
    }
}

/// `training.json`, stored with the adapter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingRecord {
    pub adapter: String,
    pub datanet: String,
    pub base_model: String,
    pub base_model_blake3: String,
    /// The training log's Merkle root (blake3, hex).
    pub log_root: String,
    pub datanets: Vec<DatanetVersion>,
    pub lora: LoraShape,
    pub settings: TrainSettings,
    pub train_pairs: usize,
    pub steps: usize,
    pub final_loss: f64,
    pub tokens_per_second: f64,
    pub seconds: f64,
    pub evaluation: Evaluation,
    /// Pairs whose chunks retrieval chose (they named none).
    pub retrieved_chunks: usize,
    /// Pairs written from the Datanet's chunks (`--synthesize`), of the pairs above.
    #[serde(default)]
    pub synthesized_pairs: usize,
    /// When `adapter publish` registered it (seconds since the Unix epoch); until then only
    /// `adapter try` runs it.
    #[serde(default)]
    pub published_at: Option<u64>,
    /// Whether it was published though it does not beat its base (`--force`).
    #[serde(default)]
    pub forced: bool,
    /// Seconds spent sketching the training examples' gradients (training-data attribution).
    #[serde(default)]
    pub influence_seconds: f64,
    /// The step a killed or stopped run resumed from, if it did.
    #[serde(default)]
    pub resumed_at: Option<usize>,
    /// Where the registry contract holds its training root, once `adapter commit` wrote it.
    #[serde(default)]
    pub chain: Option<crate::app::onchain::AdapterOnChain>,
}

/// A training example as `examples.jsonl` beside the adapter lists it: what its hash in the
/// training log stands for (anyone can recompute the hash from it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExampleRecord {
    pub hash: String,
    pub question: String,
    pub answer: String,
    pub chunks: Vec<String>,
}

/// The training examples beside a trained adapter.
pub const EXAMPLES_FILE: &str = "examples.jsonl";

pub fn training_dir(app: &App, name: &str) -> PathBuf {
    app.settings.data_dir.join("training").join(name)
}

pub fn adapter_dir(app: &App, name: &str) -> PathBuf {
    app.settings.data_dir.join("adapters").join(name)
}

/// `training.json` of an adapter this data directory trained, if it trained it.
pub fn training_record(app: &App, name: &str) -> Result<Option<TrainingRecord>> {
    let path = adapter_dir(app, name).join("training.json");
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| format!("{}", path.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("{}", path.display())),
    }
}

/// `training.json` of an adapter this data directory trained; an error when it did not.
fn trained(app: &App, name: &str) -> Result<TrainingRecord> {
    training_record(app, name)?.with_context(|| format!("adapter {name} was not trained here"))
}

/// Turns pairs into examples over `datanet`'s chunks: named chunks are read from the catalog
/// (refused when the Datanet has no such chunk), the others found by retrieval. Returns the
/// examples and how many chunks retrieval chose.
async fn examples(app: &App, datanet: &tributary_indexer::Datanet, pairs: &[Pair]) -> Result<(Vec<Example>, usize)> {
    let catalog = app.store.catalog();
    let search = retriever(app, Fusion::default(), CLI_SCOPE)?;
    let datanets = [datanet.clone()];
    let mut out = Vec::with_capacity(pairs.len());
    let mut retrieved = 0;
    for (i, pair) in pairs.iter().enumerate() {
        let line = i + 1;
        if pair.question.trim().is_empty() || pair.answer.trim().is_empty() {
            bail!("pair {line}: question and answer must not be empty");
        }
        let passages = if pair.chunks.is_empty() {
            let text = format!("{} {}", pair.question.trim(), pair.answer.trim());
            let query = Query { text: &text, datanets: &datanets, contributors: None, k: 1, mode: Mode::Hybrid };
            let found = search.search(&query).await.with_context(|| format!("pair {line}: finding its passage"))?;
            let Some(best) = found.into_iter().next() else {
                bail!("pair {line}: no passage of Datanet {} supports it; name its chunks", datanet.name)
            };
            retrieved += 1;
            vec![Passage { chunk_id: best.chunk_id, text: best.text }]
        } else {
            let ids = pair
                .chunks
                .iter()
                .map(|c| {
                    c.parse::<tributary_indexer::ChunkId>().map_err(|e| anyhow::anyhow!("pair {line}: chunk {c}: {e}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let records = catalog.chunk_records(datanet.id, &ids).await?;
            ids.iter()
                .map(|id| {
                    let record = records
                        .iter()
                        .find(|r| r.chunk_id == *id)
                        .with_context(|| format!("pair {line}: Datanet {} has no chunk {id}", datanet.name))?;
                    Ok(Passage { chunk_id: id.to_hex(), text: record.text.clone() })
                })
                .collect::<Result<Vec<_>>>()?
        };
        out.push(Example { question: pair.question.trim().into(), answer: pair.answer.trim().into(), passages });
    }
    Ok((out, retrieved))
}

/// The default warmup of a run of `total` steps: its first 6%.
pub fn default_warmup(total: usize) -> usize {
    (total as f64 * 0.06).ceil() as usize
}

/// How many of `n` pairs a `holdout` share keeps out of training: at least one when there
/// are two or more and the share is not zero, never all.
pub fn held_out(n: usize, holdout: f64) -> usize {
    if n < 2 || holdout <= 0.0 { 0 } else { ((n as f64 * holdout).ceil() as usize).clamp(1, n - 1) }
}

/// Splits `examples` into (train, held out): the held-out ones are those whose hash, salted
/// with the seed, sorts first, so the split is fixed by the data and the seed.
fn split(examples: Vec<Example>, holdout: f64, seed: u64) -> (Vec<Example>, Vec<Example>) {
    let held = held_out(examples.len(), holdout);
    let mut keyed: Vec<(String, Example)> = examples
        .into_iter()
        .map(|e| (blake3::hash(format!("{seed}:{}", e.hash()).as_bytes()).to_hex().to_string(), e))
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut train: Vec<Example> = keyed.into_iter().map(|(_, e)| e).collect();
    let heldout = train.drain(..held).collect();
    (train, heldout)
}

fn file_blake3(path: &Path) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("hashing {}", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Trains `request.name`, calling `on_step` after every step; returns what `training.json`
/// records. Resumes a run of the same name and settings that a kill interrupted.
pub async fn train_adapter(
    app: &App,
    request: TrainRequest,
    on_step: impl FnMut(&StepRecord, usize) -> Control + Send + 'static,
) -> Result<TrainingRecord> {
    tributary_generator::validate_adapter_id(&request.name)?;
    if request.name.contains('/') {
        bail!("a trained adapter's name is one path segment (no /)");
    }
    if !(0.0..1.0).contains(&request.holdout) {
        bail!("--holdout must be in [0, 1)");
    }
    let registry = app.adapters()?;
    if registry.get(&request.name).is_ok() || training_record(app, &request.name)?.is_some() {
        bail!("adapter {} already exists; train under another name", request.name);
    }
    let datanet = app.datanet(&request.datanet).await?;
    let run_dir = training_dir(app, &request.name);
    let mut pairs = request.pairs.clone();
    let synthesized = if request.synthesize > 0 {
        synthesized_pairs(app, &datanet, &run_dir, request.synthesize, request.settings.seed).await?
    } else {
        Vec::new()
    };
    let synthesized_count = synthesized.len();
    pairs.extend(synthesized);
    if pairs.is_empty() {
        bail!("no training pairs: give pairs, or have some written from the Datanet's chunks (--synthesize N)");
    }
    let (examples, retrieved) = examples(app, &datanet, &pairs).await?;
    let (train, heldout) = split(examples, request.holdout, request.settings.seed);
    let (tree, _) = crate::app::onchain::contribution_tree(app, &datanet).await?;
    let chunks = app.store.catalog().chunk_ids(datanet.id).await?.len() as u64;
    let version = DatanetVersion { name: datanet.name.clone(), root: hex::encode(tree.root()), chunks };
    let model_path = tributary_generator::locate_model(app.settings.llm.as_deref())?;
    let generator = app.generator()?;
    let out_dir = adapter_dir(app, &request.name);
    let name = request.name.clone();
    let datanet_name = datanet.name.clone();
    let record = tokio::task::spawn_blocking(move || -> Result<TrainingRecord> {
        let local = generator.model();
        let tokenize = |examples: &[Example], what: &str| {
            tributary_trainer::tokenize(local, examples, request.max_tokens).with_context(|| format!("{what} pairs"))
        };
        let (train_rows, heldout_rows) = (tokenize(&train, "training")?, tokenize(&heldout, "held-out")?);
        let heldout: Vec<(Example, TokenizedExample)> = heldout.into_iter().zip(heldout_rows).collect();
        let header = RunHeader {
            adapter: name.clone(),
            base_model: local.name().to_string(),
            base_model_blake3: file_blake3(&model_path)?,
            lora: request.lora.clone(),
            settings: request.settings.clone(),
            datanets: vec![version],
            examples: train_rows.iter().map(|e| e.hash.clone()).collect(),
        };
        let (_, total) = request.settings.plan(train_rows.len())?;
        let base = FrozenBase::new(local.model())?;
        let started = std::time::Instant::now();
        let mut on_step = on_step;
        let mut tokens = 0usize;
        let mut last_loss = f64::NAN;
        let outcome = tributary_trainer::train(&base, &train_rows, &header, &run_dir, &mut |step| {
            tokens += step_tokens(step, &train_rows);
            last_loss = step.loss;
            on_step(step, total)
        })?;
        let seconds = started.elapsed().as_secs_f64();
        if last_loss.is_nan() {
            // Resumed from the last step's checkpoint (killed while saving the adapter): no
            // step ran now, and the log has the last loss.
            let logged = tributary_trainer::verify_log(&outcome.log_path, Some(&outcome.log_root))?;
            last_loss = logged.steps.last().map_or(0.0, |s| s.loss);
        }
        if !outcome.finished() {
            bail!(
                "training of {name} stopped at step {} of {}; run it again to resume",
                outcome.steps_done,
                outcome.total_steps
            );
        }
        std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
        outcome.params.save_peft(&out_dir, local.name())?;
        // Evaluated as it will serve: the saved files, loaded as the registry loads them.
        let adapter = local.load_adapter(&name, &out_dir)?;
        let evaluation = evaluate(&base, &outcome.params, local, Arc::new(adapter), &heldout)?;
        // Training-data attribution: every training example's gradient sketch at the result.
        let sketching = std::time::Instant::now();
        InfluenceIndex::build(&base, &outcome.params, &train_rows, &mut |_| {})?.save(&out_dir)?;
        let influence_seconds = sketching.elapsed().as_secs_f64();
        let listed: Vec<String> = train
            .iter()
            .map(|e| {
                let record = ExampleRecord {
                    hash: e.hash(),
                    question: e.question.clone(),
                    answer: e.answer.clone(),
                    chunks: e.passages.iter().map(|p| p.chunk_id.clone()).collect(),
                };
                serde_json::to_string(&record)
            })
            .collect::<Result<_, _>>()?;
        std::fs::write(out_dir.join(EXAMPLES_FILE), listed.join("\n") + "\n").context("writing examples.jsonl")?;
        std::fs::copy(&outcome.log_path, out_dir.join(tributary_trainer::LOG_FILE))
            .with_context(|| format!("copying the training log into {}", out_dir.display()))?;
        let record = TrainingRecord {
            adapter: name,
            datanet: datanet_name,
            base_model: header.base_model.clone(),
            base_model_blake3: header.base_model_blake3.clone(),
            log_root: outcome.log_root.clone(),
            datanets: header.datanets.clone(),
            lora: header.lora.clone(),
            settings: header.settings.clone(),
            train_pairs: train_rows.len(),
            steps: outcome.steps_done,
            final_loss: last_loss,
            tokens_per_second: if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 },
            seconds,
            evaluation,
            retrieved_chunks: retrieved,
            synthesized_pairs: synthesized_count,
            published_at: None,
            forced: false,
            influence_seconds,
            resumed_at: outcome.resumed_at,
            chain: None,
        };
        write_record(&out_dir, &record)?;
        Ok(record)
    })
    .await
    .context("the training task")??;
    Ok(record)
}

/// Chunks a synthesized question must share content words with to be kept.
const MIN_SHARED_WORDS: usize = 1;

/// Pairs written from `datanet`'s own chunks, for a Datanet without question/answer pairs:
/// `count` chunks drawn in an order fixed by the seed (blake3 of seed and chunk id), and for
/// each, the base model writes one question the chunk answers (greedy); the answer is the
/// chunk's own sentence that answers it ([`tributary_generator::answering_sentence`]: the one
/// holding the fact of the kind asked), never the model's words. A question that is not one
/// (no `?`, too short or long), shares no word with its chunk, or finds no answering sentence
/// is skipped, so fewer than `count` may come back. Each pair names its chunk. They are kept in
/// the run directory, so a run resumed after a kill trains on the same pairs.
pub async fn synthesized_pairs(
    app: &App,
    datanet: &tributary_indexer::Datanet,
    run_dir: &Path,
    count: usize,
    seed: u64,
) -> Result<Vec<Pair>> {
    let kept = run_dir.join(format!("synthesized-{count}-{seed}.jsonl"));
    if kept.exists() {
        return read_pairs(&kept);
    }
    let catalog = app.store.catalog();
    let mut ids = catalog.chunk_ids(datanet.id).await?;
    ids.sort_by_cached_key(|id| blake3::hash(format!("{seed}:{}", id.to_hex()).as_bytes()).to_hex().to_string());
    ids.truncate(count);
    let mut records = catalog.chunk_records(datanet.id, &ids).await?;
    records.sort_by_key(|r| ids.iter().position(|id| *id == r.chunk_id));
    let generator = app.generator()?;
    let pairs = tokio::task::spawn_blocking(move || -> Result<Vec<Pair>> {
        let local = generator.model();
        let params =
            tributary_generator::GenerationParams { max_tokens: 48, stop: vec!["\n".into()], ..Default::default() };
        let mut pairs = Vec::new();
        for record in &records {
            let prompt = format!(
                "Passage:\n{}\n\nWrite one question that this passage answers, about a fact it states. Reply \
                 with the question only.",
                record.text.trim()
            );
            let reply =
                local
                    .complete(&[tributary_generator::ChatMessage::user(prompt)], &params, &Vec::new(), &mut |_| true)?;
            let question = reply.text.trim().trim_start_matches(|c: char| !c.is_alphanumeric()).trim().to_string();
            let is_question = question.ends_with('?') && (12..=300).contains(&question.len());
            if !is_question || question_shares(&question, &record.text) < MIN_SHARED_WORDS {
                continue;
            }
            let Some(answer) = tributary_generator::answering_sentence(&question, &record.text) else { continue };
            pairs.push(Pair { question, answer, chunks: vec![record.chunk_id.to_hex()] });
        }
        Ok(pairs)
    })
    .await
    .context("the question-writing task")??;
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let tmp = run_dir.join("synthesized.jsonl.tmp");
    let lines: Vec<String> = pairs.iter().map(serde_json::to_string).collect::<Result<_, _>>()?;
    std::fs::write(&tmp, lines.join("\n") + "\n").with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &kept).with_context(|| format!("writing {}", kept.display()))?;
    Ok(pairs)
}

/// Lowercased alphanumeric words of four letters or more that `question` and `text` share.
fn question_shares(question: &str, text: &str) -> usize {
    let words = |t: &str| -> std::collections::HashSet<String> {
        t.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() >= 4).map(str::to_lowercase).collect()
    };
    words(question).intersection(&words(text)).count()
}

fn write_record(dir: &Path, record: &TrainingRecord) -> Result<()> {
    let path = dir.join("training.json");
    let tmp = dir.join("training.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(record)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// Why `publish` refuses (the HTTP API answers each with its own code).
#[derive(Debug, thiserror::Error)]
pub enum PublishRefused {
    #[error("adapter {0} is already published")]
    AlreadyPublished(String),
    #[error(
        "adapter {name} does not beat its base on {} held-out pairs (loss {:.4} against {:.4}, answer F1 {:.3} \
         against {:.3}); publish it anyway with force (--force)",
        evaluation.heldout_pairs, evaluation.adapter_loss, evaluation.base_loss, evaluation.adapter_answer_f1,
        evaluation.base_answer_f1
    )]
    WorseThanBase { name: String, evaluation: Evaluation },
}

/// Publishes a trained adapter, the use case of both front ends: refused when it does not
/// beat its base on the held-out pairs (a higher loss, or worse answers), unless `force`. The
/// adapter is registered (loaded off the async runtime), so questions may name it; the training
/// data its answers may credit is registered in the ledger; and `owner`, when given, becomes the
/// adapter's pricing owner unless one was set before (an admin's choice stands).
pub async fn publish_adapter(
    app: &App,
    name: &str,
    force: bool,
    owner: Option<tributary_indexer::Address>,
) -> Result<(TrainingRecord, crate::app::training_credits::Registered)> {
    let mut record = trained(app, name)?;
    if record.published_at.is_some() {
        bail!(PublishRefused::AlreadyPublished(name.to_string()));
    }
    if !record.evaluation.beats_base() && !force {
        bail!(PublishRefused::WorseThanBase { name: name.to_string(), evaluation: record.evaluation.clone() });
    }
    let dir = std::fs::canonicalize(adapter_dir(app, name))?;
    let (generator, registry) = (app.generator()?, app.adapters()?);
    let (source, adapter) = (tributary_generator::AdapterSource::Path(dir.clone()), name.to_string());
    tokio::task::spawn_blocking(move || registry.register(&adapter, source, generator.model().model().config()))
        .await
        .context("the adapter-loading task")??;
    record.published_at = Some(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
    );
    record.forced = !record.evaluation.beats_base();
    write_record(&dir, &record)?;
    let registered = crate::app::training_credits::register(app, name).await?;
    if let Some(owner) = owner {
        let ledger = app.ledger();
        let mut pricing = ledger.adapter_pricing(name).await?;
        if pricing.owner.is_none() {
            pricing.owner = Some(owner);
            ledger.set_adapter_pricing(name, &pricing).await?;
        }
    }
    Ok((record, registered))
}

/// One question answered by the base and by a trained adapter (published or not), from the
/// same passages: what `adapter try` shows side by side. Nothing is charged or recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub passages: Vec<(String, String)>,
    pub base: String,
    pub adapter: String,
}

/// The passages `ask` would offer for `question` in `datanet` (retrieved, then selected by the
/// citation policy), as the generator's sources.
async fn offered(app: &App, datanet: &str, question: &str) -> Result<Vec<tributary_generator::Source>> {
    let datanet = app.datanet(datanet).await?;
    let search = retriever(app, Fusion::default(), CLI_SCOPE)?;
    let datanets = [datanet];
    let query = Query { text: question, datanets: &datanets, contributors: None, k: 5, mode: Mode::Hybrid };
    let found = search.search(&query).await?;
    let generator = app.generator()?;
    let local = generator.model();
    let sources: Vec<tributary_generator::Source> = found.iter().map(crate::app::answers::source_of).collect();
    Ok(tributary_generator::select_sources(
        &sources,
        &tributary_generator::CitationPolicy::default(),
        local.context_length() / 2,
        &|t| local.count_tokens(t),
    ))
}

pub async fn try_adapter(app: &App, name: &str, datanet: &str, question: &str) -> Result<Trial> {
    trained(app, name)?;
    let chosen = offered(app, datanet, question).await?;
    let generator = app.generator()?;
    let dir = adapter_dir(app, name);
    let question = question.to_string();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || -> Result<Trial> {
        let local = generator.model();
        let messages = tributary_generator::messages(&question, &chosen);
        let adapter = Arc::new(local.load_adapter(&name, &dir)?);
        let params = tributary_generator::GenerationParams::default();
        let run = |mix: tributary_generator::AdapterMix| -> Result<String> {
            Ok(local.complete(&messages, &params, &mix, &mut |_| true)?.text)
        };
        Ok(Trial {
            passages: chosen.iter().map(|s| (s.chunk_id.clone(), s.text.clone())).collect(),
            base: run(Vec::new())?,
            adapter: run(vec![(adapter, 1.0)])?,
        })
    })
    .await
    .context("the trial task")?
}

/// A training example's influence on an answer.
#[derive(Debug, Clone, Serialize)]
pub struct Influential {
    /// Cosine similarity of the two loss gradients on the adapter's parameters.
    pub score: f64,
    pub example: ExampleRecord,
}

/// An adapter's answer with the training examples it owes most to.
#[derive(Debug, Clone, Serialize)]
pub struct Influences {
    pub answer: String,
    pub examples: Vec<Influential>,
    /// The attribution's own cost: one forward and backward pass, the sketch and the ranking.
    pub seconds: f64,
}

/// A trained adapter's parameters, training examples and their sketches.
pub(crate) struct Trained {
    params: tributary_trainer::LoraParams,
    pub(crate) examples: Vec<ExampleRecord>,
    index: InfluenceIndex,
    adapter: Arc<tributary_generator::Adapter>,
}

/// How answers are compared with training examples: see [`Similarity`].
pub const SIMILARITY: Similarity = Similarity::Cosine;

impl Trained {
    /// The sketch of the gradient of `text` as the reply to `messages` (the prompt the model
    /// was given) on the adapter's parameters: one forward and backward pass.
    pub(crate) fn sketch(
        &self,
        local: &tributary_generator::LocalModel,
        base: &FrozenBase<'_>,
        messages: &[tributary_generator::ChatMessage],
        text: &str,
    ) -> Result<Vec<f32>> {
        let (tokens, target_start) = local.training_tokens(messages, text.trim())?;
        Ok(tributary_trainer::gradient_sketch(base, &self.params, Row { tokens: &tokens, target_start })?)
    }

    /// The training examples most similar to `sketch`, best first, with their similarity.
    pub(crate) fn rank(&self, sketch: &[f32], top: usize, similarity: Similarity) -> Vec<(usize, f64)> {
        self.index.rank_by(sketch, top, similarity)
    }
}

fn read_examples(dir: &Path) -> Result<Vec<ExampleRecord>> {
    let path = dir.join(EXAMPLES_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("{}", path.display())))
        .collect()
}

pub(crate) fn load_trained(local: &tributary_generator::LocalModel, name: &str, dir: &Path) -> Result<Trained> {
    let record_path = dir.join("training.json");
    let bytes = std::fs::read(&record_path).with_context(|| format!("reading {}", record_path.display()))?;
    let record: TrainingRecord =
        serde_json::from_slice(&bytes).with_context(|| format!("{}", record_path.display()))?;
    let model = local.model();
    let params = tributary_trainer::LoraParams::init(&record.lora, model.config(), 0, model.device())?;
    params.load_peft(dir)?;
    let examples = read_examples(dir)?;
    let index = InfluenceIndex::load(dir)?;
    if index.hashes.len() != examples.len() || index.hashes.iter().zip(&examples).any(|(h, e)| *h != e.hash) {
        bail!("{}: the sketches do not match the examples", dir.display());
    }
    Ok(Trained { params, examples, index, adapter: Arc::new(local.load_adapter(name, dir)?) })
}

/// The training examples behind the answer `trained` gives to `question` over `sources`.
fn attribute_answer(
    local: &tributary_generator::LocalModel,
    base: &FrozenBase<'_>,
    trained: &Trained,
    question: &str,
    sources: &[tributary_generator::Source],
    top: usize,
) -> Result<Influences> {
    let messages = tributary_generator::messages(question, sources);
    let params = tributary_generator::GenerationParams::default();
    let answer = local.complete(&messages, &params, &vec![(trained.adapter.clone(), 1.0)], &mut |_| true)?.text;
    let started = std::time::Instant::now();
    let sketch = trained.sketch(local, base, &messages, &answer)?;
    let examples = trained
        .rank(&sketch, top, SIMILARITY)
        .into_iter()
        .map(|(i, score)| Influential { score, example: trained.examples[i].clone() })
        .collect();
    Ok(Influences { answer, examples, seconds: started.elapsed().as_secs_f64() })
}

/// `adapter influence`: an answer of the trained adapter and its most influential examples.
pub async fn influence(app: &App, name: &str, datanet: &str, question: &str, top: usize) -> Result<Influences> {
    trained(app, name)?;
    let sources = offered(app, datanet, question).await?;
    let generator = app.generator()?;
    let dir = adapter_dir(app, name);
    let (name, question) = (name.to_string(), question.to_string());
    tokio::task::spawn_blocking(move || -> Result<Influences> {
        let local = generator.model();
        let trained = load_trained(local, &name, &dir)?;
        let base = FrozenBase::new(local.model())?;
        attribute_answer(local, &base, &trained, &question, &sources, top)
    })
    .await
    .context("the attribution task")?
}

/// How often the answer to a training example's own question ranks that example first, each
/// question asked as `ask` asks it (retrieved passages, the adapter's own answer): the
/// attribution's sanity check where every fact occurs in exactly one example.
#[derive(Debug, Clone, Serialize)]
pub struct InfluenceCheck {
    pub questions: usize,
    /// Answers whose own example ranks first ([`SIMILARITY`], what credits use).
    pub top1: usize,
    pub top1_rate: f64,
    /// The same with the other similarity ([`Similarity::Centered`] or cosine), for comparison.
    pub other_similarity: Similarity,
    pub other_top1_rate: f64,
    /// Answers whose first-ranked example rests on a chunk of their own example's (the chunk
    /// is what a credit pays: several examples may share one).
    pub chunk_top1_rate: f64,
    /// Answers whose own example is among those the training credits pay
    /// ([`crate::app::training_credits::credited_examples`]), and how many those are on average.
    pub credited_rate: f64,
    pub mean_credited: f64,
    /// Answers that state their own example's answer (token F1 >= 0.5 against it), and the
    /// top-1 rate among them: an answer that states another fact is not about its example's.
    pub right_answers: usize,
    pub right_top1_rate: f64,
    /// Mean seconds of attribution per answer (beyond generating it).
    pub mean_seconds: f64,
}

pub async fn influence_check(app: &App, name: &str, datanet: &str, limit: usize) -> Result<InfluenceCheck> {
    trained(app, name)?;
    let dir = adapter_dir(app, name);
    let mut asked = Vec::new();
    for e in read_examples(&dir)?.into_iter().take(limit) {
        let sources = offered(app, datanet, &e.question).await?;
        asked.push((e, sources));
    }
    let generator = app.generator()?;
    let name = name.to_string();
    tokio::task::spawn_blocking(move || -> Result<InfluenceCheck> {
        let local = generator.model();
        let trained = load_trained(local, &name, &dir)?;
        let base = FrozenBase::new(local.model())?;
        let other = match SIMILARITY {
            Similarity::Cosine => Similarity::Centered,
            Similarity::Centered => Similarity::Cosine,
        };
        let (mut top1, mut other_top1, mut chunk_top1, mut credited, mut n_credited) = (0, 0, 0, 0, 0);
        let (mut right, mut right_top1) = (0, 0);
        let mut seconds = 0.0;
        let params = tributary_generator::GenerationParams::default();
        for (own, sources) in &asked {
            let messages = tributary_generator::messages(&own.question, sources);
            let mix = vec![(trained.adapter.clone(), 1.0)];
            let answer = local.complete(&messages, &params, &mix, &mut |_| true)?.text;
            let started = std::time::Instant::now();
            let sketch = trained.sketch(local, &base, &messages, &answer)?;
            let ranked = trained.rank(&sketch, trained.examples.len(), SIMILARITY);
            seconds += started.elapsed().as_secs_f64();
            let first = ranked.first().map(|(i, _)| &trained.examples[*i]);
            let hit = first.is_some_and(|e| e.hash == own.hash);
            top1 += usize::from(hit);
            if answer_f1(&answer, &own.answer) >= 0.5 {
                right += 1;
                right_top1 += usize::from(hit);
            }
            chunk_top1 += usize::from(first.is_some_and(|e| e.chunks.iter().any(|c| own.chunks.contains(c))));
            let scored: Vec<(&ExampleRecord, f64)> = ranked.iter().map(|(i, s)| (&trained.examples[*i], *s)).collect();
            let chosen = crate::app::training_credits::credited_examples(&scored, |_| true);
            credited += usize::from(chosen.iter().any(|(e, _)| e.hash == own.hash));
            n_credited += chosen.len();
            let other_first = trained.rank(&sketch, 1, other).first().map(|(i, _)| *i);
            other_top1 += usize::from(other_first.is_some_and(|i| trained.examples[i].hash == own.hash));
        }
        let n = asked.len().max(1) as f64;
        Ok(InfluenceCheck {
            questions: asked.len(),
            top1,
            top1_rate: top1 as f64 / n,
            other_similarity: other,
            other_top1_rate: other_top1 as f64 / n,
            chunk_top1_rate: chunk_top1 as f64 / n,
            credited_rate: credited as f64 / n,
            mean_credited: n_credited as f64 / n,
            right_answers: right,
            right_top1_rate: right_top1 as f64 / right.max(1) as f64,
            mean_seconds: seconds / n,
        })
    })
    .await
    .context("the attribution task")?
}

/// Every token a step's examples hold (prompt and reply): what tokens per second counts, as
/// trainers count the tokens they run.
fn step_tokens(step: &StepRecord, rows: &[TokenizedExample]) -> usize {
    step.examples.iter().filter_map(|h| rows.iter().find(|r| &r.hash == h)).map(|r| r.tokens.len()).sum()
}

/// Held-out figures: mean loss per answer token, and the answers each model writes (greedy,
/// from the pair's passages, as `ask` prompts) scored against the pair's answer.
fn evaluate(
    base: &FrozenBase<'_>,
    params: &tributary_trainer::LoraParams,
    local: &tributary_generator::LocalModel,
    adapter: Arc<tributary_generator::Adapter>,
    heldout: &[(Example, TokenizedExample)],
) -> Result<Evaluation> {
    let rows: Vec<Row<'_>> =
        heldout.iter().map(|(_, e)| Row { tokens: &e.tokens, target_start: e.target_start }).collect();
    let tokens: usize = rows.iter().map(Row::targets).sum();
    // No held-out pairs: zeros, which `beats_base` never counts as better.
    let mean = |lls: Vec<f64>| if tokens == 0 { 0.0 } else { -lls.iter().sum::<f64>() / tokens as f64 };
    let generation = tributary_generator::GenerationParams { max_tokens: 96, ..Default::default() };
    let mut f1 = [0f64; 2];
    for (example, _) in heldout {
        let texts: Vec<(usize, &str)> =
            example.passages.iter().enumerate().map(|(i, p)| (i + 1, p.text.as_str())).collect();
        let messages = tributary_generator::numbered_texts(&example.question, &texts);
        for (slot, mix) in f1.iter_mut().zip([Vec::new(), vec![(adapter.clone(), 1.0)]]) {
            let reply = local.complete(&messages, &generation, &mix, &mut |_| true)?;
            *slot += answer_f1(&reply.text, &example.answer);
        }
    }
    let n = heldout.len().max(1) as f64;
    Ok(Evaluation {
        heldout_pairs: rows.len(),
        base_loss: mean(row_log_likelihoods(base, None, &rows)?),
        adapter_loss: mean(row_log_likelihoods(base, Some(params), &rows)?),
        base_answer_f1: f1[0] / n,
        adapter_answer_f1: f1[1] / n,
    })
}

/// SQuAD's token F1 of an answer against the expected one: lowercased words, punctuation and
/// citation markers dropped.
pub fn answer_f1(got: &str, expected: &str) -> f64 {
    let words = |t: &str| -> Vec<String> {
        t.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect()
    };
    let (got, expected) = (words(&strip_markers(got)), words(expected));
    if got.is_empty() || expected.is_empty() {
        return if got == expected { 1.0 } else { 0.0 };
    }
    let mut pool = expected.clone();
    let mut common = 0;
    for w in &got {
        if let Some(i) = pool.iter().position(|e| e == w) {
            pool.swap_remove(i);
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let (p, r) = (common as f64 / got.len() as f64, common as f64 / expected.len() as f64);
    2.0 * p * r / (p + r)
}

/// `text` without `[n]` citation markers.
fn strip_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close) if after[..close].chars().all(|c| c.is_ascii_digit() || c == ',' || c == ' ') => {
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The adapter's training log checked against the root its `training.json` records, and,
/// once committed, against the root the registry contract holds.
pub async fn verify_training(app: &App, name: &str) -> Result<(tributary_trainer::VerifiedLog, bool)> {
    let record = trained(app, name)?;
    let log = adapter_dir(app, name).join(tributary_trainer::LOG_FILE);
    let verified = tributary_trainer::verify_log(&log, Some(&record.log_root))?;
    if record.chain.is_none() {
        return Ok((verified, false));
    }
    let on_chain = crate::app::onchain::adapter_training_root(app, name).await?;
    let expected = format!("0x{}", verified.root);
    match on_chain {
        Some(root) if root.to_string() == expected => Ok((verified, true)),
        Some(root) => bail!("the registry holds training root {root} for {name}, not the log's {expected}"),
        None => bail!("the registry holds no training root for {name}, though training.json says it was committed"),
    }
}

/// Commits a published adapter's training root in the registry contract (once).
pub async fn commit_training(app: &App, name: &str) -> Result<crate::app::onchain::AdapterOnChain> {
    let mut record = trained(app, name)?;
    if record.published_at.is_none() {
        bail!("adapter {name} is not published: publish it before committing its training on chain");
    }
    if let Some(done) = &record.chain {
        bail!("adapter {name}'s training root is already on chain (transaction {})", done.transaction);
    }
    let committed = crate::app::onchain::commit_adapter_training(app, name, &record.log_root).await?;
    record.chain = Some(committed.clone());
    write_record(&adapter_dir(app, name), &record)?;
    Ok(committed)
}
