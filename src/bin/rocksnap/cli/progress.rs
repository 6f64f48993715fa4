//! Progress on a terminal for long transfers; nothing when stderr is not one.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use rocksnap::PipelineStats;
use rocksnap::TransferProgress;

/// A progress line fed from counters the transfer updates.
pub struct Progress {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Bytes stored by the snapshot pipeline, out of the total it sends
    /// once the export knows it (a spinner until then).
    pub fn upload(stats: Arc<PipelineStats>, what: String) -> Self {
        Self::start(what, move || {
            let done = stats.bytes_uploaded();
            // A file sent again after a failure counts twice.
            (done, stats.bytes_planned().max(done))
        })
    }

    /// Bytes downloaded out of the snapshot's total, with rate and time left.
    pub fn download(progress: Arc<TransferProgress>, what: String) -> Self {
        Self::start(what, move || (progress.bytes(), progress.total()))
    }

    fn start(what: String, read: impl Fn() -> (u64, u64) + Send + 'static) -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let spinner =
            ProgressStyle::with_template("{spinner} {msg}: {bytes} ({bytes_per_sec}, {elapsed})")
                .expect("valid template");
        let gauge = ProgressStyle::with_template(
            "{msg}: [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        )
        .expect("valid template")
        .progress_chars("=> ");
        bar.set_style(spinner);
        bar.set_message(what);
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut has_total = false;
            loop {
                let (done, total) = read();
                if total > 0 && !has_total {
                    b.set_style(gauge.clone());
                    has_total = true;
                }
                if has_total {
                    b.set_length(total);
                }
                b.set_position(done);
                b.tick();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Progress { bar, ticker }
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// The ticker belongs to the bar: it stops with it, however it ends.
impl Drop for Progress {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}
