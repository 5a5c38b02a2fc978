//! `tributary ask` (retrieve, generate, cite) and `tributary adapter add|list|remove`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tributary_generator::{
    Answer, AnswerEvent, AnswerRequest, CitationPolicy, GenerationParams, Generator, SamplingParams, Source,
};
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

/// One question, where to look and how to generate.
pub(crate) struct Question<'a> {
    pub text: &'a str,
    pub datanets: &'a [String],
    pub contributors: &'a [String],
    pub k: usize,
    pub params: GenerationParams,
    pub adapters: Vec<(String, f32)>,
}

/// Retrieves, generates and returns the checked answer; `on_token` sees the stream.
pub(crate) async fn answer(
    app: &App,
    generator: Arc<dyn Generator>,
    question: Question<'_>,
    on_token: &mut dyn FnMut(&str),
) -> Result<Answer> {
    let Question { text: question, datanets: datanet_names, contributors, k, params, adapters } = question;
    let mut datanets = Vec::new();
    for name in datanet_names {
        datanets.push(app.datanet(name).await?);
    }
    let contributors = contributors.iter().map(|c| crate::parse_address(c)).collect::<Result<Vec<_>>>()?;
    let contributors = (!contributors.is_empty()).then_some(contributors.as_slice());
    let retriever = Retriever::new(app.store.clone(), app.embedder()?, RetrieverConfig::default());
    let passages =
        retriever.search(&Query { text: question, datanets: &datanets, contributors, k, mode: Mode::Hybrid }).await?;
    let request = AnswerRequest {
        question: question.to_string(),
        sources: passages.iter().map(source_of).collect(),
        params,
        adapters,
        policy: CitationPolicy::default(),
    };
    let mut events = tributary_generator::answer(generator, request);
    while let Some(event) = events.recv().await {
        match event? {
            AnswerEvent::Token(piece) => on_token(&piece),
            AnswerEvent::Done(answer) => return Ok(*answer),
        }
    }
    bail!("the answer stream ended without a result")
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
    };
    let question = Question {
        text: &args.question,
        datanets: &args.datanets,
        contributors: &args.contributors,
        k: args.k,
        params,
        adapters,
    };
    let answer = answer(app, generator, question, &mut on_token).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("\n\nSources:");
        print_sources(&answer);
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
