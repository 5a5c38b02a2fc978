//! Ingest: documents into a Datanet, one writer per Datanet at a time.

use std::path::PathBuf;

use anyhow::Result;
use tributary_indexer::{Datanet, IngestOptions, IngestReport, NewContribution, Progress, SourceDocument};

use crate::app::App;

/// What to ingest: files and directories on this machine, or documents already read (an upload).
pub enum Documents {
    Paths(Vec<PathBuf>),
    Read(Vec<SourceDocument>),
}

/// Chunks, embeds and indexes `documents` into `datanet` under the Datanet's writer lock (the
/// ingest protocol's single writer), then records the upload as an accepted contribution of
/// `options.contributor` (the operator's own ingest is never held for review). Everything is
/// parsed before anything is written, so nothing of a malformed upload is stored.
pub async fn ingest(
    app: &App,
    datanet: &Datanet,
    documents: Documents,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    let (names, bytes): (Vec<String>, u64) = match &documents {
        Documents::Paths(paths) => {
            (paths.iter().map(|p| p.display().to_string()).collect(), paths.iter().map(|p| size_of(p)).sum())
        }
        Documents::Read(sources) => {
            (sources.iter().map(|s| s.external_id.clone()).collect(), sources.iter().map(|s| s.text.len() as u64).sum())
        }
    };
    let report = index(app, datanet, documents, options, progress).await?;
    let new = NewContribution {
        datanet_id: datanet.id,
        contributor: options.contributor,
        content_hash: "",
        names: &names,
        bytes,
    };
    app.store.catalog().add_accepted_contribution(&new, &serde_json::to_string(&report)?).await?;
    Ok(report)
}

/// [`ingest`] without recording a contribution (the caller records its own).
pub(crate) async fn index(
    app: &App,
    datanet: &Datanet,
    documents: Documents,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    options.chunker.validate()?;
    let embedder = app.embedder()?;
    let _writing = app.writing(datanet.id).await?;
    let report = match documents {
        Documents::Paths(paths) => {
            tributary_indexer::ingest(&app.store, embedder, datanet, &paths, options, progress).await?
        }
        Documents::Read(sources) => {
            tributary_indexer::ingest_documents(&app.store, embedder, datanet, sources, options, progress).await?
        }
    };
    Ok(report)
}

/// Bytes under a path (a file, or a directory's files; links to files count, links to
/// directories do not, so a cycle cannot loop), as far as they can be read.
fn size_of(path: &std::path::Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            std::fs::read_dir(path).map(|entries| entries.flatten().map(|e| size_of(&e.path())).sum()).unwrap_or(0)
        }
        Ok(meta) if meta.is_symlink() => std::fs::metadata(path).ok().filter(|m| m.is_file()).map_or(0, |m| m.len()),
        Ok(meta) => meta.len(),
        Err(_) => 0,
    }
}
