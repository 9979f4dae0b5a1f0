//! The run store: SQLite in WAL mode at `.fhirflow/runs.db` next to the spec.
//!
//! Every state change of a run, a task or an attempt is written in its own transaction as it
//! happens, so a fhirflow that is killed leaves a store that tells the truth up to that moment:
//! its run and tasks still say `running`. The next fhirflow to open the store sees that the
//! run's process is gone and marks the run and its unfinished tasks `interrupted`.
//!
//! `synchronous = NORMAL` in WAL mode survives a crash of fhirflow itself (the OS keeps the
//! writes); only a power loss can drop the last few transactions, which the next start then
//! sees as a run that never finished.

use super::{RunState, TaskKey, TaskState};
use crate::spec::AwaitedState;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema version this fhirflow writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id           TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,
    logical_date TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    state        TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    resumes      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS run_pipelines (
    run_id       TEXT NOT NULL REFERENCES runs(id),
    pipeline     TEXT NOT NULL,
    position     INTEGER NOT NULL,
    logical_date TEXT NOT NULL,
    complete     INTEGER NOT NULL,
    PRIMARY KEY (run_id, pipeline)
);
CREATE INDEX IF NOT EXISTS run_pipelines_by_date ON run_pipelines (pipeline, logical_date);
CREATE TABLE IF NOT EXISTS tasks (
    run_id     TEXT NOT NULL REFERENCES runs(id),
    pipeline   TEXT NOT NULL,
    task       TEXT NOT NULL,
    position   INTEGER NOT NULL,
    state      TEXT NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    failure    TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (run_id, pipeline, task)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id      TEXT NOT NULL REFERENCES runs(id),
    pipeline    TEXT NOT NULL,
    task        TEXT NOT NULL,
    number      INTEGER NOT NULL,
    state       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    duration_ms INTEGER,
    exit_status TEXT,
    pid         INTEGER,
    log_path    TEXT NOT NULL,
    PRIMARY KEY (run_id, pipeline, task, number)
);
CREATE TABLE IF NOT EXISTS asset_events (
    run_id     TEXT NOT NULL REFERENCES runs(id),
    asset      TEXT NOT NULL,
    pipeline   TEXT NOT NULL,
    task       TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS asset_events_by_asset ON asset_events (asset, created_at);
";

/// Why the run store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("run store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// The `.fhirflow` folder could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store was written by a newer fhirflow whose schema this one does not know.
    #[error("run store {path} has schema version {found}; this fhirflow knows version {SCHEMA_VERSION}")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
    },
    /// A value in the store is not one this fhirflow writes.
    #[error("run store {path}: unexpected {what} {value:?}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was read.
        what: &'static str,
        /// The value.
        value: String,
    },
}

/// One pipeline of a run and the logical date it runs for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipelineRun {
    /// The pipeline id.
    pub pipeline: String,
    /// Its logical date in this run.
    pub logical_date: DateTime<Utc>,
    /// Whether every task of the pipeline is part of the run, so its success is the pipeline's.
    pub complete: bool,
}

/// A new run, as `begin_run` records it.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// The run id.
    pub id: &'a str,
    /// The spec, as given on the command line.
    pub spec: &'a str,
    /// The run's logical date.
    pub logical_date: DateTime<Utc>,
    /// The pipelines in run order, each with its logical date.
    pub pipelines: &'a [PipelineRun],
    /// The selected tasks in run order.
    pub tasks: &'a [TaskKey],
    /// Each pipeline's `max_active_runs`, by pipeline id.
    pub max_active_runs: &'a [(String, u32)],
}

/// A run as listed by `fhirflow runs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// The run id.
    pub id: String,
    /// The spec it ran.
    pub spec: String,
    /// Its state.
    pub state: RunState,
    /// The logical date given or defaulted when it started.
    pub logical_date: DateTime<Utc>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while running or when fhirflow died.
    pub ended_at: Option<DateTime<Utc>>,
    /// The pipelines, in run order.
    pub pipelines: Vec<PipelineRun>,
    /// How many tasks succeeded.
    pub tasks_succeeded: u32,
    /// How many tasks the run has.
    pub tasks_total: u32,
    /// How many times it was resumed.
    pub resumes: u32,
    /// The process that ran it last.
    #[serde(skip)]
    pub pid: u32,
}

/// A task of a run, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRecord {
    /// Which task.
    pub key: TaskKey,
    /// Its state.
    pub state: TaskState,
    /// Attempts made so far.
    pub attempts: u32,
    /// Why it failed, if it did.
    pub failure: Option<String>,
}

/// One attempt of a task, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptRecord {
    /// Which task.
    pub key: TaskKey,
    /// 1 for the first try.
    pub number: u32,
    /// Its state: running, success, failed, cancelled or interrupted.
    pub state: TaskState,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took, once it ended.
    pub duration: Option<Duration>,
    /// How it ended, such as `exit status 3` or `timed out after 1m`.
    pub exit_status: Option<String>,
    /// The log file.
    pub log_path: PathBuf,
    /// The attempt's process (and process group) id, for a subprocess that started.
    pub pid: Option<u32>,
}

/// A run that `max_active_runs` keeps from starting yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunsBusy {
    /// The pipeline at its limit.
    pub pipeline: String,
    /// Its active runs.
    pub active: Vec<String>,
    /// Its `max_active_runs`.
    pub limit: u32,
}

/// An open run store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// The store's database file under the `.fhirflow` folder `dir`.
pub fn database_path(dir: &Path) -> PathBuf {
    dir.join("runs.db")
}

/// A time as stored: RFC 3339 in UTC with milliseconds, so text order is time order.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_stamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// Whether process `pid` exists (a process we may not signal still exists).
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks that the process exists; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl Store {
    /// Opens (creating if needed) the store in the `.fhirflow` folder `dir`, and marks runs
    /// whose process is gone as `interrupted`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io { path: dir.to_owned(), source })?;
        let path = database_path(dir);
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite { path: path.clone(), source })?;
        let store = Store { conn, path };
        store.configure()?;
        store.recover_dead_runs()?;
        Ok(store)
    }

    /// Opens an existing store for reading only (`fhirflow runs`, sensors): `None` if there is none.
    pub fn open_existing(dir: &Path) -> Result<Option<Self>, StoreError> {
        let path = database_path(dir);
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite { path: path.clone(), source })?;
        let store = Store { conn, path };
        store.configure()?;
        Ok(Some(store))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite { path: self.path.clone(), source }
    }

    fn configure(&self) -> Result<(), StoreError> {
        let e = self.sqlite();
        // Another fhirflow may hold the write lock for a moment; wait rather than fail.
        self.conn.busy_timeout(Duration::from_secs(10)).map_err(&e)?;
        self.conn.pragma_update(None, "journal_mode", "WAL").map_err(&e)?;
        self.conn.pragma_update(None, "synchronous", "NORMAL").map_err(&e)?;
        self.conn.pragma_update(None, "foreign_keys", "ON").map_err(&e)?;
        let version: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(&e)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema { path: self.path.clone(), found: version });
        }
        if version < SCHEMA_VERSION {
            self.conn.execute_batch(SCHEMA).map_err(&e)?;
            self.conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(&e)?;
        }
        Ok(())
    }

    /// Marks runs left `running` by a process that no longer exists as `interrupted`, with
    /// their unfinished tasks and attempts. Returns their ids.
    pub fn recover_dead_runs(&self) -> Result<Vec<String>, StoreError> {
        let e = self.sqlite();
        let own = std::process::id();
        let mut stmt = self.conn.prepare("SELECT id, pid FROM runs WHERE state = 'running' ORDER BY id").map_err(&e)?;
        let running: Vec<(String, u32)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(&e)?.collect::<Result<_, _>>().map_err(&e)?;
        drop(stmt);
        // A run recorded with our own pid is from an earlier process that had it: we have
        // started none yet.
        let dead: Vec<String> =
            running.into_iter().filter(|(_, pid)| *pid == own || !process_alive(*pid)).map(|(id, _)| id).collect();
        for id in &dead {
            self.interrupt(id)?;
        }
        Ok(dead)
    }

    fn interrupt(&self, id: &str) -> Result<(), StoreError> {
        let e = self.sqlite();
        let now = stamp(Utc::now());
        let tx = self.unchecked_tx()?;
        tx.execute("UPDATE runs SET state = 'interrupted' WHERE id = ?1 AND state = 'running'", params![id])
            .map_err(&e)?;
        tx.execute(
            "UPDATE tasks SET state = 'interrupted', updated_at = ?2
             WHERE run_id = ?1 AND state IN ('pending', 'running', 'up_for_retry')",
            params![id, now],
        )
        .map_err(&e)?;
        tx.execute(
            "UPDATE attempts SET state = 'interrupted', exit_status = 'fhirflow stopped'
             WHERE run_id = ?1 AND state = 'running'",
            params![id],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)
    }

    /// A write transaction that takes the lock at once, so a check and the write after it are
    /// atomic across processes.
    fn unchecked_tx(&self) -> Result<rusqlite::Transaction<'_>, StoreError> {
        rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).map_err(self.sqlite())
    }

    /// Records a new run and its tasks as `pending`, unless a pipeline is at its
    /// `max_active_runs`: then nothing is written and the busy pipeline is returned.
    pub fn begin_run(&self, run: &NewRun<'_>) -> Result<Result<(), RunsBusy>, StoreError> {
        let e = self.sqlite();
        let tx = self.unchecked_tx()?;
        for (pipeline, limit) in run.max_active_runs {
            let active = Self::active_runs(&tx, pipeline).map_err(&e)?;
            if active.len() >= *limit as usize {
                return Ok(Err(RunsBusy { pipeline: pipeline.clone(), active, limit: *limit }));
            }
        }
        let now = stamp(Utc::now());
        tx.execute(
            "INSERT INTO runs (id, spec, logical_date, started_at, state, pid) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
            params![run.id, run.spec, stamp(run.logical_date), now, std::process::id()],
        )
        .map_err(&e)?;
        for (position, p) in run.pipelines.iter().enumerate() {
            tx.execute(
                "INSERT INTO run_pipelines (run_id, pipeline, position, logical_date, complete) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run.id, p.pipeline, position as i64, stamp(p.logical_date), p.complete],
            )
            .map_err(&e)?;
        }
        for (position, key) in run.tasks.iter().enumerate() {
            tx.execute(
                "INSERT INTO tasks (run_id, pipeline, task, position, state, updated_at) VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
                params![run.id, key.pipeline, key.task, position as i64, now],
            )
            .map_err(&e)?;
        }
        tx.commit().map_err(&e)?;
        Ok(Ok(()))
    }

    /// Runs of `pipeline` whose process is alive and still running.
    fn active_runs(conn: &Connection, pipeline: &str) -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(
            "SELECT r.id, r.pid FROM runs r JOIN run_pipelines p ON p.run_id = r.id
             WHERE p.pipeline = ?1 AND r.state = 'running' ORDER BY r.id",
        )?;
        let rows: Vec<(String, u32)> =
            stmt.query_map(params![pipeline], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        Ok(rows.into_iter().filter(|(_, pid)| process_alive(*pid)).map(|(id, _)| id).collect())
    }

    /// Takes over an ended run to resume it: the run is `running` again under this process,
    /// and its tasks that did not succeed are `pending`. Returns the run as it was.
    pub fn resume_run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let e = self.sqlite();
        let Some(before) = self.run(id)? else { return Ok(None) };
        if before.state == RunState::Running {
            return Ok(Some(before));
        }
        let now = stamp(Utc::now());
        let tx = self.unchecked_tx()?;
        tx.execute(
            "UPDATE runs SET state = 'running', pid = ?2, ended_at = NULL, resumes = resumes + 1 WHERE id = ?1",
            params![id, std::process::id()],
        )
        .map_err(&e)?;
        tx.execute(
            "UPDATE tasks SET state = 'pending', failure = NULL, updated_at = ?2 WHERE run_id = ?1 AND state != 'success'",
            params![id, now],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(Some(before))
    }

    /// Records a task's new state, and why it failed when it did.
    pub fn set_task_state(
        &self,
        run: &str,
        key: &TaskKey,
        state: TaskState,
        failure: Option<&str>,
    ) -> Result<(), StoreError> {
        let e = self.sqlite();
        self.conn
            .execute(
                "UPDATE tasks SET state = ?4, failure = ?5, updated_at = ?6 WHERE run_id = ?1 AND pipeline = ?2 AND task = ?3",
                params![run, key.pipeline, key.task, state.as_str(), failure, stamp(Utc::now())],
            )
            .map_err(&e)?;
        Ok(())
    }

    /// Records the start of an attempt and the task's `running` state, in one transaction.
    pub fn begin_attempt(
        &self,
        run: &str,
        key: &TaskKey,
        number: u32,
        started_at: DateTime<Utc>,
        log_path: &Path,
    ) -> Result<(), StoreError> {
        let e = self.sqlite();
        let tx = self.unchecked_tx()?;
        tx.execute(
            "INSERT OR REPLACE INTO attempts (run_id, pipeline, task, number, state, started_at, log_path)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6)",
            params![run, key.pipeline, key.task, number, stamp(started_at), log_path.to_string_lossy()],
        )
        .map_err(&e)?;
        tx.execute(
            "UPDATE tasks SET state = 'running', attempts = ?4, failure = NULL, updated_at = ?5
             WHERE run_id = ?1 AND pipeline = ?2 AND task = ?3",
            params![run, key.pipeline, key.task, number, stamp(started_at)],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)
    }

    /// Records the process id of a running attempt (for a person looking at a dead run).
    pub fn set_attempt_pid(&self, run: &str, key: &TaskKey, number: u32, pid: u32) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE attempts SET pid = ?5 WHERE run_id = ?1 AND pipeline = ?2 AND task = ?3 AND number = ?4",
                params![run, key.pipeline, key.task, number, pid],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }

    /// Records how an attempt ended and the task's state after it, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn end_attempt(
        &self,
        run: &str,
        key: &TaskKey,
        number: u32,
        attempt_state: TaskState,
        duration: Duration,
        exit_status: &str,
        task_state: TaskState,
        failure: Option<&str>,
        events: &[&str],
    ) -> Result<(), StoreError> {
        let e = self.sqlite();
        let tx = self.unchecked_tx()?;
        // In the same transaction as the success: an event is recorded if and only if its
        // producer's success is.
        for asset in events {
            tx.execute(
                "INSERT INTO asset_events (run_id, asset, pipeline, task, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![run, asset, key.pipeline, key.task, stamp(Utc::now())],
            )
            .map_err(&e)?;
        }
        tx.execute(
            "UPDATE attempts SET state = ?5, duration_ms = ?6, exit_status = ?7
             WHERE run_id = ?1 AND pipeline = ?2 AND task = ?3 AND number = ?4",
            params![
                run,
                key.pipeline,
                key.task,
                number,
                attempt_state.as_str(),
                i64::try_from(duration.as_millis()).unwrap_or(i64::MAX),
                exit_status
            ],
        )
        .map_err(&e)?;
        tx.execute(
            "UPDATE tasks SET state = ?4, failure = ?5, updated_at = ?6 WHERE run_id = ?1 AND pipeline = ?2 AND task = ?3",
            params![run, key.pipeline, key.task, task_state.as_str(), failure, stamp(Utc::now())],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)
    }

    /// The asset events of run `run`: (asset, pipeline, task), in the order they happened.
    pub fn asset_events(&self, run: &str) -> Result<Vec<(String, String, String)>, StoreError> {
        let e = self.sqlite();
        let mut stmt = self
            .conn
            .prepare("SELECT asset, pipeline, task FROM asset_events WHERE run_id = ?1 ORDER BY rowid")
            .map_err(&e)?;
        stmt.query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)
    }

    /// Records the end of a run.
    pub fn end_run(&self, run: &str, state: RunState) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET state = ?2, ended_at = ?3 WHERE id = ?1",
                params![run, state.as_str(), stamp(Utc::now())],
            )
            .map_err(self.sqlite())?;
        Ok(())
    }

    fn corrupt(&self, what: &'static str, value: &str) -> StoreError {
        StoreError::Corrupt { path: self.path.clone(), what, value: value.to_owned() }
    }

    fn time(&self, text: &str) -> Result<DateTime<Utc>, StoreError> {
        parse_stamp(text).ok_or_else(|| self.corrupt("time", text))
    }

    /// One run, by id.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        Ok(self.runs_where("WHERE r.id = ?1", params![id])?.pop())
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.runs_where("", params![])
    }

    fn runs_where(&self, filter: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<RunRecord>, StoreError> {
        let e = self.sqlite();
        let sql = format!(
            "SELECT r.id, r.spec, r.state, r.logical_date, r.started_at, r.ended_at, r.resumes, r.pid,
                    (SELECT count(*) FROM tasks t WHERE t.run_id = r.id AND t.state = 'success'),
                    (SELECT count(*) FROM tasks t WHERE t.run_id = r.id)
             FROM runs r {filter} ORDER BY r.started_at DESC, r.id DESC"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(&e)?;
        type Row = (String, String, String, String, String, Option<String>, u32, u32, u32, u32);
        let rows: Vec<Row> = stmt
            .query_map(args, |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        let mut out = Vec::new();
        for (id, spec, state, logical_date, started_at, ended_at, resumes, pid, succeeded, total) in rows {
            let state = RunState::parse(&state).ok_or_else(|| self.corrupt("run state", &state))?;
            let pipelines = self.run_pipelines(&id)?;
            out.push(RunRecord {
                logical_date: self.time(&logical_date)?,
                started_at: self.time(&started_at)?,
                ended_at: ended_at.as_deref().map(|t| self.time(t)).transpose()?,
                id,
                spec,
                state,
                pipelines,
                tasks_succeeded: succeeded,
                tasks_total: total,
                resumes,
                pid,
            });
        }
        Ok(out)
    }

    fn run_pipelines(&self, run: &str) -> Result<Vec<PipelineRun>, StoreError> {
        let e = self.sqlite();
        let mut stmt = self
            .conn
            .prepare("SELECT pipeline, logical_date, complete FROM run_pipelines WHERE run_id = ?1 ORDER BY position")
            .map_err(&e)?;
        let rows: Vec<(String, String, bool)> = stmt
            .query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        rows.into_iter()
            .map(|(pipeline, date, complete)| Ok(PipelineRun { pipeline, logical_date: self.time(&date)?, complete }))
            .collect()
    }

    /// The tasks of a run, in run order.
    pub fn tasks(&self, run: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let e = self.sqlite();
        let mut stmt = self
            .conn
            .prepare("SELECT pipeline, task, state, attempts, failure FROM tasks WHERE run_id = ?1 ORDER BY position")
            .map_err(&e)?;
        let rows: Vec<(String, String, String, u32, Option<String>)> = stmt
            .query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        rows.into_iter()
            .map(|(pipeline, task, state, attempts, failure)| {
                let state = TaskState::parse(&state).ok_or_else(|| self.corrupt("task state", &state))?;
                Ok(TaskRecord { key: TaskKey { pipeline, task }, state, attempts, failure })
            })
            .collect()
    }

    /// The attempts of a run, by task in run order, then by number.
    pub fn attempts(&self, run: &str) -> Result<Vec<AttemptRecord>, StoreError> {
        let e = self.sqlite();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.pipeline, a.task, a.number, a.state, a.started_at, a.duration_ms, a.exit_status, a.log_path,
                        a.pid
                 FROM attempts a JOIN tasks t ON t.run_id = a.run_id AND t.pipeline = a.pipeline AND t.task = a.task
                 WHERE a.run_id = ?1 ORDER BY t.position, a.number",
            )
            .map_err(&e)?;
        type Row = (String, String, u32, String, String, Option<i64>, Option<String>, String, Option<u32>);
        let rows: Vec<Row> = stmt
            .query_map(params![run], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?))
            })
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        rows.into_iter()
            .map(|(pipeline, task, number, state, started_at, duration_ms, exit_status, log_path, pid)| {
                Ok(AttemptRecord {
                    key: TaskKey { pipeline, task },
                    number,
                    state: TaskState::parse(&state).ok_or_else(|| self.corrupt("attempt state", &state))?,
                    started_at: self.time(&started_at)?,
                    duration: duration_ms.map(|ms| Duration::from_millis(ms.max(0) as u64)),
                    exit_status,
                    log_path: PathBuf::from(log_path),
                    pid,
                })
            })
            .collect()
    }

    /// What the store says about `pipeline`'s run at `logical_date` (or its task `task` in
    /// such a run): what an `ExternalTaskSensor` asks the Airflow database.
    pub fn awaited(
        &self,
        pipeline: &str,
        task: Option<&str>,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<AwaitedState>, StoreError> {
        let e = self.sqlite();
        let date = stamp(logical_date);
        // One row per run: (run state, the task's state or the whole run's, whether it can
        // still change). A whole run succeeded when each of its tasks succeeded or was skipped.
        let rows: Vec<(String, String, bool)> = match task {
            Some(task) => {
                let mut stmt = self
                    .conn
                    .prepare(
                        "SELECT r.state, t.state, t.state IN ('pending', 'running', 'up_for_retry')
                         FROM tasks t
                         JOIN run_pipelines p ON p.run_id = t.run_id AND p.pipeline = t.pipeline
                         JOIN runs r ON r.id = t.run_id
                         WHERE t.pipeline = ?1 AND t.task = ?2 AND p.logical_date = ?3",
                    )
                    .map_err(&e)?;
                stmt.query_map(params![pipeline, task, date], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(&e)?
                    .collect::<Result<_, _>>()
                    .map_err(&e)?
            }
            None => {
                let mut stmt = self
                    .conn
                    .prepare(
                        "SELECT r.state,
                                CASE WHEN NOT EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = r.id
                                                      AND t.pipeline = p.pipeline
                                                      AND t.state NOT IN ('success', 'skipped'))
                                     THEN 'success' ELSE 'failed' END,
                                EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = r.id AND t.pipeline = p.pipeline
                                        AND t.state IN ('pending', 'running', 'up_for_retry'))
                         FROM run_pipelines p JOIN runs r ON r.id = p.run_id
                         WHERE p.pipeline = ?1 AND p.logical_date = ?2 AND p.complete",
                    )
                    .map_err(&e)?;
                stmt.query_map(params![pipeline, date], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .map_err(&e)?
                    .collect::<Result<_, _>>()
                    .map_err(&e)?
            }
        };
        let going = rows.iter().any(|(run, _, unfinished)| run == "running" && *unfinished);
        // Of the runs at that date, the most favourable final state counts, as a rerun that
        // succeeded counts in Airflow; while one is still going, a failure may yet be retried.
        let best = [AwaitedState::Success, AwaitedState::Skipped, AwaitedState::UpstreamFailed, AwaitedState::Failed]
            .into_iter()
            .find(|wanted| rows.iter().any(|(_, state, unfinished)| !unfinished && state == wanted.as_str()));
        Ok(match best {
            Some(AwaitedState::Success) => Some(AwaitedState::Success),
            _ if going => None,
            // Cancelled, interrupted, or left unfinished by a run that ended: no success.
            None if !rows.is_empty() => Some(AwaitedState::Failed),
            other => other,
        })
    }

    /// Why `depends_on_past` holds `task` of `pipeline` back at `logical_date`, as Airflow's
    /// `PrevDagrunDep` decides: the pipeline's latest earlier logical date must have an instance
    /// of the task that succeeded or was skipped (any of the runs at that date). `None` when it
    /// has, and when the task never ran before (Airflow's `ignore_first_depends_on_past`).
    pub fn past_blocks(
        &self,
        pipeline: &str,
        task: &str,
        logical_date: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let e = self.sqlite();
        let date = stamp(logical_date);
        let previous: Option<String> = self
            .conn
            .query_row(
                "SELECT MAX(logical_date) FROM run_pipelines WHERE pipeline = ?1 AND logical_date < ?2",
                params![pipeline, date],
                |r| r.get(0),
            )
            .map_err(&e)?;
        let Some(previous) = previous else { return Ok(None) };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.run_id, t.state FROM tasks t
                 JOIN run_pipelines p ON p.run_id = t.run_id AND p.pipeline = t.pipeline
                 WHERE t.pipeline = ?1 AND t.task = ?2 AND p.logical_date = ?3 ORDER BY t.run_id",
            )
            .map_err(&e)?;
        let rows: Vec<(String, String)> = stmt
            .query_map(params![pipeline, task, previous], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        if rows.iter().any(|(_, state)| state == "success" || state == "skipped") {
            return Ok(None);
        }
        if rows.is_empty() {
            let ran_before: bool = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM tasks t
                     JOIN run_pipelines p ON p.run_id = t.run_id AND p.pipeline = t.pipeline
                     WHERE t.pipeline = ?1 AND t.task = ?2 AND p.logical_date < ?3)",
                    params![pipeline, task, date],
                    |r| r.get(0),
                )
                .map_err(&e)?;
            return Ok(ran_before.then(|| format!("depends_on_past: the run for {previous} has no `{task}`")));
        }
        let (run, state) = rows.last().expect("not empty");
        Ok(Some(format!(
            "depends_on_past: `{task}` ended {state} in the previous run ({run}, logical date {previous}); resume or rerun that one first"
        )))
    }

    /// Whether run `id` exists.
    pub fn has_run(&self, id: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM runs WHERE id = ?1", params![id], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(self.sqlite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str, t: &str) -> TaskKey {
        TaskKey { pipeline: p.to_owned(), task: t.to_owned() }
    }

    fn date(text: &str) -> DateTime<Utc> {
        parse_stamp(text).expect("date")
    }

    fn begin(store: &Store, id: &str, logical: &str, tasks: &[TaskKey]) -> Result<(), RunsBusy> {
        let pipelines = [PipelineRun { pipeline: "up".into(), logical_date: date(logical), complete: true }];
        store
            .begin_run(&NewRun {
                id,
                spec: "p.yaml",
                logical_date: date(logical),
                pipelines: &pipelines,
                tasks,
                max_active_runs: &[("up".to_owned(), 1)],
            })
            .expect("begin")
    }

    #[test]
    fn a_run_round_trips_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tasks = [key("up", "a"), key("up", "b")];
        begin(&store, "r1", "2026-01-01T00:00:00Z", &tasks).unwrap();
        let t0 = date("2026-01-01T00:00:01Z");
        store.begin_attempt("r1", &tasks[0], 1, t0, Path::new("a.1.log")).unwrap();
        store
            .end_attempt(
                "r1",
                &tasks[0],
                1,
                TaskState::Failed,
                Duration::from_millis(1500),
                "exit status 3",
                TaskState::UpForRetry,
                None,
                &[],
            )
            .unwrap();
        store.begin_attempt("r1", &tasks[0], 2, t0, Path::new("a.2.log")).unwrap();
        store
            .end_attempt(
                "r1",
                &tasks[0],
                2,
                TaskState::Success,
                Duration::ZERO,
                "exit status 0",
                TaskState::Success,
                None,
                &[],
            )
            .unwrap();
        store.set_task_state("r1", &tasks[1], TaskState::UpstreamFailed, Some("x")).unwrap();
        store.end_run("r1", RunState::Failed).unwrap();

        let reopened = Store::open(dir.path()).unwrap();
        let run = reopened.run("r1").unwrap().expect("run");
        assert_eq!(run.state, RunState::Failed);
        assert_eq!((run.tasks_succeeded, run.tasks_total), (1, 2));
        assert_eq!(run.pipelines[0].pipeline, "up");
        let recorded = reopened.tasks("r1").unwrap();
        assert_eq!(recorded[0].state, TaskState::Success);
        assert_eq!(recorded[0].attempts, 2);
        assert_eq!(recorded[1].state, TaskState::UpstreamFailed);
        assert_eq!(recorded[1].failure.as_deref(), Some("x"));
        let attempts = reopened.attempts("r1").unwrap();
        assert_eq!(attempts.len(), 2);
        assert_eq!(attempts[0].exit_status.as_deref(), Some("exit status 3"));
        assert_eq!(attempts[0].duration, Some(Duration::from_millis(1500)));
        let journal: String =
            reopened.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("journal mode");
        assert_eq!(journal, "wal");
    }

    #[test]
    fn max_active_runs_holds_a_second_run_until_the_first_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tasks = [key("up", "a")];
        begin(&store, "r1", "2026-01-01T00:00:00Z", &tasks).unwrap();
        let busy = begin(&store, "r2", "2026-01-02T00:00:00Z", &tasks).expect_err("busy");
        assert_eq!(busy.active, ["r1"]);
        assert!(!store.has_run("r2").unwrap(), "nothing written for the held run");
        store.end_run("r1", RunState::Success).unwrap();
        begin(&store, "r2", "2026-01-02T00:00:00Z", &tasks).unwrap();
    }

    #[test]
    fn runs_of_a_dead_process_are_interrupted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tasks = [key("up", "a"), key("up", "b")];
        begin(&store, "r1", "2026-01-01T00:00:00Z", &tasks).unwrap();
        store.begin_attempt("r1", &tasks[0], 1, Utc::now(), Path::new("a.1.log")).unwrap();
        // A pid that cannot exist: above the kernel's maximum.
        store.conn.execute("UPDATE runs SET pid = 2147483647", []).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.run("r1").unwrap().unwrap().state, RunState::Interrupted);
        let states: Vec<TaskState> = store.tasks("r1").unwrap().iter().map(|t| t.state).collect();
        assert_eq!(states, [TaskState::Interrupted, TaskState::Interrupted]);
        assert_eq!(store.attempts("r1").unwrap()[0].state, TaskState::Interrupted);

        let before = store.resume_run("r1").unwrap().expect("run");
        assert_eq!(before.state, RunState::Interrupted);
        let run = store.run("r1").unwrap().unwrap();
        assert_eq!((run.state, run.resumes), (RunState::Running, 1));
        assert!(store.tasks("r1").unwrap().iter().all(|t| t.state == TaskState::Pending));
    }

    #[test]
    fn sensors_see_successes_at_the_aligned_date_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tasks = [key("up", "a")];
        let at = date("2026-01-01T00:00:00Z");
        assert_eq!(store.awaited("up", Some("a"), at).unwrap(), None);
        begin(&store, "r1", "2026-01-01T00:00:00Z", &tasks).unwrap();
        assert_eq!(store.awaited("up", None, at).unwrap(), None);
        store.set_task_state("r1", &tasks[0], TaskState::Failed, Some("exit status 1")).unwrap();
        store.end_run("r1", RunState::Failed).unwrap();
        assert_eq!(store.awaited("up", Some("a"), at).unwrap(), Some(AwaitedState::Failed));
        assert_eq!(store.awaited("up", None, at).unwrap(), Some(AwaitedState::Failed));
        begin(&store, "r2", "2026-01-01T00:00:00Z", &tasks).unwrap();
        store.set_task_state("r2", &tasks[0], TaskState::Success, None).unwrap();
        assert_eq!(store.awaited("up", Some("a"), at).unwrap(), Some(AwaitedState::Success));
        assert_eq!(store.awaited("up", None, at).unwrap(), Some(AwaitedState::Success));
        let other_day = date("2026-01-02T00:00:00Z");
        assert_eq!(store.awaited("up", Some("a"), other_day).unwrap(), None);
    }

    #[test]
    fn a_skipped_task_is_a_final_state_and_its_run_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tasks = [key("up", "load"), key("up", "mark")];
        let at = date("2026-01-01T00:00:00Z");
        begin(&store, "r1", "2026-01-01T00:00:00Z", &tasks).unwrap();
        store.set_task_state("r1", &tasks[0], TaskState::Skipped, Some("nothing new")).unwrap();
        store.set_task_state("r1", &tasks[1], TaskState::Skipped, Some("upstream load skipped")).unwrap();
        store.end_run("r1", RunState::Success).unwrap();
        assert_eq!(store.awaited("up", Some("mark"), at).unwrap(), Some(AwaitedState::Skipped));
        assert_eq!(store.awaited("up", None, at).unwrap(), Some(AwaitedState::Success));
    }
}
