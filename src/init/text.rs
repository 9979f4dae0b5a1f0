//! The starter spec's text, built line by line so that its order and bytes never vary.
//!
//! Every value and every key that comes from the dbt project is a double-quoted scalar
//! ([`quoted`]), so no name can be read as another type (`null`, `true`) or end a line; comments
//! carry no text from the project.

use super::project::Project;
use super::{SCHEMA_FILE_NAME, identifier_from};
use crate::emit::literal::quoted;
use std::fmt::Write as _;

/// The spec for `project`, whose folder is `project_dir` from the spec's folder.
pub(super) fn render(project: &Project, project_dir: &str) -> String {
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line(&format!("# yaml-language-server: $schema={SCHEMA_FILE_NAME}"));
    line("# Starter spec written by `fhirflow init --from-dbt` from the dbt project's dbt_project.yml and");
    line("# model folders: a nightly `dbt build` (the recommended start) and a layered variant that builds");
    line("# one layer per task. `fhirflow plan` shows what `fhirflow apply` would write.");
    line("version: 1");
    line("");
    line("defaults:");
    line(&format!("  owner: {}", quoted(&project.name)));
    line("  retries: 2");
    line(&format!("  retry_delay: {}", quoted("5m")));
    line(&format!("  start_date: {}", quoted("2026-01-01")));
    line(&format!("  timezone: {}", quoted("UTC")));
    line("");
    line("dbt:");
    line(&format!("  project_dir: {}", quoted(project_dir)));
    line(&format!("  profiles_dir: {}", quoted(project_dir)));
    if let Some(target) = &project.target {
        line(&format!("  target: {}", quoted(target)));
    }
    if project.own_selectors {
        line("  # The project has its own selectors.yml, which fhirflow does not replace.");
        line("  selectors: false");
    }
    line("  # Where Airflow workers see the project, when it is not at the same place relative to the DAGs:");
    line("  # deploy: {project_dir: /opt/airflow/dbt, profiles_dir: /opt/airflow/.dbt}");
    line("");
    line("airflow:");
    line(&format!("  dags_folder: {}", quoted("dags")));
    line("");
    if !project.layers.is_empty() {
        line("# One layer per top-level model folder, in build order. fhirflow tags each layer's models with");
        line("# the layer's name (tag:<layer>) in the properties YAML it writes there. Say in each");
        line("# description what the layer is for: it becomes the description of the layer's selector.");
        if project.layers.iter().any(|l| l.project_properties) {
            line("# A layer with `properties: project` is left to the project's own properties files.");
        }
        line("layers:");
        for layer in &project.layers {
            line(&format!("  {}:", quoted(&layer.name)));
            let description = if layer.root {
                format!("The models directly in {}/.", layer.path)
            } else {
                format!("The models in {}/.", layer.path)
            };
            line(&format!("    description: {}", quoted(&description)));
            if layer.path != format!("models/{}", layer.name) {
                line(&format!("    path: {}", quoted(&layer.path)));
            }
            if layer.project_properties {
                line("    # The project's own properties files document models of this layer; dbt takes one entry");
                line("    # per model, so fhirflow writes none here and selects the layer by its folder.");
                line(&format!("    properties: {}", quoted("project")));
            }
            line("    models:");
            for model in &layer.models {
                line(&format!("      - {}", quoted(model)));
            }
        }
        line("");
    }
    let tags = tags(&project.name);
    // Pipeline ids are `<project>_nightly` and `<project>_layered`: at most 200 characters.
    let base = identifier_from(&project.ident, 200 - "_layered".len());
    line("pipelines:");
    line("  # Recommended start: install packages, then build the whole project (seeds, models, snapshots");
    line("  # and tests in DAG order) in one dbt build.");
    line(&format!("  {}:", quoted(&format!("{base}_nightly"))));
    line(&format!("    description: {}", quoted(&format!("Nightly dbt build of the whole {} project.", project.name))));
    schedule(&mut line, &tags);
    line("    stages:");
    dbt_stage(&mut line, "dbt_deps", "deps", None, None);
    dbt_stage(&mut line, "dbt_build", "build", None, Some("dbt_deps"));
    if !project.layers.is_empty() {
        line("");
        if project.layers.iter().any(|l| l.project_properties) {
            line("  # Iteration: one dbt build per layer, selected by tag (or by folder for `properties: project`),");
            line("  # so a failing layer is visible (and retried) on its own and later layers do not run.");
        } else {
            line("  # Iteration: one dbt build per layer, selected by tag, so a failing layer is visible (and");
            line("  # retried) on its own and later layers do not run.");
        }
        line(&format!("  {}:", quoted(&format!("{base}_layered"))));
        line(&format!(
            "    description: {}",
            quoted(&format!("Nightly dbt build of the {} project, one task per layer.", project.name))
        ));
        schedule(&mut line, &tags);
        line("    stages:");
        dbt_stage(&mut line, "dbt_deps", "deps", None, None);
        let mut previous = "dbt_deps".to_owned();
        for layer in &project.layers {
            let stage = format!("dbt_build_{}", layer.name);
            let select =
                if layer.project_properties { format!("path:{}", layer.path) } else { format!("tag:{}", layer.name) };
            dbt_stage(&mut line, &stage, "build", Some(&select), Some(&previous));
            previous = stage;
        }
    }
    out
}

/// The schedule lines both pipelines share.
fn schedule(line: &mut impl FnMut(&str), tags: &[String]) {
    line(&format!("    schedule: {}", quoted("0 2 * * *")));
    line("    catchup: false");
    line("    max_active_runs: 1");
    line(&format!("    tags: [{}]", tags.iter().map(|t| quoted(t)).collect::<Vec<_>>().join(", ")));
}

/// One dbt stage.
fn dbt_stage(line: &mut impl FnMut(&str), id: &str, command: &str, select: Option<&str>, after: Option<&str>) {
    let mut text = String::new();
    let _ = writeln!(text, "      {}:", quoted(id));
    let _ = writeln!(text, "        kind: {}", quoted("dbt"));
    let _ = writeln!(text, "        command: {}", quoted(command));
    if let Some(select) = select {
        let _ = writeln!(text, "        select: [{}]", quoted(select));
    }
    if let Some(after) = after {
        let _ = writeln!(text, "        after: [{}]", quoted(after));
    }
    for l in text.lines() {
        line(l);
    }
}

/// The pipelines' Airflow tags: `dbt`, and the project's name when it is a valid tag.
fn tags(project_name: &str) -> Vec<String> {
    let mut tags = vec!["dbt".to_owned()];
    let length = project_name.chars().count();
    if (1..=100).contains(&length) && !project_name.chars().any(|c| (c as u32) < 0x20) && project_name != "dbt" {
        tags.push(project_name.to_owned());
    }
    tags
}
