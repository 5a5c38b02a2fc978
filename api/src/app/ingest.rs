//! Ingest: documents into a Datanet, one writer per Datanet at a time.

use std::path::PathBuf;

use anyhow::Result;
use tributary_indexer::{Datanet, IngestOptions, IngestReport, Progress, SourceDocument};

use crate::app::App;

/// What to ingest: files and directories on this machine, or documents already read (an upload).
pub enum Documents {
    Paths(Vec<PathBuf>),
    Read(Vec<SourceDocument>),
}

/// Chunks, embeds and indexes `documents` into `datanet` under the Datanet's writer lock (the
/// ingest protocol's single writer). Everything is parsed before anything is written, so
/// nothing of a malformed upload is stored.
pub async fn ingest(
    app: &App,
    datanet: &Datanet,
    documents: Documents,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<IngestReport> {
    options.chunker.validate()?;
    let embedder = app.embedder()?;
    let lock = app.writer_lock(datanet.id);
    let _writing = lock.lock().await;
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
