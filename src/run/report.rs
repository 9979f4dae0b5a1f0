//! What a run shows: progress while it goes on, the summary at the end, the dry-run listing
//! and `fhirflow runs`.
//!
//! On a terminal the progress is one status line (done/total, elapsed, running tasks) redrawn
//! in place under the tasks' output; anywhere else it is one plain line per event, so logs of
//! CI jobs read well.

use super::dbt_results::DbtRunResults;
use super::process::show;
use super::selection::RunPlan;
use super::store::RunRecord;
use super::task_log::OutputLine;
use super::{DisplayMode, RunState, TaskKey, TaskState};
use crate::graph::{DbtArg, Operation, TriggerRule};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Output formats of `fhirflow run` and `fhirflow runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunFormat {
    /// A table for people.
    Text,
    /// JSON with a `format_version`; the progress goes to stderr.
    Json,
}

/// How one task of a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskSummary {
    /// Pipeline and task id.
    #[serde(flatten)]
    pub key: TaskKey,
    /// Its final state.
    pub state: TaskState,
    /// Attempts made, over every resume of the run.
    pub attempts: u32,
    /// From its first attempt's start to its last attempt's end, in this invocation.
    #[serde(serialize_with = "millis")]
    pub duration: Duration,
    /// Why it failed or did not run.
    pub failure: Option<String>,
    /// The last attempt's log file.
    pub log: Option<PathBuf>,
    /// For a dbt task, its run results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dbt: Option<DbtRunResults>,
}

fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// The outcome of `fhirflow run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    /// The run id.
    pub run_id: String,
    /// How it ended.
    pub state: RunState,
    /// The run's logical date.
    pub logical_date: DateTime<Utc>,
    /// Wall time of this invocation.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// Every task, in run order.
    pub tasks: Vec<TaskSummary>,
    /// Whether a load stopped at an existing table whose columns are not the spec's, so that
    /// the exit status says so.
    pub table_mismatch: bool,
}

impl RunReport {
    /// Tasks in `state`.
    pub fn count(&self, state: TaskState) -> usize {
        self.tasks.iter().filter(|t| t.state == state).count()
    }

    /// The summary table and the failures, each named with its reason and log.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let width = self.tasks.iter().map(|t| t.key.to_string().len()).max().unwrap_or(4).max(4);
        let _ = writeln!(out, "{:<width$}  {:<15}  {:>8}  {:>9}", "TASK", "STATE", "ATTEMPTS", "DURATION");
        for t in &self.tasks {
            let _ = writeln!(
                out,
                "{:<width$}  {:<15}  {:>8}  {:>9}",
                t.key.to_string(),
                t.state.as_str(),
                t.attempts,
                if t.attempts == 0 { "-".to_owned() } else { show(t.duration) }
            );
        }
        let failed: Vec<&TaskSummary> =
            self.tasks.iter().filter(|t| matches!(t.state, TaskState::Failed | TaskState::Cancelled)).collect();
        if !failed.is_empty() {
            let _ = writeln!(out, "\nFailures:");
            for t in failed {
                let _ = write!(out, "  {}: {}", t.key, t.failure.as_deref().unwrap_or(t.state.as_str()));
                if let Some(log) = &t.log {
                    let _ = write!(out, " (log: {})", log.display());
                }
                out.push('\n');
            }
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &self.tasks {
            *counts.entry(t.state.as_str()).or_default() += 1;
        }
        let mut counts: Vec<String> = counts.iter().map(|(state, n)| format!("{n} {state}")).collect();
        if counts.is_empty() {
            counts.push("no task ran".to_owned());
        }
        let _ = writeln!(
            out,
            "\nRun {} {} in {}: {}.",
            self.run_id,
            match self.state {
                RunState::Success => "succeeded",
                RunState::Failed => "failed",
                RunState::Cancelled => "was cancelled",
                RunState::Running | RunState::Interrupted => "stopped",
            },
            show(self.duration),
            counts.join(", ")
        );
        out
    }

    /// The report as JSON, with a `format_version`.
    pub fn to_json(&self) -> String {
        let mut value = serde_json::json!({ "format_version": "1.0" });
        if let (Some(map), Ok(serde_json::Value::Object(report))) = (value.as_object_mut(), serde_json::to_value(self))
        {
            map.extend(report);
        }
        format!("{}\n", serde_json::to_string_pretty(&value).unwrap_or_default())
    }
}

/// The `fhirflow run --dry-run` listing: the order and each command, nothing run. Paths are
/// shown as the spec writes them, relative to its folder, so the text is the same everywhere.
pub fn dry_run_text(plan: &RunPlan) -> String {
    let mut out = String::new();
    let pipelines = plan.pipelines.len();
    let _ = writeln!(
        out,
        "Dry run: {} task{} in {pipelines} pipeline{}; nothing is run.",
        plan.tasks.len(),
        if plan.tasks.len() == 1 { "" } else { "s" },
        if pipelines == 1 { "" } else { "s" },
    );
    let _ = writeln!(
        out,
        "Paths are relative to the spec's folder; {{{{ ... }}}} templates are rendered when a task runs.\n"
    );
    for (n, t) in plan.tasks.iter().enumerate() {
        let s = &t.task.settings;
        let mut facts = vec![kind_name(&t.task.operation).to_owned()];
        if s.retries.value > 0 {
            let backoff = if s.retry_exponential_backoff.value { ", doubling" } else { "" };
            facts.push(format!("retries {} every {}{backoff}", s.retries.value, s.retry_delay.value));
        }
        if let Some(timeout) = s.execution_timeout.value {
            facts.push(format!("timeout {timeout}"));
        }
        if t.task.trigger_rule == TriggerRule::AllDone {
            facts.push("runs when upstream is done, whatever its state".to_owned());
        }
        let _ = write!(out, "{:>3}. {} [{}]", n + 1, t.label, facts.join("; "));
        let after: Vec<&str> = t.upstream.iter().chain(&t.awaits).map(|&u| &*plan.tasks[u].label).collect();
        if !after.is_empty() {
            let _ = write!(out, " after {}", after.join(", "));
        }
        out.push('\n');
        let pipeline = &plan.pipelines[t.pipeline];
        let detail = match &t.task.operation {
            Operation::Dbt(inv) => {
                let (project, profiles) = match &pipeline.spec.dbt {
                    Some(d) => (d.project_dir.0.clone(), d.profiles_dir.as_ref().unwrap_or(&d.project_dir).0.clone()),
                    None => (".".to_owned(), ".".to_owned()),
                };
                let words: Vec<String> = std::iter::once(inv.executable.clone())
                    .chain(inv.args.iter().map(|a| match a {
                        DbtArg::Literal(s) | DbtArg::Vars(s) => s.clone(),
                        DbtArg::ProjectDir => project.clone(),
                        DbtArg::ProfilesDir => profiles.clone(),
                        DbtArg::StateDir => "<state>".to_owned(),
                    }))
                    .map(|w| shell_word(&w))
                    .collect();
                format!("$ {}   (in {project})", words.join(" "))
            }
            Operation::DbtResults { dbt_task } => format!("logs the counts of {dbt_task}'s target/run_results.json"),
            Operation::Join => "nothing: waits for the stage's tasks".to_owned(),
            Operation::Sensor(target) => {
                let what = match &target.task {
                    Some(task) => format!("{}.{task}", target.pipeline),
                    None => format!("the whole run of {}", target.pipeline),
                };
                if t.awaits.is_empty() {
                    format!(
                        "waits for {what} at this logical date minus {}, in the run store (every {}, up to {})",
                        target.execution_delta, target.poke_interval, target.timeout
                    )
                } else {
                    format!("waits for {what} in this run")
                }
            }
            Operation::Trigger(target) => {
                let wait = if target.wait_for_completion { "; the stages after it wait for that run" } else { "" };
                format!("starts {} in this run{wait}", target.pipeline)
            }
            Operation::Kind(kind) => kind.describe(),
            Operation::Load { step, plan: load } => {
                use crate::graph::{LoadSource, LoadTarget};
                let from = match &load.source {
                    LoadSource::S3 { bucket, .. } => format!("s3://{bucket}/{}", load.prefix),
                    LoadSource::Local { path, .. } => format!("folder {path}"),
                };
                let into = match &load.target {
                    LoadTarget::Snowflake { .. } => format!("Snowflake {}", load.table),
                    LoadTarget::DuckDb { path, .. } => format!("{} in DuckDB {path}", load.table),
                };
                format!("{} of load {}: {from} → {into}", step.task_name(), load.stage)
            }
        };
        let _ = writeln!(out, "     {detail}");
    }
    out
}

/// The kind of task, as the spec names stage kinds.
fn kind_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Dbt(_) => "dbt",
        Operation::DbtResults { .. } => "dbt results",
        Operation::Join => "join",
        Operation::Sensor(_) => "sensor",
        Operation::Trigger(_) => "trigger",
        Operation::Load { .. } => "copy_into",
        Operation::Kind(kind) => kind.kind(),
    }
}

/// `word`, single-quoted for a POSIX shell when it needs to be.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@%".contains(c));
    if plain { word.to_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// The `fhirflow runs` table, newest first.
pub fn runs_text(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "No runs yet.\n".to_owned();
    }
    let rows: Vec<[String; 7]> = runs
        .iter()
        .map(|r| {
            let duration = r.ended_at.map(|end| show((end - r.started_at).to_std().unwrap_or_default()));
            [
                r.id.clone(),
                r.state.as_str().to_owned(),
                r.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                duration.unwrap_or_else(|| "-".to_owned()),
                format!("{}/{}", r.tasks_succeeded, r.tasks_total),
                r.logical_date.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                r.pipelines.iter().map(|p| p.pipeline.as_str()).collect::<Vec<_>>().join(","),
            ]
        })
        .collect();
    let header = ["RUN", "STATE", "STARTED (UTC)", "DURATION", "TASKS OK", "LOGICAL DATE", "PIPELINES"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

/// `fhirflow runs --format json`.
pub fn runs_json(runs: &[RunRecord]) -> String {
    let value = serde_json::json!({ "format_version": "1.0", "runs": runs });
    format!("{}\n", serde_json::to_string_pretty(&value).unwrap_or_default())
}

/// The live display of a run.
pub struct Progress {
    out: Box<dyn Write + Send>,
    mode: DisplayMode,
    echo: bool,
    total: usize,
    done: usize,
    running: BTreeMap<usize, String>,
    started: Instant,
    /// Whether the status line is on screen (and must be cleared before other output).
    status_shown: bool,
}

impl Progress {
    /// A display of `total` tasks on `out`.
    pub fn new(out: Box<dyn Write + Send>, mode: DisplayMode, echo: bool, total: usize) -> Self {
        Self { out, mode, echo, total, done: 0, running: BTreeMap::new(), started: Instant::now(), status_shown: false }
    }

    /// Writes a line above the status line.
    fn line(&mut self, text: &str) {
        if self.mode == DisplayMode::Silent {
            return;
        }
        self.clear_status();
        let _ = writeln!(self.out, "{text}");
        self.redraw();
    }

    fn clear_status(&mut self) {
        if self.status_shown {
            let _ = write!(self.out, "\r\x1b[2K");
            self.status_shown = false;
        }
    }

    /// Redraws the status line (a terminal only).
    pub fn redraw(&mut self) {
        if self.mode != DisplayMode::Redraw {
            let _ = self.out.flush();
            return;
        }
        self.clear_status();
        let running: Vec<&str> = self.running.values().map(String::as_str).collect();
        let mut status = format!(
            "[{}/{} done, {}] running: {}",
            self.done,
            self.total,
            show(Duration::from_secs(self.started.elapsed().as_secs())),
            if running.is_empty() { "-".to_owned() } else { running.join(", ") }
        );
        let width = terminal_width().saturating_sub(1).max(20);
        if status.chars().count() > width {
            status = status.chars().take(width - 1).collect::<String>() + "…";
        }
        let _ = write!(self.out, "{status}");
        let _ = self.out.flush();
        self.status_shown = true;
    }

    /// Sets how many tasks the run has.
    pub fn set_total(&mut self, total: usize) {
        self.total = total;
    }

    /// A message from fhirflow about the run as a whole.
    pub fn note(&mut self, text: &str) {
        self.line(text);
    }

    /// Task `index` started an attempt.
    pub fn started(&mut self, index: usize, label: &str, attempt: u32) {
        self.running.insert(index, label.to_owned());
        let attempt = if attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
        let text = format!("[{}/{}] start   {label}{attempt}", self.done, self.total);
        self.event(&text);
    }

    /// Task `index` will run again after `delay`.
    pub fn retrying(&mut self, index: usize, label: &str, why: &str, delay: Duration) {
        self.running.remove(&index);
        let text = format!("[{}/{}] retry   {label}: {why}; next attempt in {}", self.done, self.total, show(delay));
        self.event(&text);
    }

    /// Task `index` reached its final state.
    pub fn finished(&mut self, index: usize, label: &str, state: TaskState, took: Option<Duration>, why: Option<&str>) {
        self.running.remove(&index);
        self.done += 1;
        let mut text = format!("[{}/{}] {:<7} {label}", self.done, self.total, state.as_str());
        if let Some(took) = took {
            let _ = write!(text, " in {}", show(took));
        }
        if let Some(why) = why {
            let _ = write!(text, ": {why}");
        }
        self.event(&text);
    }

    /// A task that needs no run this time (it succeeded before a resume).
    pub fn already_done(&mut self) {
        self.done += 1;
    }

    fn event(&mut self, text: &str) {
        if self.mode == DisplayMode::Lines {
            self.line(text);
        } else if self.mode == DisplayMode::Redraw {
            // On a terminal, starts are visible in the status line; ends and retries stay.
            if !text.contains("] start ") {
                self.line(text);
            } else {
                self.redraw();
            }
        }
    }

    /// A line of a task's output.
    pub fn output(&mut self, line: &OutputLine) {
        if self.echo {
            let text = format!("{} | {}", line.label, line.text);
            self.line(&text);
        }
    }

    /// Takes the status line away for good and returns the output.
    pub fn finish(&mut self) {
        self.clear_status();
        let _ = self.out.flush();
    }

    /// Writes `text` as is, after the status line is cleared.
    pub fn write_raw(&mut self, text: &str) {
        self.clear_status();
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

/// The terminal's width in columns, 80 when it cannot be read.
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct; on failure it is left zeroed.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) };
    let rc = if rc == 0 && size.ws_col > 0 {
        rc
    } else {
        unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) }
    };
    if rc == 0 && size.ws_col > 0 { usize::from(size.ws_col) } else { 80 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn plain_lines_name_each_event_and_prefix_output() {
        let sink = Shared::default();
        let mut progress = Progress::new(Box::new(sink.clone()), DisplayMode::Lines, true, 2);
        progress.started(0, "a", 1);
        progress.output(&OutputLine { label: "a".into(), text: "hello".into() });
        progress.retrying(0, "a", "exit status 1", Duration::from_secs(2));
        progress.started(0, "a", 2);
        progress.finished(0, "a", TaskState::Success, Some(Duration::from_millis(10)), None);
        progress.finished(1, "b", TaskState::UpstreamFailed, None, Some("upstream a failed"));
        assert_eq!(
            sink.text(),
            "[0/2] start   a\na | hello\n[0/2] retry   a: exit status 1; next attempt in 2.0s\n\
             [0/2] start   a (attempt 2)\n[1/2] success a in 10ms\n[2/2] upstream_failed b: upstream a failed\n"
        );
    }

    #[test]
    fn a_terminal_gets_one_status_line_redrawn_below_the_output() {
        let sink = Shared::default();
        let mut progress = Progress::new(Box::new(sink.clone()), DisplayMode::Redraw, true, 1);
        progress.started(0, "a", 1);
        progress.output(&OutputLine { label: "a".into(), text: "hello".into() });
        progress.finish();
        let text = sink.text();
        assert!(text.starts_with("[0/1 done, 0ms] running: a"), "{text:?}");
        assert!(text.contains("\r\x1b[2Ka | hello\n[0/1 done, 0ms] running: a\r\x1b[2K"), "{text:?}");
    }

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(shell_word("tag:staging"), "tag:staging");
        assert_eq!(shell_word(r#"{"a": 1}"#), r#"'{"a": 1}'"#);
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
