//! Answering: retrieve, generate, cite, then record the receipt and its credits. `tributary
//! ask`, the demo, `/v1/answers` and `/v1/chat/completions` all answer through here.

use std::sync::Arc;

use anyhow::{Result, bail};
use tributary_attribution::{
    CitedChunk, NewReceipt, Quote, Receipt, RetrievedChunk, Weighting, ablation_weights, citation_weights,
};
use tributary_generator::{Answer, AnswerEvent, AnswerRequest, CitationPolicy, GenerationParams, Generator, Source};
use tributary_indexer::{Address, Datanet, Visibility};
use tributary_retriever::{Mode, Passage, Query, Retriever, RetrieverConfig};

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

/// One question, where to look and how to generate.
pub struct Question<'a> {
    pub text: &'a str,
    pub datanets: &'a [String],
    pub contributors: &'a [String],
    pub k: usize,
    pub params: GenerationParams,
    pub adapters: Vec<(String, f32)>,
}

/// An answer with what it was made from.
pub struct Answered {
    pub answer: Answer,
    pub passages: Vec<Passage>,
    pub datanets: Vec<Datanet>,
    pub adapters: Vec<(String, f32)>,
    /// The price and weighting the ledger quoted before generating.
    pub quote: Quote,
}

/// Retrieves, generates and returns the checked answer; `on_token` sees the stream and returns
/// false to stop it (the consumer went away): generation is cancelled and nothing is recorded.
pub async fn answer(
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
    let contributors = contributors.iter().map(|c| parse_address(c)).collect::<Result<Vec<_>>>()?;
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
pub async fn record(app: &App, question: &str, answered: &Answered, private_question: bool) -> Result<Receipt> {
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
