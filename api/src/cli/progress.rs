//! The ingest progress bar.

use indicatif::{ProgressBar, ProgressStyle};

pub struct Bar(ProgressBar);

impl Bar {
    pub fn new() -> Self {
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} chunks  {per_sec}  ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar(bar)
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl tributary_indexer::Progress for Bar {
    fn start(&self, total_chunks: u64) {
        self.0.set_length(total_chunks);
        self.0.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }

    fn advance(&self, chunks: u64) {
        self.0.inc(chunks);
    }
}
