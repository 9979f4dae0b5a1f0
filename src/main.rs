//! The `fhirflow` command line: a thin layer over the library.

use clap::{CommandFactory as _, Parser, Subcommand};
use fhirflow::diagnostic::{DiagnosticFormat, Diagnostics};
use fhirflow::graph::GraphFormat;
use fhirflow::plan::PlanFormat;
use fhirflow::run::report::{RunFormat, shell_word};
use fhirflow::run::{DisplayMode, RunOptions, Runner, Selection, SpecGraph};
use fhirflow::{Error, ExitStatus};
use std::io::IsTerminal as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

// Compiling a large spec is mostly small allocations (value trees, ids, settings): mimalloc
// serves them in a fraction of glibc malloc's instructions (ruff ships it for the same reason).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_CODES: &str = "\
Exit status:
  0  success (plan --detailed-exitcode: no changes)
  1  the spec is invalid; every problem is printed with its file, line and column
  2  plan --detailed-exitcode or apply --check: changes pending
  3  a file could not be read or written
  4  apply refused to overwrite a file it did not write, one edited by hand, or another spec's
  5  run: a task failed, or did not run because an upstream task failed
  6  run: a load found an existing table with other columns than the spec names; nothing loaded
  64  usage error: an unknown flag or command, a run selection or --resume that names nothing to run,
      or plan/apply of a spec on stdin or of specs in several folders without --out
  70  a bug in fhirflow
  130  run: cancelled by Ctrl-C or SIGTERM; running tasks were stopped";

/// Compile a YAML pipeline spec into Airflow DAGs and dbt config.
#[derive(Debug, Parser)]
#[command(name = "fhirflow", version, about, after_help = EXIT_CODES, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print only errors, warnings and the documents a command exists to print (JSON, Markdown,
    /// graphs, the schema): no `valid` line, no plan or apply listing, no notes.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// Print more: each spec file read.
    #[arg(long, short, global = true)]
    verbose: bool,
}

/// How much a command prints besides its errors and warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// What `plan` and `apply` work on.
#[derive(Debug, clap::Args)]
struct OutputArgs {
    /// Spec files or folders (searched recursively), compiled together; `-` reads a spec on stdin.
    #[arg(required = true, value_name = "SPEC")]
    spec: Vec<PathBuf>,
    /// Treat warnings as errors.
    #[arg(long)]
    deny_warnings: bool,
    /// Root the spec's relative output paths here instead of the spec's folder.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a spec: YAML, schema, graph. Prints every problem found, sorted by position.
    #[command(after_help = EXIT_CODES)]
    Validate {
        /// Spec files or folders (searched recursively), compiled together; `-` reads a spec on stdin.
        #[arg(required = true, value_name = "SPEC")]
        spec: Vec<PathBuf>,
        /// Output format: text, JSON (like `terraform validate -json`) or GitHub annotations.
        #[arg(long, value_enum, default_value_t = DiagnosticFormat::Text)]
        format: DiagnosticFormat,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
        /// Print the resolved settings of one stage (`pipeline.stage` or a unique stage id), and where each came from.
        #[arg(long, value_name = "STAGE")]
        explain: Option<String>,
    },
    /// Show what `apply` would add, change or remove, down to tasks and schedules.
    #[command(after_help = EXIT_CODES)]
    Plan {
        #[command(flatten)]
        target: OutputArgs,
        /// Exit 0 when nothing would change, 2 when something would, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Show a unified diff of each changed task's command, query, arguments and environment
        /// (on by default in Markdown; `--diff=false` turns it off).
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        diff: Option<bool>,
        /// Also save the plan to FILE, for `apply --plan FILE` to apply exactly it.
        #[arg(long, value_name = "FILE")]
        save_plan: Option<PathBuf>,
    },
    /// Write the DAG files and dbt YAML, removing stale ones this spec wrote before.
    #[command(after_help = EXIT_CODES)]
    Apply {
        #[command(flatten)]
        target: OutputArgs,
        /// Write nothing; exit 2 if the files on disk are out of date (the CI drift check).
        #[arg(long)]
        check: bool,
        /// Overwrite files edited by hand or not written by fhirflow.
        #[arg(long)]
        force: bool,
        /// Apply the plan that `plan --save-plan FILE` saved; refuse (exit 4) if a spec or a file
        /// changed since. SPEC and --out are the saved plan's.
        #[arg(long, value_name = "FILE", conflicts_with = "check")]
        plan: Option<PathBuf>,
    },
    /// Print the compiled task graph.
    Graph {
        /// Spec files or folders (searched recursively), drawn as one graph; `-` reads a spec on stdin.
        #[arg(required = true, value_name = "SPEC")]
        spec: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Write a starter spec for an existing dbt project: one layer per top-level model folder.
    Init {
        /// The dbt project folder (with dbt_project.yml).
        #[arg(long, value_name = "DIR")]
        from_dbt: PathBuf,
        /// Where to write the spec; its JSON Schema goes beside it.
        #[arg(default_value = "pipelines/pipeline.yaml")]
        spec: PathBuf,
        /// Overwrite an existing spec.
        #[arg(long)]
        force: bool,
        /// Run `dbt parse` first, so that the layers are ordered by dbt's own graph (a
        /// `target/manifest.json` already there is read without it).
        #[arg(long)]
        parse: bool,
        /// The dbt executable `--parse` runs.
        #[arg(long, value_name = "PROGRAM", default_value = "dbt", requires = "parse")]
        dbt: String,
    },
    /// Run the pipelines on this machine, without Airflow: the same task graph, with its
    /// dependencies, retries, timeouts, sensors and max_active_runs.
    #[command(after_help = EXIT_CODES)]
    Run {
        /// The spec file, or a folder whose specs (searched recursively) are compiled together.
        spec: PathBuf,
        /// Run only this pipeline (repeatable); every pipeline by default.
        #[arg(long = "pipeline", value_name = "PIPELINE")]
        pipelines: Vec<String>,
        /// Run only this stage (`pipeline.stage`, or a stage id found in one pipeline); repeatable.
        #[arg(long, value_name = "STAGE")]
        only: Vec<String>,
        /// Run this stage and everything downstream of it; repeatable.
        #[arg(long, value_name = "STAGE")]
        from: Vec<String>,
        /// Print the order and each command; run nothing.
        #[arg(long)]
        dry_run: bool,
        /// Most tasks running at once [default: the number of CPUs].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_parallel: Option<u32>,
        /// Resume a run: run again its tasks that did not succeed, for the same logical date.
        #[arg(long, value_name = "RUN_ID", conflicts_with_all = ["pipelines", "only", "from", "logical_date"])]
        resume: Option<String>,
        /// The run's logical date (YYYY-MM-DD or RFC 3339, UTC); now by default. Each scheduled
        /// pipeline runs for its newest schedule tick at or before it.
        #[arg(long, value_name = "DATE", value_parser = parse_date)]
        logical_date: Option<chrono::DateTime<chrono::Utc>>,
        /// How long a stopped task gets between SIGTERM and SIGKILL, such as 5s.
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
        kill_grace: std::time::Duration,
        /// Summary format.
        #[arg(long, value_enum, default_value_t = RunFormat::Text)]
        format: RunFormat,
        /// Treat warnings as errors.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// List past runs from the run store next to the spec, newest first.
    Runs {
        /// The spec file, or a folder of specs.
        spec: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RunFormat::Text)]
        format: RunFormat,
    },
    /// Print the spec's JSON Schema (Draft 2020-12).
    Schema,
    /// Print a shell completion script, e.g. `fhirflow completions bash > ~/.local/share/bash-completion/completions/fhirflow`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `fhirflow man > ~/.local/share/man/man1/fhirflow.1`.
    Man,
}

fn parse_date(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{text:?} is not a date: write YYYY-MM-DD or 2026-01-01T02:00:00Z"))
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    fhirflow::spec::Duration::parse(text).map(|d| std::time::Duration::from_secs(d.as_secs()))
}

/// Cancels the run on SIGINT and SIGTERM: the first stops tasks gracefully, the next at once.
async fn cancel_on_signals(canceller: fhirflow::run::scheduler::Canceller) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return;
    };
    loop {
        tokio::select! {
            _ = interrupt.recv() => canceller.cancel(),
            _ = terminate.recv() => canceller.cancel(),
        }
    }
}

fn main() -> ExitCode {
    // clap exits 2 on a usage error, which `plan --detailed-exitcode` uses for "changes pending".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(usage) => {
            let _ = usage.print();
            let status = if usage.use_stderr() { ExitStatus::Usage } else { ExitStatus::Ok };
            return ExitCode::from(status as u8);
        }
    };
    match run(cli) {
        Ok(status) => ExitCode::from(status as u8),
        Err(error) => {
            report(&error);
            ExitCode::from(error.exit_status() as u8)
        }
    }
}

/// Prints an error on stderr, in colour on a terminal (see [`to_stderr`]).
fn report(error: &Error) {
    match error {
        Error::Invalid(diagnostics) => to_stderr(&diagnostics.render_styled()),
        other => to_stderr(&format!("{}: {other}\n", fhirflow::diagnostic::styled_severity("error"))),
    }
}

/// Writes styled text to stderr through anstream, which keeps the colour on a terminal and drops
/// it elsewhere, with `NO_COLOR` and `CLICOLOR_FORCE` deciding first.
fn to_stderr(text: &str) {
    let mut stderr = anstream::stderr().lock();
    let _ = stderr.write_all(text.as_bytes());
}

/// A note on stderr, unless `-q`.
fn note(verbosity: Verbosity, text: &str) {
    if verbosity != Verbosity::Quiet {
        to_stderr(&format!("{}: {text}\n", fhirflow::diagnostic::styled_severity("note")));
    }
}

fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
}

/// The specs `paths` name; the YAML files passed over get a note on stderr, and with `-v` so
/// does each spec.
fn find_specs(paths: &[PathBuf], verbosity: Verbosity) -> Result<Vec<PathBuf>, Error> {
    let found = fhirflow::find_specs(paths)?;
    for skipped in &found.skipped {
        note(
            verbosity,
            &format!("skipped {}: not a spec (no top-level `version:` and `pipelines:`)", skipped.display()),
        );
    }
    if verbosity == Verbosity::Verbose {
        for spec in &found.specs {
            let name =
                if spec.as_os_str() == fhirflow::STDIN { "<stdin>".to_owned() } else { spec.display().to_string() };
            note(verbosity, &format!("spec {name}"));
        }
    }
    Ok(found.specs)
}

/// A spec's path as messages show it: `<stdin>` for `-`.
fn spec_name(path: &std::path::Path) -> String {
    if path.as_os_str() == fhirflow::STDIN { "<stdin>".to_owned() } else { path.display().to_string() }
}

/// The paths as one shell-quoted argument list.
fn shell_words(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| shell_word(&p.display().to_string())).collect::<Vec<_>>().join(" ")
}

/// Prints the compiled specs' warnings; with `deny`, they are errors.
fn warnings(compiled: &[fhirflow::Compiled], deny: bool) -> Result<(), Error> {
    let mut warnings: Diagnostics = compiled.iter().flat_map(|c| c.warnings.clone()).collect();
    if warnings.is_empty() {
        return Ok(());
    }
    if deny {
        warnings.deny_warnings();
        return Err(Error::Invalid(warnings));
    }
    to_stderr(&warnings.render_styled());
    Ok(())
}

/// Prints `plan`, applies it and says what changed.
fn apply_and_report(plan: &fhirflow::plan::Plan, force: bool, verbosity: Verbosity) -> Result<ExitStatus, Error> {
    let say = |text: &str| {
        if verbosity != Verbosity::Quiet {
            print(text);
        }
    };
    say(&plan.render(PlanFormat::Text));
    let report = fhirflow::plan::apply(plan, force)?;
    if plan.has_changes() {
        say(&format!(
            "Apply complete: {} added, {} changed, {} removed.\n",
            report.added, report.changed, report.removed
        ));
    }
    Ok(ExitStatus::Ok)
}

/// The explanation of `stage` from the first spec that has it, or why none does.
fn explain_stage(
    all: &[(PathBuf, fhirflow::Compiled)],
    stage: &str,
) -> Result<fhirflow::graph::Explanation, fhirflow::diagnostic::Diagnostic> {
    let mut last_error = None;
    for (_, compiled) in all {
        match fhirflow::graph::explain(&compiled.graph, &compiled.document, stage) {
            Ok(found) => return Ok(found),
            Err(d) => last_error = Some(d),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        fhirflow::diagnostic::Diagnostic::error("unknown-stage", format!("no stage `{stage}` to explain"))
    }))
}

fn run(cli: Cli) -> Result<ExitStatus, Error> {
    let verbosity = match (cli.quiet, cli.verbose) {
        // clap's conflict check misses a global flag given on each side of the command name.
        (true, true) => return Err(Error::Usage("-q and -v ask for less and more; give one".to_owned())),
        (true, false) => Verbosity::Quiet,
        (false, true) => Verbosity::Verbose,
        (false, false) => Verbosity::Normal,
    };
    // Reports for people, which `-q` drops; documents and errors always print.
    let say = |text: &str| {
        if verbosity != Verbosity::Quiet {
            print(text);
        }
    };
    match cli.command {
        Command::Validate { spec, format, deny_warnings, explain } => {
            let results = match find_specs(&spec, verbosity).and_then(|paths| fhirflow::compile_specs(&paths)) {
                Ok(compiled) => Ok(compiled),
                Err(Error::Invalid(diagnostics)) => Err(diagnostics),
                Err(other) => return Err(other),
            };
            let mut diagnostics = match &results {
                Ok(all) => all.iter().flat_map(|(_, c)| c.warnings.clone()).collect(),
                Err(d) => d.clone(),
            };
            if deny_warnings {
                diagnostics.deny_warnings();
            }
            let mut explanation = None;
            if let (Some(stage), Ok(all)) = (&explain, &results)
                && !diagnostics.has_errors()
            {
                match explain_stage(all, stage) {
                    Ok(found) => explanation = Some(found),
                    Err(d) => diagnostics.push(d),
                }
            }
            match format {
                DiagnosticFormat::Text => to_stderr(&diagnostics.render_styled()),
                // One JSON document on stdout: the explanation goes inside it.
                DiagnosticFormat::Json => {
                    let mut doc = diagnostics.to_json();
                    if let (Some(found), Some(map)) = (&explanation, doc.as_object_mut()) {
                        map.insert("explain".to_owned(), serde_json::to_value(found).unwrap_or_default());
                    }
                    print(&format!("{}\n", serde_json::to_string_pretty(&doc).unwrap_or_default()));
                }
                DiagnosticFormat::Github => print(&diagnostics.render_as(DiagnosticFormat::Github)),
            }
            let all = match results {
                Ok(all) if !diagnostics.has_errors() => all,
                _ => return Ok(ExitStatus::Invalid),
            };
            if let Some(found) = explanation {
                if format != DiagnosticFormat::Json {
                    print(&found.to_text());
                }
            } else if format == DiagnosticFormat::Text {
                let pipelines: usize = all.iter().map(|(_, c)| c.graph.pipelines.len()).sum();
                let tasks: usize = all.iter().map(|(_, c)| c.graph.task_count()).sum();
                let specs = if all.len() == 1 { String::new() } else { format!("{} specs, ", all.len()) };
                let named: Vec<String> = spec.iter().map(|p| spec_name(p)).collect();
                say(&format!("{}: valid ({specs}{pipelines} pipelines, {tasks} tasks)\n", named.join(" ")));
            }
            // The process ends here: freeing every node of the trees and the graphs one by one
            // would cost a twentieth of a large spec's validation, for nothing.
            std::mem::forget(all);
            Ok(ExitStatus::Ok)
        }
        Command::Plan {
            target: OutputArgs { spec, out, deny_warnings },
            detailed_exitcode,
            format,
            diff,
            save_plan,
        } => {
            let planned = find_specs(&spec, verbosity)
                .and_then(|paths| fhirflow::plan_specs(&paths, out.as_deref()))
                .and_then(|(compiled, plan)| warnings(&compiled, deny_warnings).map(|()| plan));
            let plan = match planned {
                // A script reading JSON gets JSON on stdout either way.
                Err(Error::Invalid(diagnostics)) if format == PlanFormat::Json => {
                    print(&diagnostics.render_as(DiagnosticFormat::Json));
                    return Ok(ExitStatus::Invalid);
                }
                other => other?,
            };
            if let Some(file) = &save_plan {
                let [one] = spec.as_slice() else {
                    return Err(Error::Usage("--save-plan records one SPEC (a file or a folder); name one".to_owned()));
                };
                fhirflow::plan::SavedPlan::of(&plan, one, out.as_deref())?.write(file)?;
            }
            let text = plan.render_diffs(format, diff.unwrap_or(format != PlanFormat::Text));
            if format == PlanFormat::Text {
                say(&text)
            } else {
                print(&text)
            }
            Ok(if detailed_exitcode && plan.has_changes() { ExitStatus::Changes } else { ExitStatus::Ok })
        }
        Command::Apply { target: OutputArgs { spec, out, deny_warnings }, check: _, force, plan: Some(file) } => {
            let saved = fhirflow::plan::SavedPlan::read(&file)?;
            if spec.as_slice() != [saved.spec.clone()] || saved.out != out {
                return Err(Error::Refused {
                    path: file,
                    reason: "it was saved for another SPEC or --out; nothing was written".to_owned(),
                });
            }
            let (compiled, plan) = fhirflow::plan_specs(&find_specs(&spec, verbosity)?, out.as_deref())?;
            warnings(&compiled, deny_warnings)?;
            saved.verify(&plan)?;
            apply_and_report(&plan, force, verbosity)
        }
        Command::Apply { target: OutputArgs { spec, out, deny_warnings }, check, force, plan: None } => {
            let paths = find_specs(&spec, verbosity)?;
            let (mut compiled, mut plan) = fhirflow::plan_specs(&paths, out.as_deref())?;
            if !check && let Some(done) = fhirflow::plan::complete_interrupted(&plan)? {
                note(verbosity, &format!("completed an interrupted apply ({done} files); planning again"));
                (compiled, plan) = fhirflow::plan_specs(&paths, out.as_deref())?;
            }
            warnings(&compiled, deny_warnings)?;
            if check {
                if plan.has_changes() {
                    say(&plan.render(PlanFormat::Text));
                    let mut command = format!("fhirflow apply {}", shell_words(&spec));
                    if let Some(out) = &out {
                        command.push_str(&format!(" --out {}", shell_word(&out.display().to_string())));
                    }
                    if deny_warnings {
                        command.push_str(" --deny-warnings");
                    }
                    let error = fhirflow::diagnostic::styled_severity("error");
                    match plan.blocked().count() {
                        0 => to_stderr(&format!("{error}: the generated files are out of date; run `{command}`\n")),
                        n => to_stderr(&format!(
                            "{error}: the generated files are out of date, and `{command}` would refuse {n} of them (marked `!` above); \
                             if their changes can go, run `{command} --force`\n"
                        )),
                    }
                    return Ok(ExitStatus::Changes);
                }
                say("The generated files are up to date.\n");
                return Ok(ExitStatus::Ok);
            }
            apply_and_report(&plan, force, verbosity)
        }
        Command::Graph { spec, format } => {
            let compiled = fhirflow::compile_specs(&find_specs(&spec, verbosity)?)?;
            if compiled.len() > 1 && format == GraphFormat::Json {
                return Err(Error::Usage(format!(
                    "graph --format json describes one spec, and {} were named; name one spec file",
                    compiled.len()
                )));
            }
            // One chart of every spec's pipelines, so that sensors across specs are edges in it.
            let mut specs = compiled.into_iter().map(|(_, c)| c.graph);
            let mut graph = specs.next().ok_or_else(|| Error::Usage("no specs to draw".to_owned()))?;
            for other in specs {
                graph.pipelines.extend(other.pipelines);
            }
            print(&graph.render(format));
            Ok(ExitStatus::Ok)
        }
        Command::Init { from_dbt, spec, force, parse, dbt } => {
            if spec.exists() && !force {
                return Err(Error::Refused {
                    path: spec,
                    reason: "it exists; rerun with --force to replace it".to_owned(),
                });
            }
            let graph = fhirflow::init::GraphSource { parse_with: parse.then_some(dbt) };
            let starter = fhirflow::init::starter_spec_from(&from_dbt, &spec, &graph)?;
            fhirflow::plan::write_atomically(&spec, &starter.text)?;
            fhirflow::plan::write_atomically(&starter.schema_path, &starter.schema_text)?;
            for line in starter.skipped.iter().chain(&starter.notes) {
                to_stderr(&format!("{}: {line}\n", fhirflow::diagnostic::styled_severity("warning")));
            }
            say(&format!(
                "Wrote {} and {}. Next: fhirflow plan {}\n",
                spec.display(),
                starter.schema_path.display(),
                spec.display()
            ));
            Ok(ExitStatus::Ok)
        }
        Command::Run {
            spec,
            pipelines,
            only,
            from,
            dry_run,
            max_parallel,
            resume,
            logical_date,
            kill_grace,
            format,
            deny_warnings,
        } => {
            if spec.as_os_str() == fhirflow::STDIN {
                return Err(Error::Usage(
                    "run needs a spec file: its commands and run store are relative to its folder".to_owned(),
                ));
            }
            let (paths, compiled): (Vec<PathBuf>, Vec<fhirflow::Compiled>) =
                fhirflow::compile_specs(&find_specs(std::slice::from_ref(&spec), verbosity)?)?.into_iter().unzip();
            let airflow_only: Diagnostics =
                compiled.iter().flat_map(|c| fhirflow::airflow_only_stages(c, &pipelines)).collect();
            if airflow_only.has_errors() {
                return Err(Error::Invalid(airflow_only));
            }
            warnings(&compiled, deny_warnings)?;
            let specs = paths.into_iter().zip(compiled).map(|(path, c)| SpecGraph { path, graph: c.graph }).collect();
            // With JSON on stdout, the progress goes to stderr.
            let (display, tty): (Box<dyn std::io::Write + Send>, bool) = match format {
                RunFormat::Text => (Box::new(std::io::stdout()), std::io::stdout().is_terminal()),
                RunFormat::Json => (Box::new(std::io::stderr()), std::io::stderr().is_terminal()),
            };
            let options = RunOptions {
                selection: Selection { pipelines, only, from },
                resume,
                logical_date,
                max_parallel: max_parallel.map_or_else(fhirflow::run::default_max_parallel, |n| n as usize),
                kill_grace,
                // The summary stays under `-q`: it names the failures.
                echo_output: verbosity != Verbosity::Quiet,
                display: if tty { DisplayMode::Redraw } else { DisplayMode::Lines },
            };
            let runner = Runner::new(&spec, specs, options).display_to(display);
            if dry_run {
                print(&runner.dry_run()?);
                return Ok(ExitStatus::Ok);
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(fhirflow::run::RunError::Runtime)?;
            let canceller = runner.canceller();
            let report = runtime.block_on(async move {
                tokio::spawn(cancel_on_signals(canceller));
                runner.run().await
            })?;
            // Tasks' stray output threads are gone; do not wait on the signal listener.
            runtime.shutdown_background();
            match format {
                RunFormat::Text => print(&format!("\n{}", report.to_text())),
                RunFormat::Json => print(&report.to_json()),
            }
            Ok(match report.state {
                fhirflow::run::RunState::Success => ExitStatus::Ok,
                fhirflow::run::RunState::Cancelled => ExitStatus::Cancelled,
                _ if report.table_mismatch => ExitStatus::TableMismatch,
                _ => ExitStatus::TasksFailed,
            })
        }
        Command::Runs { spec, format } => {
            let dir = fhirflow::run::state_dir(&spec);
            let runs = if fhirflow::run::store::database_path(&dir).exists() {
                // Opening for writing marks runs whose fhirflow died as interrupted.
                fhirflow::run::store::Store::open(&dir).and_then(|s| s.runs()).map_err(fhirflow::run::RunError::from)?
            } else {
                Vec::new()
            };
            match format {
                RunFormat::Text => print(&fhirflow::run::report::runs_text(&runs)),
                RunFormat::Json => print(&fhirflow::run::report::runs_json(&runs)),
            }
            Ok(ExitStatus::Ok)
        }
        Command::Schema => {
            print(&fhirflow::validate::schema::to_text());
            Ok(ExitStatus::Ok)
        }
        Command::Completions { shell } => {
            // Into a buffer: clap_complete panics on a closed stdout (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "fhirflow", &mut script);
            print(&String::from_utf8_lossy(&script));
            Ok(ExitStatus::Ok)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page).map_err(|source| Error::Io {
                path: PathBuf::from("<stdout>"),
                action: "write",
                source,
            })?;
            print(&String::from_utf8_lossy(&page));
            Ok(ExitStatus::Ok)
        }
    }
}
