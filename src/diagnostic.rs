//! Diagnostics: what went wrong, where, and what to do about it.

use crate::source::Span;
use std::fmt::Write as _;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The spec cannot be compiled.
    Error,
    /// The spec compiles, but probably not as meant.
    Warning,
}

/// A message tied to a span.
#[derive(Debug, Clone)]
pub struct Label {
    /// Where.
    pub span: Span,
    /// What about it; may be empty.
    pub message: String,
}

/// One problem found in a spec.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable code, such as `unknown-stage`, for scripts and docs.
    pub code: &'static str,
    /// One line saying what is wrong.
    pub summary: String,
    /// The place the problem is, if known.
    pub primary: Option<Label>,
    /// Other places that matter (the other end of a cycle, a merged anchor).
    pub secondary: Vec<Label>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A new error.
    pub fn error(code: &'static str, summary: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            summary: summary.into(),
            primary: None,
            secondary: Vec::new(),
            help: None,
        }
    }

    /// A new warning.
    pub fn warning(code: &'static str, summary: impl Into<String>) -> Self {
        Self { severity: Severity::Warning, ..Self::error(code, summary) }
    }

    /// Points the diagnostic at `span`.
    pub fn at(mut self, span: Option<Span>, message: impl Into<String>) -> Self {
        self.primary = span.map(|span| Label { span, message: message.into() });
        self
    }

    /// Adds another place of interest.
    pub fn also(mut self, span: Option<Span>, message: impl Into<String>) -> Self {
        if let Some(span) = span {
            self.secondary.push(Label { span, message: message.into() });
        }
        self
    }

    /// Adds a hint.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sort key: file, then position, then text, so output is stable.
    fn sort_key(&self) -> (String, usize, String) {
        match &self.primary {
            Some(label) => (label.span.file.name.clone(), label.span.start.byte, self.summary.clone()),
            None => (String::new(), 0, self.summary.clone()),
        }
    }

    /// Renders rustc-style text with a source snippet and a caret.
    pub fn render(&self) -> String {
        self.render_with(false)
    }

    /// [`Diagnostic::render`] with ANSI colours, for a stream that drops them off a terminal.
    pub fn render_styled(&self) -> String {
        self.render_with(true)
    }

    fn render_with(&self, styled: bool) -> String {
        let renderer = if styled {
            annotate_snippets::Renderer::styled()
                .error(severity_style("error"))
                .warning(severity_style("warning"))
                .help(severity_style("note"))
        } else {
            annotate_snippets::Renderer::plain()
        }
        .term_width(UNTRIMMED_WIDTH);
        let level = match self.severity {
            Severity::Error => annotate_snippets::Level::ERROR,
            Severity::Warning => annotate_snippets::Level::WARNING,
        };
        let mut group = annotate_snippets::Group::with_title(level.primary_title(&self.summary).id(self.code));
        let labels: Vec<(&Label, bool)> =
            self.primary.iter().map(|l| (l, true)).chain(self.secondary.iter().map(|l| (l, false))).collect();
        // One snippet per file, in the order the files are first named, so labels in one file share
        // a snippet as rustc's do.
        let mut files: Vec<&std::sync::Arc<crate::source::SourceFile>> = Vec::new();
        for (label, _) in &labels {
            if !files.iter().any(|f| std::sync::Arc::ptr_eq(f, &label.span.file)) {
                files.push(&label.span.file);
            }
        }
        for file in files {
            let here: Vec<&(&Label, bool)> =
                labels.iter().filter(|(l, _)| std::sync::Arc::ptr_eq(&l.span.file, file)).collect();
            group = group.element(snippet(file, &here));
        }
        if let Some(help) = &self.help {
            group = group.element(annotate_snippets::Level::HELP.message(help));
        }
        let mut out = renderer.render(&[group]);
        out.push('\n');
        out
    }
}

/// Wide enough that no spec line is cut to fit: the reader sees the line as written, and the
/// text does not depend on a terminal.
const UNTRIMMED_WIDTH: usize = 1 << 24;

/// The lines of `file` that `labels` cover, as a snippet: the renderer scans its whole source for
/// each diagnostic, so it gets only these lines, not the file.
fn snippet<'a>(
    file: &'a crate::source::SourceFile,
    labels: &[&(&'a Label, bool)],
) -> annotate_snippets::Snippet<'a, annotate_snippets::Annotation<'a>> {
    let first = labels.iter().map(|(l, _)| l.span.start.line).min().unwrap_or(1);
    let last = labels.iter().map(|(l, _)| visible_end(&l.span).line).max().unwrap_or(first);
    let from = file.offset(first, 1);
    let to = file.offset(last, 1) + file.line_text(last).len();
    let source = &file.text[from..to.max(from)];
    let annotations = labels.iter().map(|(label, primary)| {
        let kind = if *primary {
            annotate_snippets::AnnotationKind::Primary
        } else {
            annotate_snippets::AnnotationKind::Context
        };
        let start = label.span.start.byte.clamp(from, to) - from;
        let end = visible_end(&label.span).byte.clamp(from, to) - from;
        let annotation = kind.span(start..end.max(start));
        if label.message.is_empty() { annotation } else { annotation.label(label.message.as_str()) }
    });
    annotate_snippets::Snippet::source(source).line_start(first).path(file.name.as_str()).annotations(annotations)
}

/// Where a span ends on screen: a span running up to a line break ends on its own line, not at
/// the start of the next.
fn visible_end(span: &Span) -> crate::source::Position {
    if span.end.line > span.start.line && span.end.column == 1 {
        let line = span.end.line - 1;
        let text = span.file.line_text(line);
        let byte = span.file.offset(line, 1) + text.len();
        return span.file.position(byte);
    }
    span.end
}

/// The colour of a severity word: `error`, `warning` or `note`.
fn severity_style(kind: &str) -> anstyle::Style {
    let colour = match kind {
        "error" => anstyle::AnsiColor::Red,
        "warning" => anstyle::AnsiColor::Yellow,
        _ => anstyle::AnsiColor::Cyan,
    };
    anstyle::Style::new().bold().fg_color(Some(colour.into()))
}

fn paint(style: anstyle::Style, text: &str) -> String {
    format!("{}{text}{}", style.render(), style.render_reset())
}

/// `error`, `warning` or `note` in its colour, to start a message on stderr.
pub fn styled_severity(kind: &str) -> String {
    paint(severity_style(kind), kind)
}

/// How `validate` prints diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiagnosticFormat {
    /// rustc-style text with snippets.
    Text,
    /// The shape of `terraform validate -json`, with a `format_version`.
    Json,
    /// GitHub workflow commands, so problems show on the pull request's diff.
    Github,
}

/// The version of the JSON diagnostics format.
pub const FORMAT_VERSION: &str = "1.0";

fn position_json(p: &crate::source::Position) -> serde_json::Value {
    serde_json::json!({ "line": p.line, "column": p.column, "byte": p.byte })
}

/// Escapes a GitHub workflow-command message (`%`, CR, LF).
fn github_data(text: &str) -> String {
    text.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Escapes a GitHub workflow-command property (also `:` and `,`).
fn github_property(text: &str) -> String {
    github_data(text).replace(':', "%3A").replace(',', "%2C")
}

impl Diagnostic {
    /// Everything beyond the summary: the hint and the other places, as plain text.
    pub fn detail(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(label) = self.primary.as_ref().filter(|l| !l.message.is_empty()) {
            parts.push(label.message.clone());
        }
        for label in &self.secondary {
            let span = &label.span;
            parts.push(format!("{} ({}:{}:{})", label.message, span.file.name, span.start.line, span.start.column));
        }
        if let Some(help) = &self.help {
            parts.push(format!("help: {help}"));
        }
        parts.join("; ")
    }

    /// The diagnostic as JSON, in the shape of `terraform validate -json`.
    pub fn to_json(&self) -> serde_json::Value {
        let range = self.primary.as_ref().map(|label| {
            serde_json::json!({
                "filename": label.span.file.name,
                "start": position_json(&label.span.start),
                "end": position_json(&label.span.end),
            })
        });
        serde_json::json!({
            "severity": self.severity,
            "code": self.code,
            "summary": self.summary,
            "detail": self.detail(),
            "range": range,
        })
    }

    /// The diagnostic as a GitHub workflow command (`::error file=…,line=…,col=…::…`).
    pub fn to_github(&self) -> String {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut properties = vec![format!("title={}", github_property(&format!("fhirflow {}", self.code)))];
        if let Some(label) = &self.primary {
            let span = &label.span;
            properties.insert(0, format!("file={}", github_property(&span.file.name)));
            properties.insert(1, format!("line={}", span.start.line));
            properties.insert(2, format!("col={}", span.start.column));
            properties.insert(3, format!("endLine={}", span.end.line));
            properties.insert(4, format!("endColumn={}", span.end.column));
        }
        let detail = self.detail();
        let message = if detail.is_empty() { self.summary.clone() } else { format!("{}\n{detail}", self.summary) };
        format!("::{level} {}::{}", properties.join(","), github_data(&message))
    }
}

/// Every diagnostic of one run, sorted by place, without repeats.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    /// No diagnostics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// Adds many.
    pub fn extend(&mut self, more: impl IntoIterator<Item = Diagnostic>) {
        self.0.extend(more);
    }

    /// Whether any is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == Severity::Error)
    }

    /// How many errors.
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.severity == Severity::Error).count()
    }

    /// How many warnings.
    pub fn warning_count(&self) -> usize {
        self.0.iter().filter(|d| d.severity == Severity::Warning).count()
    }

    /// All of them, sorted by file and position, duplicates removed.
    pub fn sorted(&self) -> Vec<&Diagnostic> {
        let mut all: Vec<&Diagnostic> = self.0.iter().collect();
        all.sort_by_key(|d| d.sort_key());
        all.dedup_by(|a, b| a.sort_key() == b.sort_key() && a.code == b.code);
        all
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Turns every warning into an error (`--deny-warnings`).
    pub fn deny_warnings(&mut self) {
        for d in &mut self.0 {
            d.severity = Severity::Error;
        }
    }

    /// The JSON document of `validate --format json`, for commands that add to it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "format_version": FORMAT_VERSION,
            "valid": !self.has_errors(),
            "error_count": self.error_count(),
            "warning_count": self.warning_count(),
            "diagnostics": self.sorted().iter().map(|d| d.to_json()).collect::<Vec<_>>(),
        })
    }

    /// Renders them in `format`.
    pub fn render_as(&self, format: DiagnosticFormat) -> String {
        match format {
            DiagnosticFormat::Text => self.render(),
            DiagnosticFormat::Json => {
                let mut text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
                text.push('\n');
                text
            }
            DiagnosticFormat::Github => self.sorted().iter().map(|d| format!("{}\n", d.to_github())).collect(),
        }
    }

    /// Renders them all as text, with a closing count.
    pub fn render(&self) -> String {
        self.render_with(false)
    }

    /// [`Diagnostics::render`] with ANSI colours, for a stream that drops them off a terminal.
    pub fn render_styled(&self) -> String {
        self.render_with(true)
    }

    fn render_with(&self, styled: bool) -> String {
        let mut out = String::new();
        for d in self.sorted() {
            out.push_str(&d.render_with(styled));
            out.push('\n');
        }
        let (errors, warnings) = (self.error_count(), self.warning_count());
        if errors + warnings > 0 {
            let _ = writeln!(out, "{} error{} and {} warning{}", errors, plural(errors), warnings, plural(warnings));
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl FromIterator<Diagnostic> for Diagnostics {
    fn from_iter<I: IntoIterator<Item = Diagnostic>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Longest text that [`did_you_mean`] looks for a near match of.
pub const MAX_SUGGESTED_LEN: usize = 256;

/// The closest candidate to `wanted`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Edit distance is quadratic in the lengths: a 30 KB time zone took 28 s against the
    // zone names. Nothing that long is a typo of a name.
    if wanted.len() > MAX_SUGGESTED_LEN {
        return None;
    }
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let distance = strsim::damerau_levenshtein(wanted, candidate);
        let limit = (wanted.chars().count().max(candidate.chars().count()) / 3).max(1);
        if distance <= limit {
            let score = strsim::jaro_winkler(wanted, candidate) - distance as f64;
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, candidate));
            }
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    #[test]
    fn suggests_close_names_only() {
        let names = ["dbt_run_staging", "dbt_run_marts", "dbt_test"];
        assert_eq!(did_you_mean("dbt_run_stagng", names), Some("dbt_run_staging"));
        assert_eq!(did_you_mean("completely_else", names), None);
    }

    #[test]
    fn renders_caret_under_span() {
        let file = SourceFile::new("p.yaml", "stages:\n  a:\n    after: [b]\n");
        let at = file.text.find("[b]").unwrap() + 1;
        let d = Diagnostic::error("unknown-stage", "unknown stage `b`")
            .at(Some(Span::at(&file, at, 1)), "no such stage")
            .help("did you mean `a`?");
        let text = d.render();
        assert!(text.contains("--> p.yaml:3:13"), "{text}");
        assert!(text.contains("    after: [b]\n  |             ^ no such stage"), "{text}");
        assert!(text.contains("= help: did you mean `a`?"), "{text}");
    }

    /// Odd places render without panicking: the end of a file, an empty file, a span over a line
    /// break or CRLF, tabs, and labels in two files.
    #[test]
    fn renders_spans_at_edges() {
        let texts = ["a: 1", "", "a:\r\n  b: 1\r\n", "a:\n\tb: 1\n", "x: \"数据\"\n"];
        for text in texts {
            let file = SourceFile::new("p.yaml", text);
            let other = SourceFile::new("q.yaml", "q: 1\n");
            for (byte, len) in [(0, 0), (0, text.len()), (text.len(), 1), (text.len() / 2, 3)] {
                let d = Diagnostic::error("x", "x")
                    .at(Some(Span::at(&file, byte, len)), "here")
                    .also(Some(Span::at(&other, 0, 1)), "and there")
                    .also(Some(Span::line(&file, 1, 1)), "");
                let rendered = d.render();
                assert!(rendered.contains("--> p.yaml:") && rendered.contains("q.yaml:1:1"), "{text:?}: {rendered}");
            }
        }
    }
}
