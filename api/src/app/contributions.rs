//! Contributions: uploads into a Datanet, indexed at once or held for its owners' review
//! (`tributary_indexer::contributions` holds the records and the state machine).
//!
//! A held upload is parsed before it is stored (a malformed one is refused, as it would be
//! without review), then kept as submitted: nothing of it is chunked, indexed, retrievable or
//! creditable until an owner or a member accepts it. Accepting indexes it as the contributor's
//! upload would have been; rejecting drops it and keeps the reason for the contributor.

use anyhow::{Context, Result};
use tributary_indexer::{
    Address, ChunkerConfig, Contribution, ContributionStatus, Datanet, IngestOptions, IngestReport, NewContribution,
    NoProgress, SourceDocument,
};

use crate::app::App;
use crate::app::ingest::{Documents, index};

/// One document of an upload, as submitted.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Submitted {
    pub name: String,
    pub text: String,
}

/// An upload: who contributes what, under which license, cut how.
#[derive(Debug, Clone)]
pub struct Submission {
    pub contributor: Address,
    pub upload: Upload,
}

/// What an upload holds, as a pending contribution keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Upload {
    /// The upload's content hash (what a signed upload signs).
    pub content_hash: String,
    pub documents: Vec<Submitted>,
    pub license: String,
    pub chunk_tokens: usize,
    pub overlap_tokens: usize,
}

impl std::ops::Deref for Submission {
    type Target = Upload;

    fn deref(&self) -> &Upload {
        &self.upload
    }
}

impl Submission {
    fn options(&self) -> IngestOptions {
        let mut options = IngestOptions::new(self.contributor);
        options.license = self.license.clone();
        options.chunker = ChunkerConfig { target_tokens: self.chunk_tokens, overlap_tokens: self.overlap_tokens };
        options
    }

    /// The documents parsed as their names say (off the async workers): an error for a
    /// malformed or unsupported one.
    async fn parse(&self) -> Result<Vec<SourceDocument>> {
        let documents = self.documents.clone();
        let sources = tokio::task::spawn_blocking(move || {
            let mut sources = Vec::new();
            for d in documents {
                sources.extend(tributary_indexer::read_upload(&d.name, d.text.into_bytes())?);
            }
            Ok::<_, tributary_indexer::Error>(sources)
        })
        .await??;
        Ok(sources)
    }

    fn record<'a>(&'a self, datanet: &Datanet, names: &'a [String]) -> NewContribution<'a> {
        NewContribution {
            datanet_id: datanet.id,
            contributor: self.contributor,
            content_hash: &self.content_hash,
            names,
            bytes: self.documents.iter().map(|d| d.text.len() as u64).sum(),
        }
    }
}

/// Whether an upload to `datanet` by `contributor` waits for review: the Datanet asks for it,
/// and the upload is neither the owner's nor an admin's.
pub fn needs_review(datanet: &Datanet, contributor: &Address, by_admin: bool) -> bool {
    datanet.review && !by_admin && *contributor != datanet.owner
}

/// What became of an upload.
pub enum Outcome {
    /// Indexed now.
    Indexed(Contribution, IngestReport),
    /// Held for review.
    Pending(Contribution),
}

/// Parses the upload, then indexes it (recording an accepted contribution) or, when `review`,
/// holds it as a pending one.
pub async fn submit(app: &App, datanet: &Datanet, submission: &Submission, review: bool) -> Result<Outcome> {
    submission.options().chunker.validate()?;
    let sources = submission.parse().await?;
    let names: Vec<String> = submission.documents.iter().map(|d| d.name.clone()).collect();
    let catalog = app.store.catalog();
    if review {
        let payload = serde_json::to_string(&submission.upload)?;
        let held = catalog.add_pending_contribution(&submission.record(datanet, &names), &payload).await?;
        return Ok(Outcome::Pending(held));
    }
    let report = index(app, datanet, Documents::Read(sources), &submission.options(), &NoProgress).await?;
    let record = submission.record(datanet, &names);
    let accepted = catalog.add_accepted_contribution(&record, &serde_json::to_string(&report)?).await?;
    Ok(Outcome::Indexed(accepted, report))
}

/// Accepts a pending contribution, once, and indexes it for its contributor.
pub async fn accept(app: &App, datanet: &Datanet, id: i64, decided_by: &str) -> Result<(Contribution, IngestReport)> {
    let accepting = app.store.catalog().start_accepting(datanet.id, id, decided_by).await?;
    index_accepted(app, datanet, accepting).await
}

/// Rejects a pending contribution, once, with the reason its contributor will see.
pub async fn reject(app: &App, datanet: &Datanet, id: i64, decided_by: &str, reason: &str) -> Result<Contribution> {
    Ok(app.store.catalog().reject_contribution(datanet.id, id, decided_by, reason).await?)
}

async fn index_accepted(app: &App, datanet: &Datanet, accepting: Contribution) -> Result<(Contribution, IngestReport)> {
    let catalog = app.store.catalog();
    let payload = catalog
        .contribution_payload(accepting.id)
        .await?
        .with_context(|| format!("contribution {} was accepted without its documents", accepting.id))?;
    let upload: Upload = serde_json::from_str(&payload).context("a stored contribution")?;
    let submission = Submission { contributor: accepting.contributor, upload };
    let sources = submission.parse().await?;
    let report = index(app, datanet, Documents::Read(sources), &submission.options(), &NoProgress).await?;
    let report_json = serde_json::to_string(&report)?;
    catalog.finish_accepting(accepting.id, &report_json).await?;
    let accepted = Contribution { status: ContributionStatus::Accepted, report: Some(report_json), ..accepting };
    Ok((accepted, report))
}

/// Finishes the contributions a crash left accepted but not indexed (indexing again is
/// idempotent: documents already stored are not stored twice). Returns how many.
pub async fn resume(app: &App) -> Result<usize> {
    let catalog = app.store.catalog();
    let accepting = catalog.accepting().await?;
    let count = accepting.len();
    if count == 0 {
        return Ok(0);
    }
    let datanets = catalog.datanets().await?;
    for contribution in accepting {
        let datanet = datanets
            .iter()
            .find(|d| d.id == contribution.datanet_id)
            .with_context(|| format!("contribution {} names no Datanet", contribution.id))?;
        tracing::info!(id = contribution.id, datanet = %datanet.name, "indexing an accepted contribution a stop interrupted");
        index_accepted(app, datanet, contribution).await?;
    }
    Ok(count)
}
