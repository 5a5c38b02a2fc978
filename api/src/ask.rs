//! `tributary ask` (retrieve, generate, cite) and `tributary adapter add|list|remove`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tributary_attribution::{
    CitedChunk, NewReceipt, Quote, Receipt, RetrievedChunk, Weighting, ablation_weights, citation_weights,
};
use tributary_generator::{
    Answer, AnswerEvent, AnswerRequest, CitationPolicy, GenerationParams, Generator, SamplingParams, Source,
};
use tributary_indexer::{Address, Datanet, Visibility};
use tributary_retriever::{Mode, Passage, Query, Retriever, RetrieverConfig};

use crate::App;

#[derive(Args)]
pub(crate) struct AskArgs {
    /// Datanet(s) to answer from; repeat for several.
    #[arg(long = "datanet", required = true)]
    datanets: Vec<String>,
    /// Only passages credited to these contributors; repeat for several.
    #[arg(long = "contributor")]
    contributors: Vec<String>,
    /// A registered LoRA adapter; `ID=WEIGHT` and repeats combine several (an ensemble).
    #[arg(long = "adapter")]
    adapters: Vec<String>,
    /// Passages retrieved (weak ones and what exceeds the context budget are dropped).
    #[arg(long, default_value_t = 3)]
    k: usize,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[arg(long)]
    top_p: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Divides the logits of tokens the answer already used (1.0: off).
    #[arg(long, default_value_t = 1.1)]
    repeat_penalty: f32,
    /// Stop before this text; repeat for several.
    #[arg(long = "stop")]
    stops: Vec<String>,
    /// Keep only the question's hash in the receipt, not its text.
    #[arg(long)]
    private_question: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
    question: String,
}

#[derive(Subcommand)]
pub(crate) enum AdapterCommand {
    /// Register a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) after
    /// checking it against the generator model.
    Add {
        id: String,
        /// Directory with the adapter files.
        #[arg(required_unless_present = "hub")]
        path: Option<PathBuf>,
        /// A Hugging Face hub repository id instead, read from the local hub cache.
        #[arg(long, conflicts_with = "path")]
        hub: Option<String>,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Remove {
        id: String,
    },
}

fn parse_adapters(specs: &[String]) -> Result<Vec<(String, f32)>> {
    specs
        .iter()
        .map(|spec| match spec.rsplit_once('=') {
            Some((id, weight)) => {
                let weight: f32 = weight.parse().with_context(|| format!("adapter weight in {spec:?}"))?;
                Ok((id.to_string(), weight))
            }
            None => Ok((spec.clone(), 1.0)),
        })
        .collect()
}

/// A retrieved passage as the generator sees it.
pub(crate) fn source_of(p: &Passage) -> Source {
    Source {
        chunk_id: p.chunk_id.clone(),
        text: p.text.clone(),
        document: p.document.clone(),
        contributor: p.contributor.clone(),
        datanet: p.datanet.clone(),
        start: p.start,
        end: p.end,
        // Passages found by BM25 alone carry no cosine: they must earn their place by rank.
        relevance: p.dense_score.unwrap_or(0.0),
        score: p.score,
    }
}

/// The consumer of an answer stream went away before the end.
#[derive(Debug, thiserror::Error)]
#[error("the answer was cancelled: its consumer went away")]
pub(crate) struct Cancelled;

/// One question, where to look and how to generate.
pub(crate) struct Question<'a> {
    pub text: &'a str,
    pub datanets: &'a [String],
    pub contributors: &'a [String],
    pub k: usize,
    pub params: GenerationParams,
    pub adapters: Vec<(String, f32)>,
}

/// An answer with what it was made from.
pub(crate) struct Answered {
    pub answer: Answer,
    pub passages: Vec<Passage>,
    pub datanets: Vec<Datanet>,
    pub adapters: Vec<(String, f32)>,
    /// The price and weighting the ledger quoted before generating.
    pub quote: Quote,
}

/// Retrieves, generates and returns the checked answer; `on_token` sees the stream and returns
/// false to stop it (the consumer went away): generation is cancelled and nothing is recorded.
pub(crate) async fn answer(
    app: &App,
    generator: Arc<dyn Generator>,
    question: Question<'_>,
    on_token: &mut (dyn FnMut(&str) -> bool + Send),
) -> Result<Answered> {
    let Question { text: question, datanets: datanet_names, contributors, k, params, adapters } = question;
    let mut datanets = Vec::new();
    for name in datanet_names {
        datanets.push(app.datanet(name).await?);
    }
    let contributors = contributors.iter().map(|c| crate::parse_address(c)).collect::<Result<Vec<_>>>()?;
    let contributors = (!contributors.is_empty()).then_some(contributors.as_slice());
    let retriever = Retriever::new(app.store.clone(), app.query_embedder()?, RetrieverConfig::default());
    let passages =
        retriever.search(&Query { text: question, datanets: &datanets, contributors, k, mode: Mode::Hybrid }).await?;
    let adapter_ids: Vec<String> = adapters.iter().map(|(id, _)| id.clone()).collect();
    let quote = app.ledger().quote(&datanets, &adapter_ids).await?;
    let request = AnswerRequest {
        question: question.to_string(),
        sources: passages.iter().map(source_of).collect(),
        params,
        adapters: adapters.clone(),
        policy: CitationPolicy::default(),
        influence: quote.weighting == Weighting::Ablation,
    };
    let mut events = tributary_generator::answer(generator, request);
    while let Some(event) = events.recv().await {
        match event? {
            AnswerEvent::Token(piece) => {
                if !on_token(&piece) {
                    // Dropping the stream cancels generation.
                    bail!(Cancelled);
                }
            }
            AnswerEvent::Done(answer) => {
                return Ok(Answered { answer: *answer, passages, datanets, adapters, quote });
            }
        }
    }
    bail!("the answer stream ended without a result")
}

/// Writes the answer's receipt and credits. The fee is the quote for the Datanets searched and
/// the adapters used; an answer that found no relevant passage (the model was not called) is
/// free. Weights: the measured log-likelihood drops under ablation weighting; otherwise, or
/// when they could not be measured (a remote engine) or are all zero, sentences citing a chunk
/// times its retrieval score. The receipt records the weighting actually used.
pub(crate) async fn record(app: &App, question: &str, answered: &Answered, private_question: bool) -> Result<Receipt> {
    let Answered { answer, passages, datanets, adapters, quote } = answered;
    let mut quote = quote.clone();
    if answer.sources_offered == 0 {
        quote.fee = 0;
    }
    let datanet_id = |name: &str| datanets.iter().find(|d| d.name == name).map(|d| d.id);
    let mut cited = Vec::new();
    let mut basis = Vec::new();
    for c in &answer.citations {
        let sentences: Vec<String> =
            answer.sentences.iter().filter(|s| s.citations.contains(&c.n)).map(|s| s.text.clone()).collect();
        let score = passages
            .iter()
            .find(|p| p.chunk_id == c.chunk_id && p.datanet == c.datanet)
            .map(|p| p.score)
            .unwrap_or(0.0);
        let Some(datanet_id) = datanet_id(&c.datanet) else { bail!("cited Datanet {} was not searched", c.datanet) };
        basis.push((sentences.len(), score));
        cited.push(CitedChunk {
            datanet: c.datanet.clone(),
            datanet_id,
            datanet_owner: Address::ZERO,
            chunk_id: c.chunk_id.clone(),
            contributor: Address::ZERO,
            sentences,
            score,
            weight: 0,
        });
    }
    let drops: Vec<f64> = answer
        .citations
        .iter()
        .map(|c| answer.influence.iter().find(|i| i.n == c.n).map(|i| i.log_likelihood_drop).unwrap_or(0.0))
        .collect();
    let measured = (quote.weighting == Weighting::Ablation && !answer.influence.is_empty())
        .then(|| ablation_weights(&drops))
        .flatten();
    if measured.is_none() {
        quote.weighting = Weighting::Citation;
    }
    let weights = measured.unwrap_or_else(|| citation_weights(&basis));
    for (chunk, weight) in cited.iter_mut().zip(weights) {
        chunk.weight = weight;
    }
    let new = NewReceipt {
        question: question.to_string(),
        keep_question: !private_question && datanets.iter().all(|d| d.visibility == Visibility::Public),
        datanets: datanets.iter().map(|d| d.name.clone()).collect(),
        model: answer.model.clone(),
        adapters: adapters.clone(),
        answer: answer.answer.clone(),
        retrieved: passages
            .iter()
            .map(|p| RetrievedChunk { datanet: p.datanet.clone(), chunk_id: p.chunk_id.clone(), score: p.score })
            .collect(),
        cited,
        quote,
    };
    Ok(app.ledger().record(new).await?)
}

/// The numbered sources an answer cites, with who gets the credit.
pub(crate) fn print_sources(answer: &Answer) {
    if !answer.grounded {
        println!("(no passage supports this answer: nobody is credited)");
    }
    for c in &answer.citations {
        println!(
            "  [{}] {} bytes {}..{}  datanet {}  contributor {}",
            c.n, c.document, c.start, c.end, c.datanet, c.contributor
        );
    }
    let s = &answer.stats;
    println!(
        "  citations: {} of {} sentences by marker, {} post hoc, {} unsupported; {} markers dropped",
        s.marker,
        s.sentences,
        s.post_hoc,
        s.unsupported,
        s.dropped_out_of_range + s.dropped_unsupported
    );
}

pub(crate) async fn ask(app: &App, args: AskArgs) -> Result<()> {
    let generator = app.answer_backend()?;
    let params = GenerationParams {
        max_tokens: args.max_tokens,
        sampling: SamplingParams { temperature: args.temperature, top_p: args.top_p, seed: args.seed },
        stop: args.stops.clone(),
        repeat_penalty: args.repeat_penalty,
    };
    let adapters = parse_adapters(&args.adapters)?;
    let json = args.json;
    let mut stdout = std::io::stdout();
    let mut on_token = |piece: &str| {
        if !json {
            print!("{piece}");
            let _ = stdout.flush();
        }
        true
    };
    let question = Question {
        text: &args.question,
        datanets: &args.datanets,
        contributors: &args.contributors,
        k: args.k,
        params,
        adapters,
    };
    let answered = answer(app, generator, question, &mut on_token).await?;
    let receipt = record(app, &args.question, &answered, args.private_question).await?;
    if json {
        let mut value = serde_json::to_value(&answered.answer)?;
        value["receipt_id"] = receipt.id.clone().into();
        value["fee"] = receipt.fee.to_string().into();
        value["credits"] = serde_json::to_value(&receipt.credits)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("\n\nSources:");
        print_sources(&answered.answer);
        println!();
        crate::ledger::print_receipt(&receipt);
    }
    Ok(())
}

pub(crate) async fn adapter(app: &App, command: AdapterCommand) -> Result<()> {
    let registry = app.adapters()?;
    match command {
        AdapterCommand::Add { id, path, hub } => {
            let source = match (path, hub) {
                (Some(path), None) => tributary_generator::AdapterSource::Path(
                    std::fs::canonicalize(&path).with_context(|| format!("adapter directory {}", path.display()))?,
                ),
                (None, Some(repo)) => tributary_generator::AdapterSource::Hub(repo),
                _ => bail!("give a directory or --hub REPO"),
            };
            let generator = app.generator()?;
            let entry = registry.register(&id, source, generator.model().model().config())?;
            println!("registered {} (rank {}, modules {})", entry.id, entry.rank, entry.target_modules.join(","));
        }
        AdapterCommand::List { json } => {
            let entries = registry.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("no adapters registered");
            } else {
                for e in entries {
                    println!("{}  rank {}  {}  {:?}", e.id, e.rank, e.target_modules.join(","), e.source);
                }
            }
        }
        AdapterCommand::Remove { id } => {
            if !registry.remove(&id)? {
                bail!("adapter {id} is not registered");
            }
            println!("removed {id}");
        }
    }
    Ok(())
}
