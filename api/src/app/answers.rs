//! Answering: check and price the question and set its fee aside (`prepare`), retrieve,
//! generate and cite (`generate`), then record the receipt, its charge and its credits in one
//! transaction (`record`). `tributary ask`, the demo, `/v1/answers` and `/v1/chat/completions`
//! all answer through here.

use std::sync::Arc;

use anyhow::{Result, bail};
use tributary_attribution::{
    Amount, CitedChunk, Error as AttributionError, MAX_ADAPTERS, MAX_DATANETS, NewReceipt, Payer, Payment, Quote,
    Receipt, RetrievedChunk, Weighting, ablation_weights, citation_weights,
};
use tributary_generator::{
    Answer, AnswerEvent, AnswerRequest, ChatMessage, CitationPolicy, GenerationParams, Generator, Source,
};
use tributary_indexer::{Address, Datanet, Visibility};
use tributary_retriever::{Mode, Passage, Query, Retriever, RetrieverConfig};

use crate::app::batch::LeasedHold;
use crate::app::{App, parse_address};

/// A retrieved passage as the generator sees it.
pub fn source_of(p: &Passage) -> Source {
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
pub struct Cancelled;

/// The answer was not done by its deadline (a server's request timeout).
#[derive(Debug, thiserror::Error)]
#[error("the answer took longer than its deadline")]
pub struct TimedOut;

/// What a server does with an answer nobody pays for (anonymous, or a key without an
/// address) when no sponsor budget covers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unpaid {
    /// Answer it for free: its receipt says it was unpaid and it credits no one.
    #[default]
    Free,
    /// Refuse it before any generation ([`PayerRequired`]).
    Refuse,
}

impl std::str::FromStr for Unpaid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "free" => Ok(Unpaid::Free),
            "refuse" => Ok(Unpaid::Refuse),
            other => Err(format!("free or refuse, not {other:?}")),
        }
    }
}

/// A question nobody pays for, on a server that refuses those.
#[derive(Debug, thiserror::Error)]
#[error("this server answers paid questions only: ask with an API key whose address has a balance")]
pub struct PayerRequired;

/// One question, where to look, how to generate and who pays.
pub struct Question<'a> {
    pub text: &'a str,
    pub datanets: &'a [String],
    pub contributors: &'a [String],
    pub k: usize,
    pub params: GenerationParams,
    pub adapters: Vec<(String, f32)>,
    /// Who pays: an API key's address, `ask --payer`; `None` for anonymous questions.
    pub payer: Option<Address>,
    pub unpaid: Unpaid,
    /// Who asks, as the query cache sees it: an API key's id, `anonymous`, or
    /// [`crate::app::search::CLI_SCOPE`].
    pub scope: &'a str,
    /// Earlier turns of a conversation, oldest first: they join the prompt, and the user's
    /// latest turns join the retrieval query (a follow-up question is searched in context).
    pub history: Vec<ChatMessage>,
}

/// User turns of a conversation that join its latest question in the retrieval query.
const CONTEXT_TURNS: usize = 2;

/// What a question is searched with: the user's last [`CONTEXT_TURNS`] turns before it, then the
/// question (a follow-up such as "how long is it?" finds the passages about what "it" was),
/// within the retriever's bound on a query's length (the question is always kept whole).
pub fn retrieval_query(question: &str, history: &[ChatMessage]) -> String {
    let earlier: Vec<&str> =
        history.iter().rev().filter(|m| m.role == "user").take(CONTEXT_TURNS).map(|m| m.content.as_str()).collect();
    let mut query = question.to_string();
    for turn in earlier {
        let with = format!("{turn}\n{query}");
        if with.chars().count() > tributary_retriever::MAX_QUERY_CHARS {
            break;
        }
        query = with;
    }
    query
}

/// Who pays for an answer, and the money set aside for it before generating.
#[derive(Debug)]
pub struct Funding {
    pub payment: Payment,
    pub hold: Option<LeasedHold>,
}

impl Funding {
    /// Gives the held money back (the answer failed, was refused or cancelled).
    pub async fn release(&self, app: &App) {
        if let Some(LeasedHold { hold, .. }) = &self.hold
            && let Err(e) = app.ledger().release(hold).await
        {
            // The hold expires on its own; the payer waits for it at worst.
            tracing::warn!(error = %e, hold = %hold.id, "releasing a hold failed");
        }
    }
}

/// A question checked, priced and funded: ready to generate.
pub struct Prepared {
    pub question: String,
    pub datanets: Vec<Datanet>,
    pub contributors: Vec<Address>,
    pub k: usize,
    pub params: GenerationParams,
    pub adapters: Vec<(String, f32)>,
    /// The price and weighting the ledger quoted before generating.
    pub quote: Quote,
    pub funding: Funding,
    /// Who asks, as the query cache sees it.
    pub scope: String,
    pub history: Vec<ChatMessage>,
}

/// An answer with what it was made from.
pub struct Answered {
    pub answer: Answer,
    pub passages: Vec<Passage>,
    pub datanets: Vec<Datanet>,
    pub adapters: Vec<(String, f32)>,
    pub quote: Quote,
    pub funding: Funding,
}

/// Datanet names once each, in the order first named.
pub fn distinct_names(names: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names.iter().filter(|n| seen.insert(n.as_str())).cloned().collect()
}

/// Adapters once each: a repeated adapter's weights add up (a mix is linear in them).
pub fn distinct_adapters(adapters: &[(String, f32)]) -> Vec<(String, f32)> {
    let mut out: Vec<(String, f32)> = Vec::new();
    for (id, weight) in adapters {
        match out.iter_mut().find(|(seen, _)| seen == id) {
            Some((_, total)) => *total += weight,
            None => out.push((id.clone(), *weight)),
        }
    }
    out
}

/// What an answer would cost and who would pay, without answering.
#[derive(Debug, Clone)]
pub struct Priced {
    pub quote: Quote,
    /// payer, sponsor, unpaid (free), or refused.
    pub billing: Billing,
    /// The paying account: a checksummed address or `sponsor:<datanet id>`.
    pub payer: Option<String>,
    /// What the payer has available now (a payer with less gets 402).
    pub available: Option<Amount>,
}

/// Who would pay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    Payer,
    Sponsor,
    Unpaid,
    Refused,
}

/// Checks the names, prices the question and sets its fee aside: from the payer's balance
/// (short: [`tributary_attribution::Error::InsufficientBalance`]); without a payer, from the
/// sponsor budget of the one Datanet asked when it covers the fee (questions naming adapters
/// are never sponsored: their surcharges would spend a Datanet owner's budget on adapter
/// owners); otherwise free and crediting no one, or refused ([`PayerRequired`]), as `unpaid` says.
pub async fn prepare(app: &App, question: Question<'_>) -> Result<Prepared> {
    let Question { text, datanets: names, contributors, k, params, adapters, payer, unpaid, scope, history } = question;
    tributary_retriever::check_bounds(text, names.len(), contributors.len())?;
    let names = distinct_names(names);
    let adapters = distinct_adapters(&adapters);
    if names.len() > MAX_DATANETS || adapters.len() > MAX_ADAPTERS {
        return Err(tributary_attribution::Error::InvalidArgument(format!(
            "a question names at most {MAX_DATANETS} Datanets and {MAX_ADAPTERS} adapters"
        ))
        .into());
    }
    let mut datanets = Vec::new();
    for name in &names {
        datanets.push(app.datanet(name).await?);
    }
    let contributors = contributors.iter().map(|c| parse_address(c)).collect::<Result<Vec<_>>>()?;
    let adapter_ids: Vec<String> = adapters.iter().map(|(id, _)| id.clone()).collect();
    let ledger = app.ledger();
    let quote = ledger.quote(&datanets, &adapter_ids).await?;
    let ids: Vec<i64> = datanets.iter().map(|d| d.id).collect();
    let funding = match (payer, sponsor_of(&ids, adapters.is_empty(), quote.fee)) {
        (Some(address), _) => {
            let payer = Payer::Address(address);
            let hold = app.batcher().hold(payer, quote.fee).await?;
            Funding { payment: Payment::Charge { payer, hold: Some(hold.hold.id.clone()) }, hold: Some(hold) }
        }
        (None, Some(sponsor)) => match app.batcher().hold(sponsor, quote.fee).await {
            Ok(hold) => Funding {
                payment: Payment::Charge { payer: sponsor, hold: Some(hold.hold.id.clone()) },
                hold: Some(hold),
            },
            Err(AttributionError::InsufficientBalance { .. } | AttributionError::Unconfigured(_)) => {
                unpaid_funding(unpaid)?
            }
            Err(e) => return Err(e.into()),
        },
        (None, None) => unpaid_funding(unpaid)?,
    };
    let scope = scope.to_string();
    Ok(Prepared {
        question: text.to_string(),
        datanets,
        contributors,
        k,
        params,
        adapters,
        quote,
        funding,
        scope,
        history,
    })
}

/// The sponsor budget that may pay for an unpaid question: that of the one Datanet asked
/// (`datanet_ids`, distinct), with no adapters and a fee to pay.
fn sponsor_of(datanet_ids: &[i64], no_adapters: bool, fee: Amount) -> Option<Payer> {
    match (datanet_ids, no_adapters, fee > 0) {
        ([id], true, true) => Some(Payer::Sponsor(*id)),
        _ => None,
    }
}

fn unpaid_funding(unpaid: Unpaid) -> Result<Funding> {
    match unpaid {
        Unpaid::Free => Ok(Funding { payment: Payment::Unpaid, hold: None }),
        Unpaid::Refuse => Err(PayerRequired.into()),
    }
}

/// The fee of a question over `datanets` with `adapters` and who would pay it, as
/// [`prepare`] would decide, without holding anything.
pub async fn price(
    app: &App,
    datanets: &[Datanet],
    adapters: &[String],
    payer: Option<Address>,
    unpaid: Unpaid,
) -> Result<Priced> {
    let ledger = app.ledger();
    let quote = ledger.quote(datanets, adapters).await?;
    let mut ids: Vec<i64> = datanets.iter().map(|d| d.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let sponsor = sponsor_of(&ids, adapters.is_empty(), quote.fee);
    let priced = |billing, payer: Option<&Payer>, available| Priced {
        quote: quote.clone(),
        billing,
        payer: payer.map(Payer::display),
        available,
    };
    if let Some(address) = payer {
        let payer = Payer::Address(address);
        let available = ledger.balance(&payer).await?.available();
        return Ok(priced(Billing::Payer, Some(&payer), Some(available)));
    }
    if let Some(sponsor) = sponsor {
        let available = ledger.balance(&sponsor).await?.available();
        if available >= quote.fee && ledger.policy().await?.check_payable().is_ok() {
            return Ok(priced(Billing::Sponsor, Some(&sponsor), Some(available)));
        }
    }
    let billing = match unpaid {
        Unpaid::Free => Billing::Unpaid,
        Unpaid::Refuse => Billing::Refused,
    };
    Ok(priced(billing, None, None))
}

/// Retrieves, generates and returns the checked answer; `on_sources` sees the passages offered
/// (numbered from 1 in order) before the model starts; `on_token` sees the stream and returns
/// false to stop it (the consumer went away): generation is cancelled and nothing is recorded.
/// Past `deadline` it is cancelled the same way ([`TimedOut`]). A failure, a cancellation or a
/// timeout releases the money held for it.
pub async fn generate(
    app: &App,
    generator: Arc<dyn Generator>,
    prepared: Prepared,
    deadline: Option<tokio::time::Instant>,
    on_sources: &mut (dyn FnMut(&[Passage]) + Send),
    on_token: &mut (dyn FnMut(&str) -> bool + Send),
) -> Result<Answered> {
    let Prepared { question, datanets, contributors, k, params, adapters, quote, funding, scope, history } = prepared;
    let outcome = async {
        let contributors = (!contributors.is_empty()).then_some(contributors.as_slice());
        let retriever =
            Retriever::new(app.store.clone(), app.query_embedder()?.scoped(&scope), RetrieverConfig::default());
        let searched = retrieval_query(&question, &history);
        let query = Query { text: &searched, datanets: &datanets, contributors, k, mode: Mode::Hybrid };
        let passages = retriever.search(&query).await?;
        on_sources(&passages);
        let request = AnswerRequest {
            question: question.clone(),
            sources: passages.iter().map(source_of).collect(),
            params,
            adapters: adapters.clone(),
            policy: CitationPolicy::default(),
            influence: quote.weighting == Weighting::Ablation,
            history,
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
                AnswerEvent::Done(answer) => return Ok((*answer, passages)),
            }
        }
        bail!("the answer stream ended without a result")
    };
    // Dropping the future at the deadline drops the stream, which cancels generation.
    let outcome = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, outcome).await.unwrap_or_else(|_| Err(TimedOut.into())),
        None => outcome.await,
    };
    match outcome {
        Ok((answer, passages)) => Ok(Answered { answer, passages, datanets, adapters, quote, funding }),
        Err(e) => {
            funding.release(app).await;
            Err(e)
        }
    }
}

/// [`prepare`], then [`generate`].
pub async fn answer(
    app: &App,
    generator: Arc<dyn Generator>,
    question: Question<'_>,
    on_token: &mut (dyn FnMut(&str) -> bool + Send),
) -> Result<Answered> {
    let prepared = prepare(app, question).await?;
    generate(app, generator, prepared, None, &mut |_| {}, on_token).await
}

/// The training data a paid answer of trained adapters credits. Nothing for an answer that
/// pays nothing, under a policy without a training share, or from a remote engine. A failure
/// to attribute is logged and the answer recorded without training credits (its share then
/// goes to the cited data, as for an adapter trained elsewhere): the payer's answer is not
/// lost for it.
async fn trained_chunks(app: &App, answered: &Answered, fee: Amount) -> Vec<tributary_attribution::TrainedChunk> {
    let paid = matches!(answered.funding.payment, Payment::Charge { .. });
    if !paid || fee == 0 || answered.adapters.is_empty() || answered.answer.prompt.is_empty() {
        return Vec::new();
    }
    let attributed = async {
        if app.ledger().policy().await?.shares.training_bps == 0 {
            return Ok(Vec::new());
        }
        let Some(credits) = app.training_credits()? else { return Ok(Vec::new()) };
        credits.attribute(app, &answered.adapters, &answered.answer.prompt, answered.answer.model_text()).await
    };
    match attributed.await {
        Ok(trained) => trained,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "training-data attribution failed; recorded without it");
            Vec::new()
        }
    }
}

/// Writes the answer's receipt and credits. The fee is the quote for the Datanets searched and
/// the adapters used; an answer that found no relevant passage (the model was not called) is
/// free. Weights: the measured log-likelihood drops under ablation weighting; otherwise, or
/// when they could not be measured (a remote engine) or are all zero, sentences citing a chunk
/// times its retrieval score. The receipt records the weighting actually used. A paid answer
/// of an adapter trained here also credits its most influential training data
/// ([`crate::app::training_credits`]).
pub async fn record(app: &App, question: &str, answered: &Answered, private_question: bool) -> Result<Receipt> {
    let Answered { answer, passages, datanets, adapters, quote, funding } = answered;
    let mut quote = quote.clone();
    if answer.sources_offered == 0 {
        quote.fee = 0;
    }
    let trained = trained_chunks(app, answered, quote.fee).await;
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
        trained,
        quote,
        payment: funding.payment.clone(),
    };
    match app.batcher().record(new).await {
        Ok(receipt) => Ok(receipt),
        Err(e) => {
            funding.release(app).await;
            Err(e.into())
        }
    }
}
