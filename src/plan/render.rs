//! A plan as text for terminals, JSON for scripts, and Markdown for pull-request comments.

use super::{Action, Blocker, ChangeClass, Detail, FieldChange, FileChange, Plan};
use serde_json::json;
use std::fmt::Write as _;

/// Output formats of `fhirflow plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PlanFormat {
    /// Human-readable text.
    Text,
    /// JSON with a `format_version`, for scripts.
    Json,
    /// Markdown for a pull-request comment.
    Markdown,
}

/// The version of the JSON plan format; bumped on incompatible changes.
pub const FORMAT_VERSION: &str = "1.0";

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Add => "+",
        Action::Change => "~",
        Action::Remove => "-",
    }
}

/// A recorded value as the text plan shows it: strings quoted, `none` when absent.
fn shown(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "none".to_owned(),
        serde_json::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn field_text(change: &FieldChange) -> String {
    match change.field.as_str() {
        "definition" => "definition changed (command, query or arguments)".to_owned(),
        field => format!("{field}: {} → {}", shown(&change.old), shown(&change.new)),
    }
}

fn detail_text(detail: &Detail) -> String {
    format!("{} [{}]", detail_words(detail), detail.class().as_str())
}

/// The unified diffs of the task definitions that `detail` changes, with the task they belong to.
fn diffs(detail: &Detail) -> Vec<(&str, &str)> {
    match detail {
        Detail::TaskChanged { task, changes } => {
            changes.iter().filter_map(|c| c.diff.as_deref()).map(|d| (task.as_str(), d)).collect()
        }
        _ => Vec::new(),
    }
}

fn detail_words(detail: &Detail) -> String {
    match detail {
        Detail::Setting { name, old, new } => format!("~ {name}: {} → {}", shown(old), shown(new)),
        Detail::TaskAdded { task } => format!("+ task {task}"),
        Detail::ColumnAdded { model, column } => format!("+ column {model}.{column}"),
        Detail::ColumnRemoved { model, column } => format!("- column {model}.{column}"),
        Detail::TestAdded { model, column, test } => format!("+ test {test} on {model}.{column}"),
        Detail::TestRemoved { model, column, test } => format!("- test {test} on {model}.{column}"),
        Detail::DescriptionChanged { model, column: None } => format!("~ description of {model}"),
        Detail::DescriptionChanged { model, column: Some(column) } => format!("~ description of {model}.{column}"),
        Detail::TaskRemoved { task } => format!("- task {task}"),
        Detail::TaskRenamed { from, to } => {
            format!("~ task {from} renamed to {to} (Airflow keeps no history across a rename)")
        }
        Detail::TaskChanged { task, changes } => {
            format!("~ task {task}: {}", changes.iter().map(field_text).collect::<Vec<_>>().join("; "))
        }
    }
}

fn blocker_text(blocker: &Blocker) -> String {
    match blocker {
        Blocker::NotGenerated => "exists and was not written by fhirflow; apply refuses unless --force".to_owned(),
        Blocker::EditedByHand => "was edited by hand since fhirflow wrote it; apply refuses unless --force".to_owned(),
        Blocker::OtherSpec { spec, orphaned: false } => {
            format!("belongs to {spec}, which generates it too; apply refuses, even with --force")
        }
        Blocker::OtherSpec { spec, orphaned: true } => {
            format!("was written from {spec}, which is gone; apply refuses unless --force")
        }
    }
}

impl Plan {
    /// The closing line: `Plan: 2 to add, 1 to change, 0 to remove.`
    pub fn summary_line(&self) -> String {
        let (add, change, remove) = self.counts();
        if !self.has_changes() {
            return "No changes. The generated files are up to date.".to_owned();
        }
        format!("Plan: {add} to add, {change} to change, {remove} to remove.")
    }

    /// The changes counted by class: `Changes: 1 breaking, 2 behavioural, 0 metadata-only.`
    pub fn class_line(&self) -> Option<String> {
        let classes: Vec<ChangeClass> = self.changes.iter().flat_map(FileChange::classes).collect();
        if classes.is_empty() {
            return None;
        }
        let count = |class| classes.iter().filter(|c| **c == class).count();
        Some(format!(
            "Changes: {} breaking, {} behavioural, {} metadata-only.",
            count(ChangeClass::Breaking),
            count(ChangeClass::Behavioural),
            count(ChangeClass::Metadata)
        ))
    }

    fn shown_path(&self, change: &FileChange) -> String {
        self.layout.display(&change.path)
    }

    /// Renders the plan in `format`, with definition diffs in Markdown and JSON only.
    pub fn render(&self, format: PlanFormat) -> String {
        self.render_diffs(format, format != PlanFormat::Text)
    }

    /// Renders the plan in `format`; `diffs` shows the unified diffs of changed task
    /// definitions (JSON always carries them).
    pub fn render_diffs(&self, format: PlanFormat, diffs_shown: bool) -> String {
        let mut out = String::new();
        match format {
            PlanFormat::Text => {
                for change in &self.changes {
                    let _ = writeln!(out, "  {} {}", symbol(change.action), self.shown_path(change));
                    for detail in &change.details {
                        let _ = writeln!(out, "      {}", detail_text(detail));
                        for (_, diff) in diffs(detail).into_iter().filter(|_| diffs_shown) {
                            for line in diff.lines() {
                                let _ = writeln!(out, "          {line}");
                            }
                        }
                    }
                    if let Some(blocker) = &change.blocker {
                        let _ = writeln!(out, "      ! {}", blocker_text(blocker));
                    }
                }
                if self.has_changes() {
                    out.push('\n');
                }
                let _ = writeln!(out, "{}", self.summary_line());
                if let Some(line) = self.class_line() {
                    let _ = writeln!(out, "{line}");
                }
                if !self.leftovers.is_empty() {
                    let n = self.leftovers.len();
                    let files = if n == 1 { "file" } else { "files" };
                    let _ = writeln!(
                        out,
                        "apply also removes {n} temporary {files} that an interrupted apply left behind."
                    );
                }
                for line in self.notes() {
                    let _ = writeln!(out, "note: {line}");
                }
            }
            PlanFormat::Json => {
                let (add, change, remove) = self.counts();
                let changes: Vec<_> = self
                    .changes
                    .iter()
                    .map(|c| {
                        let details: Vec<_> = c
                            .details
                            .iter()
                            .map(|d| {
                                let mut value = serde_json::to_value(d).unwrap_or_default();
                                if let Some(map) = value.as_object_mut() {
                                    map.insert("class".into(), json!(d.class()));
                                }
                                value
                            })
                            .collect();
                        json!({
                            "path": self.shown_path(c),
                            "action": c.action,
                            "kind": c.kind,
                            "class": c.classes().into_iter().max(),
                            "details": details,
                            "blocked": c.blocker,
                        })
                    })
                    .collect();
                let doc = json!({
                    "format_version": FORMAT_VERSION,
                    "changes": changes,
                    "summary": { "add": add, "change": change, "remove": remove },
                    "classes": {
                        "breaking": self.changes.iter().flat_map(FileChange::classes).filter(|c| *c == ChangeClass::Breaking).count(),
                        "behavioural": self.changes.iter().flat_map(FileChange::classes).filter(|c| *c == ChangeClass::Behavioural).count(),
                        "metadata": self.changes.iter().flat_map(FileChange::classes).filter(|c| *c == ChangeClass::Metadata).count(),
                    },
                    "has_changes": self.has_changes(),
                    "notes": self.notes(),
                    "pools": self.pools,
                });
                out = serde_json::to_string_pretty(&doc).unwrap_or_default();
                out.push('\n');
            }
            PlanFormat::Markdown => {
                let _ = writeln!(out, "### fhirflow plan\n");
                let _ = writeln!(out, "**{}**\n", self.summary_line());
                if let Some(line) = self.class_line() {
                    let _ = writeln!(out, "{line}\n");
                }
                if self.has_changes() {
                    out.push_str("| | File | Changes |\n|---|---|---|\n");
                    for change in &self.changes {
                        let mut cells: Vec<String> =
                            change.details.iter().map(|d| format!("`{}`", detail_text(d))).collect();
                        if let Some(blocker) = &change.blocker {
                            cells.push(format!("⚠️ {}", blocker_text(blocker)));
                        }
                        let cells = cells.join("<br>").replace('|', "\\|");
                        let _ = writeln!(
                            out,
                            "| `{}` | `{}` | {} |",
                            symbol(change.action),
                            self.shown_path(change),
                            cells
                        );
                    }
                }
                for change in self.changes.iter().filter(|_| diffs_shown) {
                    for (task, diff) in change.details.iter().flat_map(diffs) {
                        let _ = writeln!(
                            out,
                            "\n<details><summary><code>{}</code> task <code>{task}</code></summary>\n\n```diff\n{diff}```\n\n</details>",
                            self.shown_path(change)
                        );
                    }
                }
                let notes = self.notes();
                if !notes.is_empty() {
                    out.push('\n');
                    for line in notes {
                        let _ = writeln!(out, "> {}", line.replace('|', "\\|"));
                    }
                }
            }
        }
        out
    }

    /// What a reader of the plan should know beyond the changes: an interrupted apply that
    /// `apply` completes first, files that name the spec but stay, and the Airflow pools to create.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(journal) = &self.interrupted {
            let n = journal.renames.len() + journal.removes.len();
            let what = if journal.writer_running() {
                format!("an apply (process {}) is writing {n} files; apply waits for it", journal.pid)
            } else {
                format!(
                    "an apply was interrupted after staging {n} files; apply completes it first, so that no mix of old and new files stays"
                )
            };
            notes.push(what);
        }
        for kept in &self.kept {
            notes.push(format!("{} is left in place: {}", self.layout.display(&kept.path), kept.reason));
        }
        for pool in self.pools.iter().filter(|p| p.declared) {
            notes.push(format!(
                "the DAGs run tasks in Airflow pool `{}` ({} slot{}); Airflow never schedules a task whose pool is missing, so create it before they run: `{}`",
                pool.name,
                pool.slots,
                if pool.slots == 1 { "" } else { "s" },
                pool.create_command()
            ));
        }
        for pool in self.pools.iter().filter(|p| !p.declared) {
            notes.push(format!(
                "the DAGs run dbt tasks that write one DuckDB file in Airflow pool `{}` ({} slot); Airflow never schedules a task whose pool is missing, so create it before they run: `{}`",
                pool.name,
                pool.slots,
                pool.create_command()
            ));
        }
        notes
    }
}
