//! A task attempt's log: its output lines in `.fhirflow/runs/<run>/<pipeline>/<task>.<attempt>.log`,
//! each also passed on to the progress display, prefixed by the task's label there.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::mpsc;

/// One line of a task's output on its way to the display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    /// The task's label, such as `load` or `pipeline.load`.
    pub label: Arc<str>,
    /// The line, without its newline.
    pub text: String,
}

/// A callback on each line written to a log.
type LineObserver = Box<dyn FnMut(&str) + Send + Sync>;

/// Where an attempt's output goes: its log file, and the display.
pub struct TaskLog {
    file: Option<std::fs::File>,
    path: PathBuf,
    label: Arc<str>,
    echo: Option<mpsc::UnboundedSender<OutputLine>>,
    /// Sees every line as it is written: a watched dbt build reads its events here.
    observer: Option<LineObserver>,
}

/// The log file of attempt `attempt` of `task` in `pipeline`, under the run's folder.
pub fn log_path(run_dir: &Path, pipeline: &str, task: &str, attempt: u32) -> PathBuf {
    run_dir.join(pipeline).join(format!("{task}.{attempt}.log"))
}

impl TaskLog {
    /// Creates the log file at `path` (and its folder). A log that cannot be created is
    /// reported on the display, and the task runs on: its output is still shown.
    pub fn create(path: PathBuf, label: Arc<str>, echo: Option<mpsc::UnboundedSender<OutputLine>>) -> Self {
        let file = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::File::create(&path));
        let mut log = Self { file: None, path, label, echo, observer: None };
        match file {
            Ok(file) => log.file = Some(file),
            Err(e) => log.note(&format!("cannot write the log {}: {e}", log.path.display())),
        }
        log
    }

    /// A log that only shows lines, for tests and for tasks that write no file.
    pub fn display_only(label: Arc<str>, echo: Option<mpsc::UnboundedSender<OutputLine>>) -> Self {
        Self { file: None, path: PathBuf::new(), label, echo, observer: None }
    }

    /// The same log, with `observer` called on every line written to it.
    pub fn observed_by(mut self, observer: impl FnMut(&str) + Send + Sync + 'static) -> Self {
        self.observer = Some(Box::new(observer));
        self
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A line of the task's own output.
    pub fn line(&mut self, text: &str) {
        if let Some(observer) = &mut self.observer {
            observer(text);
        }
        if let Some(file) = &mut self.file {
            // One write per line: the OS keeps it even if fhirflow is killed a moment later.
            let mut bytes = Vec::with_capacity(text.len() + 1);
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(b'\n');
            if file.write_all(&bytes).is_err() {
                self.file = None;
            }
        }
        if let Some(echo) = &self.echo {
            let _ = echo.send(OutputLine { label: Arc::clone(&self.label), text: text.to_owned() });
        }
    }

    /// A line from fhirflow about the task, marked as such.
    pub fn note(&mut self, text: &str) {
        self.line(&format!("[fhirflow] {text}"));
    }
}
