//! S3 sources (cargo feature `s3`): list with ListObjectsV2, download with GetObject.

#![cfg_attr(not(any(feature = "duckdb", feature = "snowflake")), allow(dead_code))]

use super::{LoadContext, LoadError, SourceFile, setting};
use crate::graph::LoadPlan;
use crate::spec::Identifier;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::DisplayErrorContext;
use chrono::{DateTime, Utc};
use std::path::Path;

/// Where and how to reach the bucket: the spec's values, overridden by the variables
/// `connections.<name>.env` names, then the usual `AWS_*` variables.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// The bucket.
    pub bucket: String,
    /// The region (`us-east-1` when nothing says).
    pub region: String,
    /// A custom endpoint, such as `http://127.0.0.1:9000` (path-style requests are used then).
    pub endpoint_url: Option<String>,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// A session token, for temporary credentials.
    pub session_token: Option<String>,
}

/// An S3 client for `settings`. The SDK's standard retries (3 attempts) apply to each request.
pub fn client(settings: &S3Settings) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .credentials_provider(Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.clone(),
            settings.session_token.clone(),
            None,
            "fhirflow",
        ));
    if let Some(endpoint) = &settings.endpoint_url {
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

fn describe<E: std::error::Error>(e: E) -> String {
    DisplayErrorContext(e).to_string()
}

/// Every object under `prefix` (paginated ListObjectsV2), sorted by (last modified, key). The
/// `path` of each is empty until [`download`].
pub async fn list(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Result<Vec<SourceFile>, String> {
    let mut out = Vec::new();
    let mut pages = client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(describe)?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            if key.ends_with('/') {
                continue;
            }
            let modified = object
                .last_modified()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
                .unwrap_or_default();
            out.push(SourceFile { key: key.to_owned(), path: Default::default(), modified });
        }
    }
    out.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
    Ok(out)
}

/// Downloads each file of `batch` into `dir` as `<n>.json` (never by its key, which could hold
/// `..` or DuckDB pattern characters) and sets its `path`.
pub async fn download(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    batch: &mut [SourceFile],
    dir: &Path,
) -> Result<(), String> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (n, file) in batch.iter_mut().enumerate() {
        let object = client
            .get_object()
            .bucket(bucket)
            .key(&file.key)
            .send()
            .await
            .map_err(|e| format!("GetObject {}: {}", file.key, describe(e)))?;
        let path = dir.join(format!("{n:06}.json"));
        let mut out =
            tokio::fs::File::create(&path).await.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let mut body = object.body.into_async_read();
        tokio::io::copy_buf(&mut body, &mut out).await.map_err(|e| format!("reading {}: {e}", file.key))?;
        file.path = path;
    }
    Ok(())
}

/// The client and bucket of the s3 connection `connection` (spec bucket `bucket`): settings from
/// the variables its `env` names, then the usual `AWS_*` variables, then the spec.
pub fn for_connection(
    plan: &LoadPlan,
    ctx: &LoadContext<'_>,
    connection: &Identifier,
    bucket: &str,
) -> Result<(aws_sdk_s3::Client, String), LoadError> {
    let spec = ctx.spec;
    let conn = spec.connections.get(connection.as_str());
    let get = |name: &str, fallback: Option<&str>, aws: &[&str]| {
        setting(spec, connection, name, None)
            .or_else(|| aws.iter().find_map(|v| std::env::var(v).ok().filter(|v| !v.is_empty())))
            .or_else(|| fallback.map(str::to_owned))
    };
    let missing = |name: &str, aws: &str| {
        let named = conn.and_then(|c| c.env.get(name)).map(|v| format!("${}, ", v.0)).unwrap_or_default();
        LoadError::Config {
            stage: plan.stage.to_string(),
            message: format!(
                "no S3 {name} for connection `{connection}`: set {named}${aws}, or name a variable in `connections.{connection}.env.{name}`"
            ),
        }
    };
    let settings = S3Settings {
        bucket: setting(spec, connection, "bucket", Some(bucket)).unwrap_or_else(|| bucket.to_owned()),
        region: get(
            "region",
            conn.and_then(|c| c.region.as_deref()).or(Some("us-east-1")),
            &["AWS_REGION", "AWS_DEFAULT_REGION"],
        )
        .unwrap_or_default(),
        endpoint_url: get("endpoint_url", None, &["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]),
        access_key_id: get("access_key_id", None, &["AWS_ACCESS_KEY_ID"])
            .ok_or_else(|| missing("access_key_id", "AWS_ACCESS_KEY_ID"))?,
        secret_access_key: get("secret_access_key", None, &["AWS_SECRET_ACCESS_KEY"])
            .ok_or_else(|| missing("secret_access_key", "AWS_SECRET_ACCESS_KEY"))?,
        session_token: get("session_token", None, &["AWS_SESSION_TOKEN"]),
    };
    Ok((client(&settings), settings.bucket))
}
