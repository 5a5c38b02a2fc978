//! `tributary ask`: a cited answer, streamed as it is generated (or one JSON object), then its
//! sources and receipt.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use tributary_generator::{GenerationParams, SamplingParams};

use super::output;
use crate::app::answers::{Question, Unpaid, answer, record};
use crate::app::{App, parse_address};

#[derive(Args)]
pub struct AskArgs {
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
    /// The address that pays the answer's fee from its balance (`account fund`, `chain
    /// deposit`). Without one the answer is free and credits no one, unless the one Datanet
    /// asked has a sponsor budget that covers it.
    #[arg(long)]
    payer: Option<String>,
    /// Keep only the question's hash in the receipt, not its text.
    #[arg(long)]
    private_question: bool,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
    question: String,
}

pub(super) fn parse_adapters(specs: &[String]) -> Result<Vec<(String, f32)>> {
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

pub async fn ask(app: &App, args: AskArgs) -> Result<()> {
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
        payer: args.payer.as_deref().map(parse_address).transpose()?,
        unpaid: Unpaid::Free,
        scope: crate::app::search::CLI_SCOPE,
        history: Vec::new(),
    };
    let answered = answer(app, generator, question, &mut on_token).await?;
    let receipt = record(app, &args.question, &answered, args.private_question).await?;
    if json {
        let mut value = serde_json::to_value(&answered.answer)?;
        value["receipt_id"] = receipt.id.clone().into();
        value["fee"] = receipt.fee.to_string().into();
        value["credits"] = serde_json::to_value(&receipt.credits)?;
        value["payment"] = serde_json::to_value(&receipt.payment)?;
        value["trained"] = serde_json::to_value(&receipt.trained)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("\n\nSources:");
        output::print_sources(&answered.answer);
        println!();
        output::print_receipt(&receipt);
    }
    Ok(())
}
