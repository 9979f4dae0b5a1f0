//! The `fhirflow` command line: a thin layer over the library.

use clap::{Parser, Subcommand};
use fhirflow::diagnostic::{DiagnosticFormat, Diagnostics};
use fhirflow::graph::GraphFormat;
use fhirflow::plan::PlanFormat;
use fhirflow::{Error, ExitStatus};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit status:
  0  success (plan --detailed-exitcode: no changes)
  1  the spec is invalid; every problem is printed with its file, line and column
  2  usage error; with plan --detailed-exitcode or apply --check: changes pending
  3  a file could not be read or written
  4  apply refused to overwrite a file it did not write, or one edited by hand";

/// Compile a YAML pipeline spec into Airflow DAGs and dbt config.
#[derive(Debug, Parser)]
#[command(name = "fhirflow", version, about, after_help = EXIT_CODES, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `plan` and `apply` work on.
#[derive(Debug, clap::Args)]
struct OutputArgs {
    /// The spec file, or a folder whose specs are compiled together.
    spec: PathBuf,
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
        /// The spec file, or a folder whose specs are compiled together.
        spec: PathBuf,
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
    },
    /// Print the compiled task graph.
    Graph {
        /// The spec file.
        spec: PathBuf,
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
    },
    /// Print the spec's JSON Schema (Draft 2020-12).
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(status) => ExitCode::from(status as u8),
        Err(error) => {
            report(&error);
            ExitCode::from(error.exit_status() as u8)
        }
    }
}

fn report(error: &Error) {
    let mut stderr = std::io::stderr().lock();
    match error {
        Error::Invalid(diagnostics) => {
            let _ = write!(stderr, "{}", diagnostics.render());
        }
        other => {
            let _ = writeln!(stderr, "error: {other}");
        }
    }
}

fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
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
    eprint!("{}", warnings.render());
    Ok(())
}

fn run(cli: Cli) -> Result<ExitStatus, Error> {
    match cli.command {
        Command::Validate { spec, format, deny_warnings, explain } => {
            let results = match fhirflow::compile_path(&spec) {
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
            match format {
                DiagnosticFormat::Text => eprint!("{}", diagnostics.render()),
                other => print(&diagnostics.render_as(other)),
            }
            let all = match results {
                Ok(all) if !diagnostics.has_errors() => all,
                _ => return Ok(ExitStatus::Invalid),
            };
            if let Some(stage) = explain {
                let mut last_error = None;
                for (_, compiled) in &all {
                    match fhirflow::graph::explain(&compiled.graph, &compiled.document, &stage) {
                        Ok(text) => {
                            print(&text);
                            return Ok(ExitStatus::Ok);
                        }
                        Err(d) => last_error = Some(d),
                    }
                }
                let diagnostics = Diagnostics::from_iter(last_error);
                return Err(Error::Invalid(diagnostics));
            } else if format == DiagnosticFormat::Text {
                let pipelines: usize = all.iter().map(|(_, c)| c.graph.pipelines.len()).sum();
                let tasks: usize = all.iter().map(|(_, c)| c.graph.task_count()).sum();
                let specs = if all.len() == 1 { String::new() } else { format!("{} specs, ", all.len()) };
                print(&format!("{}: valid ({specs}{pipelines} pipelines, {tasks} tasks)\n", spec.display()));
            }
            Ok(ExitStatus::Ok)
        }
        Command::Plan { target: OutputArgs { spec, out, deny_warnings }, detailed_exitcode, format } => {
            let (compiled, plan) = fhirflow::plan_path(&spec, out.as_deref())?;
            warnings(&compiled, deny_warnings)?;
            print(&plan.render(format));
            Ok(if detailed_exitcode && plan.has_changes() { ExitStatus::UsageOrChanges } else { ExitStatus::Ok })
        }
        Command::Apply { target: OutputArgs { spec, out, deny_warnings }, check, force } => {
            let (compiled, plan) = fhirflow::plan_path(&spec, out.as_deref())?;
            warnings(&compiled, deny_warnings)?;
            if check {
                if plan.has_changes() {
                    print(&plan.render(PlanFormat::Text));
                    eprintln!("error: the generated files are out of date; run `fhirflow apply {}`", spec.display());
                    return Ok(ExitStatus::UsageOrChanges);
                }
                print("The generated files are up to date.\n");
                return Ok(ExitStatus::Ok);
            }
            print(&plan.render(PlanFormat::Text));
            let report = fhirflow::plan::apply(&plan, force)?;
            if plan.has_changes() {
                print(&format!(
                    "Apply complete: {} added, {} changed, {} removed.\n",
                    report.added, report.changed, report.removed
                ));
            }
            Ok(ExitStatus::Ok)
        }
        Command::Graph { spec, format } => {
            let compiled = fhirflow::compile_file(&spec)?;
            print(&compiled.graph.render(format));
            Ok(ExitStatus::Ok)
        }
        Command::Init { from_dbt, spec, force } => {
            if spec.exists() && !force {
                return Err(Error::Refused {
                    path: spec,
                    reason: "it exists; rerun with --force to replace it".to_owned(),
                });
            }
            let starter = fhirflow::init::starter_spec(&from_dbt, &spec)?;
            fhirflow::plan::write_atomically(&spec, &starter.text)?;
            fhirflow::plan::write_atomically(&starter.schema_path, &starter.schema_text)?;
            for line in starter.skipped.iter().chain(&starter.notes) {
                eprintln!("warning: {line}");
            }
            print(&format!(
                "Wrote {} and {}. Next: fhirflow plan {}\n",
                spec.display(),
                starter.schema_path.display(),
                spec.display()
            ));
            Ok(ExitStatus::Ok)
        }
        Command::Schema => {
            print(&fhirflow::validate::schema::to_text());
            Ok(ExitStatus::Ok)
        }
    }
}
