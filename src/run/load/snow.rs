//! S3 → Snowflake loads (cargo feature `snowflake`): the SQL of the Airflow DAGs
//! ([`crate::emit::snowflake`]), sent with snowflake-connector-rs.
//!
//! The Load step lists the bucket itself (objects newer than the watermark, oldest first, at
//! most `batch_size`), then in one transaction runs `COPY INTO … FILES = (…)` through the
//! spec's external stage and appends the watermark: the watermark moves only with a COPY that
//! succeeded. Snowflake's load history skips a file loaded before, so a rerun never loads a
//! file twice either.

use super::{LoadContext, LoadError, SourceFile, StepOutcome, Watermark, check_layouts, s3, setting};
use crate::emit::snowflake as sql;
use crate::graph::{LoadPlan, LoadSource, LoadStep};
use crate::spec::{Identifier, TableName};
use snowflake_connector_rs::{
    AuthConfig, CellValue, Client, ClientConfig, EndpointConfig, ErrorKind, Session, SessionConfig, Statement,
};

/// Runs `step` of `plan` into the Snowflake account of connection `connection`, through `stage`.
pub async fn run(
    plan: &LoadPlan,
    step: LoadStep,
    connection: &Identifier,
    stage: &TableName,
    ctx: &mut LoadContext<'_>,
) -> Result<StepOutcome, LoadError> {
    let LoadSource::S3 { connection: source, bucket, .. } = &plan.source else {
        return Err(LoadError::NotRunnable {
            task: plan.task_id(step).to_owned(),
            stage: plan.stage.to_string(),
            what: "local folders into Snowflake (a COPY reads from S3 through the stage)".to_owned(),
        });
    };
    let session = connect(plan, connection, ctx).await?;
    let fail = |e: snowflake_connector_rs::Error| warehouse_error(plan, connection, e);
    if step == LoadStep::CreateTables {
        for ddl in sql::create_tables(plan) {
            session.query(ddl).await.map_err(fail)?;
        }
    }
    // Tables that existed before the first load must have the spec's columns: checked before
    // any step reads or writes them.
    let found = [
        columns(&session, &plan.table).await.map_err(fail)?,
        columns(&session, &plan.watermark_table).await.map_err(fail)?,
    ];
    check_layouts(plan, &found, true)?;
    match step {
        LoadStep::CreateTables => {
            ctx.log.note(&format!("tables {} and {} are ready", plan.table, plan.watermark_table));
        }
        LoadStep::GetWatermark | LoadStep::UpdateWatermark => {
            let mark = watermark(&session, plan).await.map_err(fail)?;
            ctx.log.note(&match mark {
                Some(m) => format!("watermark of {}: {} {}", plan.stage, m.last_modified, m.last_key),
                None => format!("no watermark yet for {}", plan.stage),
            });
        }
        LoadStep::ListFiles | LoadStep::Load => {
            let mark = watermark(&session, plan).await.map_err(fail)?;
            let (client, bucket) = s3::for_connection(plan, ctx, source, bucket)?;
            let listed = s3::list(&client, &bucket, &plan.prefix).await.map_err(|message| LoadError::Source {
                stage: plan.stage.to_string(),
                source_name: format!("s3://{bucket}/"),
                message,
            })?;
            let mut batch: Vec<SourceFile> =
                listed.into_iter().filter(|f| mark.as_ref().is_none_or(|m| f.watermark() > *m)).collect();
            let left = batch.len().saturating_sub(plan.batch_size as usize);
            if step == LoadStep::ListFiles {
                ctx.log.note(&format!(
                    "{} new file(s) in s3://{bucket}/{}; a run loads up to {}",
                    batch.len(),
                    plan.prefix,
                    plan.batch_size
                ));
                return Ok(StepOutcome::Done);
            }
            batch.truncate(plan.batch_size as usize);
            let Some(newest) = batch.iter().map(SourceFile::watermark).max() else {
                let why = format!("nothing new in s3://{bucket}/{}", plan.prefix);
                ctx.log.note(&why);
                return Ok(StepOutcome::NothingNew(why));
            };
            let copy = sql::copy_files(plan, stage, batch.iter().map(|f| f.key.as_str()));
            let (loaded, skipped) = copy_and_mark(&session, plan, &copy, &newest, batch.len()).await.map_err(fail)?;
            ctx.log.note(&format!(
                "COPY INTO {}: {loaded} file(s) loaded, {skipped} loaded before; {left} left for later runs; watermark {} {}",
                plan.table, newest.last_modified, newest.last_key
            ));
        }
    }
    Ok(StepOutcome::Done)
}

/// `BEGIN; COPY …; INSERT watermark; COMMIT`, or `ROLLBACK` on any error. Returns the files the
/// COPY loaded and those it skipped as loaded before.
async fn copy_and_mark(
    session: &Session,
    plan: &LoadPlan,
    copy: &str,
    newest: &Watermark,
    files: usize,
) -> snowflake_connector_rs::Result<(usize, usize)> {
    session.query("BEGIN").await?;
    let result = async {
        let rows: Vec<snowflake_connector_rs::DynamicRow> = session.query(copy.to_owned()).await?.collect().await?;
        let status = |row: &snowflake_connector_rs::DynamicRow| match row.value("status") {
            Ok(CellValue::String(s)) => s.to_ascii_uppercase(),
            _ => String::new(),
        };
        let loaded = rows.iter().filter(|r| status(r) == "LOADED").count();
        let skipped = rows.iter().filter(|r| status(r) == "LOAD_SKIPPED").count();
        let insert = sql::update_watermark(plan, |_| "?".to_owned());
        session
            .query(
                Statement::new(insert)
                    .bind(newest.last_modified.clone())
                    .bind(newest.last_key.clone())
                    .bind(files as i64),
            )
            .await?;
        session.query("COMMIT").await?;
        Ok((loaded, skipped))
    }
    .await;
    if result.is_err() {
        let _ = session.query("ROLLBACK").await;
    }
    result
}

/// The column names of `table`, as Snowflake stores them (`DESCRIBE TABLE`'s first column).
async fn columns(session: &Session, table: &TableName) -> snowflake_connector_rs::Result<Vec<String>> {
    let rows: Vec<snowflake_connector_rs::DynamicRow> = session.query(sql::describe(table)).await?.collect().await?;
    Ok(rows
        .iter()
        .filter_map(|row| match row.value_at(0) {
            Ok(CellValue::String(name)) => Some(name.clone()),
            _ => None,
        })
        .collect())
}

async fn watermark(session: &Session, plan: &LoadPlan) -> snowflake_connector_rs::Result<Option<Watermark>> {
    let rows: Vec<(Option<String>, Option<String>)> =
        session.query_as(sql::get_watermark(plan)).await?.collect().await?;
    Ok(rows.into_iter().next().map(|(modified, key)| Watermark {
        last_modified: modified.unwrap_or_default(),
        last_key: key.unwrap_or_default(),
    }))
}

fn warehouse_error(plan: &LoadPlan, connection: &Identifier, e: snowflake_connector_rs::Error) -> LoadError {
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        message.push_str(&format!(": {c}"));
        cause = c.source();
    }
    let stage = plan.stage.to_string();
    if e.kind() == ErrorKind::Auth {
        // Wrong credentials stay wrong: not retried.
        return LoadError::Config {
            stage,
            message: format!("Snowflake connection `{connection}` login failed: {message}"),
        };
    }
    LoadError::Warehouse { stage, warehouse: format!("Snowflake connection `{connection}`"), message }
}

async fn connect(plan: &LoadPlan, connection: &Identifier, ctx: &LoadContext<'_>) -> Result<Session, LoadError> {
    let spec = ctx.spec;
    let conn = spec.connections.get(connection.as_str());
    let get = |name: &str, fallback: Option<&Identifier>| setting(spec, connection, name, fallback.map(|i| i.as_str()));
    let required = |name: &str| {
        get(name, None).ok_or_else(|| {
            let named = conn
                .and_then(|c| c.env.get(name))
                .map(|v| format!("set ${}", v.0))
                .unwrap_or_else(|| format!("name an environment variable in `connections.{connection}.env.{name}`"));
            LoadError::Config {
                stage: plan.stage.to_string(),
                message: format!("no Snowflake {name} for connection `{connection}`: {named}"),
            }
        })
    };
    let (account, user, password) = (required("account")?, required("user")?, required("password")?);
    let mut session = SessionConfig::new();
    if let Some(database) = get("database", conn.and_then(|c| c.database.as_ref())) {
        session = session.with_database(database);
    }
    if let Some(schema) = get("schema", None) {
        session = session.with_schema(schema);
    }
    if let Some(warehouse) = get("warehouse", conn.and_then(|c| c.warehouse.as_ref())) {
        session = session.with_warehouse(warehouse);
    }
    if let Some(role) = get("role", conn.and_then(|c| c.role.as_ref())) {
        session = session.with_role(role);
    }
    let mut config = ClientConfig::new(user, account, AuthConfig::password(password)).with_session(session);
    if let Some(base) = get("base_url", None) {
        let url = url::Url::parse(&base).map_err(|e| LoadError::Config {
            stage: plan.stage.to_string(),
            message: format!("Snowflake base_url {base:?} of connection `{connection}`: {e}"),
        })?;
        config = config.with_endpoint(EndpointConfig::custom_base_url(url));
    }
    let client = Client::new(config).map_err(|e| warehouse_error(plan, connection, e))?;
    client.create_session().await.map_err(|e| warehouse_error(plan, connection, e))
}
