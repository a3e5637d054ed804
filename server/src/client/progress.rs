//! How a batch's progress is shown while `prism batches create --wait` watches it: a live bar
//! when the output is a terminal, plain lines (one per change) otherwise; and the rate and ETA
//! both show, computed from the counts seen since the watch began.

use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Batch;

/// Lines per second and time left, from `done` lines now against `done_at_start` when watching
/// began `elapsed` ago. No rate before the first line finishes under watch; no ETA without a
/// rate or a total.
pub fn rate_and_eta(
    done_at_start: u64,
    done: u64,
    total: u64,
    elapsed: Duration,
) -> (Option<f64>, Option<Duration>) {
    let seconds = elapsed.as_secs_f64();
    let finished = done.saturating_sub(done_at_start);
    if finished == 0 || seconds <= 0.0 {
        return (None, None);
    }
    let rate = finished as f64 / seconds;
    let left = total.saturating_sub(done);
    let eta = (total > 0).then(|| Duration::from_secs_f64(left as f64 / rate));
    (Some(rate), eta)
}

/// One line describing where the batch is: `in_progress: 1200 of 2000 (1190 completed, 10
/// failed), 350 lines/s, ETA 3s`.
pub fn describe(batch: &Batch, rate: Option<f64>, eta: Option<Duration>) -> String {
    let counts = &batch.request_counts;
    let mut line = format!(
        "{}: {} of {} ({} completed, {} failed)",
        batch.status,
        counts.done(),
        counts.total,
        counts.completed,
        counts.failed
    );
    if let Some(rate) = rate {
        line.push_str(&format!(", {rate:.0} lines/s"));
    }
    if let Some(eta) = eta.filter(|_| !batch.is_finished()) {
        line.push_str(&format!(", ETA {}", short_duration(eta)));
    }
    line
}

fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Where progress goes: a bar on a terminal, lines to a writer otherwise.
pub struct Progress {
    mode: Mode,
    started: Instant,
    done_at_start: Option<u64>,
    last_line: Option<String>,
}

enum Mode {
    Bar(Option<ProgressBar>),
    Lines(Box<dyn Write + Send>),
}

impl Progress {
    /// A live bar drawn on stdout.
    pub fn bar() -> Self {
        Self::with(Mode::Bar(None))
    }

    /// A line on `out` each time the status or the counts change.
    pub fn lines(out: Box<dyn Write + Send>) -> Self {
        Self::with(Mode::Lines(out))
    }

    fn with(mode: Mode) -> Self {
        Self {
            mode,
            started: Instant::now(),
            done_at_start: None,
            last_line: None,
        }
    }

    /// Shows `batch` as it is now.
    pub fn update(&mut self, batch: &Batch) {
        let counts = &batch.request_counts;
        let done_at_start = *self.done_at_start.get_or_insert(counts.done());
        let (rate, eta) = rate_and_eta(
            done_at_start,
            counts.done(),
            counts.total,
            self.started.elapsed(),
        );
        let line = describe(batch, rate, eta);
        match &mut self.mode {
            Mode::Bar(bar) => {
                let bar = bar.get_or_insert_with(new_bar);
                bar.set_length(counts.total.max(1));
                bar.set_position(counts.done());
                bar.set_message(line);
            }
            Mode::Lines(out) => {
                // A line when the batch changed, not when only the rate did.
                let key = describe(batch, None, None);
                if self.last_line.as_ref() != Some(&key) {
                    // Progress is best effort: a closed output must not stop the watch.
                    let _ = writeln!(out, "{} {line}", batch.id);
                    let _ = out.flush();
                    self.last_line = Some(key);
                }
            }
        }
    }

    /// A line of its own above the progress (where the bar's lines go otherwise).
    pub fn note(&mut self, text: &str) {
        match &mut self.mode {
            Mode::Bar(Some(bar)) => bar.println(text),
            Mode::Bar(None) => println!("{text}"),
            Mode::Lines(out) => {
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        }
    }

    /// Leaves the last state on screen and stops drawing.
    pub fn finish(&mut self) {
        if let Mode::Bar(bar) = &mut self.mode
            && let Some(bar) = bar.take()
        {
            bar.finish();
            // indicatif leaves the cursor at the end of the bar's line.
            println!();
        }
    }

    /// Clears the bar (for a prompt); the next update draws a new one.
    pub fn clear(&mut self) {
        if let Mode::Bar(bar) = &mut self.mode
            && let Some(bar) = bar.take()
        {
            bar.finish_and_clear();
        }
    }
}

/// The bar alone, without the batch id (announced above it), so it fits one 100-column line.
fn new_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(1), ProgressDrawTarget::stdout());
    if let Ok(style) = ProgressStyle::with_template("[{bar:30}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// An upload's bytes as its parts are accepted: a bar on stderr when stderr is a terminal, a
/// line per part otherwise (stdout is kept for the file id).
pub struct UploadDisplay {
    bar: Option<ProgressBar>,
    counts: std::sync::Mutex<(u64, u64)>,
}

impl UploadDisplay {
    pub fn for_stderr() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            counts: std::sync::Mutex::new((0, 0)),
        }
    }

    pub fn report(&self, progress: super::uploads::UploadProgress) {
        use super::uploads::UploadProgress;
        let Ok(mut counts) = self.counts.lock() else {
            return;
        };
        match progress {
            UploadProgress::Started { bytes } => counts.1 = bytes,
            UploadProgress::Sent { bytes } => counts.0 += bytes,
        }
        let (sent, total) = *counts;
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(sent);
            }
            None if matches!(progress, UploadProgress::Sent { .. }) => {
                // Best effort: a closed stderr must not stop the upload.
                let percent = (sent * 100).checked_div(total).unwrap_or(100);
                let _ = writeln!(
                    std::io::stderr(),
                    "uploaded {} of {} ({percent}%)",
                    indicatif::BinaryBytes(sent),
                    indicatif::BinaryBytes(total)
                );
            }
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::RequestCounts;

    fn batch(status: &str, completed: u64, failed: u64, total: u64) -> Batch {
        serde_json::from_value(serde_json::json!({
            "id": "batch_1", "status": status, "input_file_id": "file-1", "created_at": 0,
            "request_counts": RequestCounts { total, completed, failed },
        }))
        .unwrap()
    }

    #[test]
    fn rate_counts_only_lines_finished_under_watch() {
        let (rate, eta) = rate_and_eta(500, 700, 2000, Duration::from_secs(2));
        assert_eq!(rate, Some(100.0));
        assert_eq!(eta, Some(Duration::from_secs(13)));
    }

    #[test]
    fn no_rate_or_eta_before_a_line_finishes() {
        assert_eq!(
            rate_and_eta(10, 10, 2000, Duration::from_secs(5)),
            (None, None)
        );
        assert_eq!(rate_and_eta(0, 0, 0, Duration::ZERO), (None, None));
    }

    #[test]
    fn describe_names_completed_and_failed_of_total_with_rate_and_eta() {
        let line = describe(
            &batch("in_progress", 1190, 10, 2000),
            Some(350.4),
            Some(Duration::from_secs(95)),
        );
        assert_eq!(
            line,
            "in_progress: 1200 of 2000 (1190 completed, 10 failed), 350 lines/s, ETA 1m35s"
        );
    }

    #[test]
    fn a_finished_batch_shows_no_eta() {
        let line = describe(
            &batch("completed", 2000, 0, 2000),
            Some(10.0),
            Some(Duration::ZERO),
        );
        assert_eq!(
            line,
            "completed: 2000 of 2000 (2000 completed, 0 failed), 10 lines/s"
        );
    }

    #[test]
    fn plain_lines_are_written_only_when_the_batch_changes() {
        let out = SharedBuffer::default();
        let mut progress = Progress::lines(Box::new(out.clone()));
        progress.update(&batch("validating", 0, 0, 0));
        progress.update(&batch("validating", 0, 0, 0));
        progress.update(&batch("in_progress", 5, 1, 10));
        progress.update(&batch("in_progress", 5, 1, 10));
        let text = out.text();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("batch_1 in_progress: 6 of 10 (5 completed, 1 failed)"));
    }

    #[derive(Clone, Default)]
    struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl SharedBuffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for SharedBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
