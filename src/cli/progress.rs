//! Progress on a terminal for long transfers; nothing when stderr is not one.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::flow::PipelineStats;

/// A spinner with bytes stored and rate, fed from the pipeline's counters.
pub struct UploadProgress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl UploadProgress {
    pub fn start(stats: Arc<PipelineStats>, what: String) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {msg}: {bytes} stored ({bytes_per_sec}, {elapsed})",
            )
            .expect("valid template"),
        );
        bar.set_message(what);
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                b.set_position(stats.bytes_uploaded());
                b.tick();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        UploadProgress { bar, ticker }
    }

    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
