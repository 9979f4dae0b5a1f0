//! Errors the library returns, and the exit status each one maps to.

use crate::diagnostic::Diagnostics;
use std::path::PathBuf;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec has errors; each is a located diagnostic.
    #[error("the spec is invalid")]
    Invalid(Diagnostics),
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done: "read", "write", "remove", "create".
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// `apply` would overwrite a file it does not own, or one edited by hand.
    #[error("refusing to overwrite {path}: {reason}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `fhirflow run` could not start or go on (a task that fails is not an error).
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    /// The command line asks for something that cannot be done, such as `plan -` without `--out`.
    #[error("{0}")]
    Usage(String),
    /// A template failed to render: a bug in fhirflow, not in the spec.
    #[error("internal error rendering {template}: {message}")]
    Render {
        /// The template.
        template: String,
        /// What went wrong.
        message: String,
    },
}

/// Process exit statuses, documented in docs/cli.md and `--help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Success; for `plan --detailed-exitcode`, no changes.
    Ok = 0,
    /// The spec is invalid.
    Invalid = 1,
    /// `plan --detailed-exitcode` and `apply --check`: changes are pending.
    Changes = 2,
    /// A file could not be read or written.
    Io = 3,
    /// `apply` refused to overwrite a file it does not own or that was edited by hand.
    Refused = 4,
    /// `fhirflow run`: a task failed (or did not run because an upstream task failed).
    TasksFailed = 5,
    /// `fhirflow run`: a load found an existing table whose columns are not the ones the spec
    /// names, and stopped before loading anything.
    TableMismatch = 6,
    /// A usage error: an unknown flag or subcommand, or a `run` selection or `--resume` that names
    /// nothing to run (EX_USAGE of sysexits.h, so that scripts never mistake it for "changes pending").
    Usage = 64,
    /// A bug in fhirflow (EX_SOFTWARE of sysexits.h).
    Internal = 70,
    /// `fhirflow run` was cancelled by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
    Cancelled = 130,
}

impl Error {
    /// The exit status for this error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Invalid(_) => ExitStatus::Invalid,
            Error::Io { .. } => ExitStatus::Io,
            Error::Refused { .. } => ExitStatus::Refused,
            Error::Render { .. } => ExitStatus::Internal,
            Error::Usage(_) => ExitStatus::Usage,
            Error::Run(e) if e.is_usage() => ExitStatus::Usage,
            Error::Run(_) => ExitStatus::Io,
        }
    }
}
