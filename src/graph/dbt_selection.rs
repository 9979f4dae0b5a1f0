//! A dbt stage's selection on dbt's command line, with the project's own selectors
//! (`selectors.yml`).
//!
//! dbt's `--select` has no `selector:` method; fhirflow's `selector:NAME` is written
//! `--selector NAME` when it is the stage's whole selection, and otherwise replaced by the
//! selector's definition as `--select`/`--exclude` arguments (when dbt's command line can say
//! it). The selectors are those dbt will read: the `selectors.yml` fhirflow writes when the spec
//! has layers, else the project's own.

use super::Lowering;
use crate::dbt::{CommandLine, Selectors, read_selectors};
use crate::diagnostic::Diagnostic;
use crate::spec::DbtSelector;
use std::path::Path;
use std::sync::Arc;

/// How a selection is written on dbt's command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CliSelection {
    /// `--selector NAME`, and whether its definition reads an earlier run's state.
    Selector(String, bool),
    /// `--select ...` and `--exclude ...` (either may be empty).
    Args(CommandLine),
}

impl CliSelection {
    /// The `--select` and `--exclude` arguments, and the `--selector` name.
    pub(super) fn parts(&self) -> (Vec<&str>, Vec<&str>, Option<&str>) {
        match self {
            CliSelection::Selector(name, _) => (Vec::new(), Vec::new(), Some(name.as_str())),
            CliSelection::Args(line) => (
                line.select.iter().map(String::as_str).collect(),
                line.exclude.iter().map(String::as_str).collect(),
                None,
            ),
        }
    }
}

/// Whether any selector names a selector of `selectors.yml`.
pub(super) fn names_selector(list: &[&DbtSelector]) -> bool {
    list.iter().any(|s| s.as_str().split(',').any(|part| part.contains("selector:")))
}

impl Lowering<'_> {
    /// The selectors dbt will read for the spec's project, read once; `None` when reading them
    /// failed (and was reported).
    pub(super) fn selectors(&mut self) -> Option<Arc<Selectors>> {
        if let Some(cached) = &self.selectors {
            return cached.clone();
        }
        let loaded = self.load_selectors();
        self.selectors = Some(loaded.clone());
        loaded
    }

    fn load_selectors(&mut self) -> Option<Arc<Selectors>> {
        let spec = self.spec;
        if !spec.layers.is_empty() {
            // `apply` writes selectors.yml with one tag selector per layer.
            let selectors: Vec<serde_json::Value> = spec
                .layers
                .iter()
                .map(|(name, layer)| {
                    let tag = layer.tags.as_ref().and_then(|t| t.first()).map_or(name.as_str(), |t| t.as_str());
                    serde_json::json!({"name": name.as_str(), "definition": {"method": "tag", "value": tag}})
                })
                .collect();
            let value = serde_json::json!({ "selectors": selectors });
            // Tag selectors of checked layer names always read; never drop the stage over them.
            return Some(Arc::new(Selectors::from_value(&value).unwrap_or_default()));
        }
        let project = spec.dbt.as_ref()?;
        let base = Path::new(&self.doc.source.name).parent().map(Path::to_owned).unwrap_or_default();
        match read_selectors(&base.join(&project.project_dir.0)) {
            Ok(selectors) => Some(Arc::new(selectors)),
            Err(diagnostics) => {
                for d in diagnostics {
                    self.error(d);
                }
                None
            }
        }
    }

    /// The command-line form of `select`/`exclude` (at `pointer`/select and /exclude).
    pub(super) fn cli_selection(
        &mut self,
        pointer: &str,
        select: &[&DbtSelector],
        exclude: &[&DbtSelector],
    ) -> Option<CliSelection> {
        let text = |list: &[&DbtSelector]| list.iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>();
        if !names_selector(select) && !names_selector(exclude) {
            return Some(CliSelection::Args(CommandLine { select: text(select), exclude: text(exclude) }));
        }
        let selectors = self.selectors()?;
        let mut line = CommandLine::default();
        let args: Vec<(&str, usize, &DbtSelector)> = select
            .iter()
            .enumerate()
            .map(|(k, s)| ("select", k, *s))
            .chain(exclude.iter().enumerate().map(|(k, s)| ("exclude", k, *s)))
            .collect();
        // The union of the select arguments, and the exclusions each brings.
        for (field, k, arg) in &args {
            let at = format!("{pointer}/{field}/{k}");
            let mut product: Vec<String> = vec![String::new()];
            let mut inner_exclude: Vec<String> = Vec::new();
            for part in arg.as_str().split(',') {
                let Some(name) = self.selector_part(&at, part, &selectors)? else {
                    product.iter_mut().for_each(|p| push_part(p, part));
                    continue;
                };
                if select.len() == 1 && exclude.is_empty() && part == arg.as_str() {
                    let reads_state = selectors.get(name).is_some_and(|s| s.reads_state());
                    if reads_state && self.spec.dbt.as_ref().is_some_and(|d| d.artifacts.is_none()) {
                        self.error(
                            Diagnostic::error(
                                "state-without-artifacts",
                                format!("selector `{name}` compares with the previous run, but no artifacts are kept"),
                            )
                            .at(self.doc.span(&at), "")
                            .help("set `dbt.artifacts` to a `path` or an `s3` prefix; each dbt task saves its artifacts there"),
                        );
                        return None;
                    }
                    return Some(CliSelection::Selector(name.to_owned(), reads_state));
                }
                let Some(form) = selectors.get(name).and_then(|s| s.command_line()) else {
                    self.not_expressible(&at, name, "its definition has no `--select`/`--exclude` form");
                    return None;
                };
                product = product
                    .iter()
                    .flat_map(|left| {
                        form.select.iter().map(move |right| {
                            let mut joined = left.clone();
                            push_part(&mut joined, right);
                            joined
                        })
                    })
                    .collect();
                inner_exclude.extend(form.exclude);
            }
            if *field == "select" {
                if !inner_exclude.is_empty() {
                    if select.len() > 1 {
                        self.not_expressible(
                            &at,
                            arg.as_str(),
                            "it excludes nodes, and other selectors are added to it",
                        );
                        return None;
                    }
                }
                line.select.extend(product);
                line.exclude.extend(inner_exclude);
            } else {
                if !inner_exclude.is_empty() {
                    self.not_expressible(&at, arg.as_str(), "it excludes nodes itself, so it cannot be excluded");
                    return None;
                }
                line.exclude.extend(product);
            }
        }
        Some(CliSelection::Args(line))
    }

    /// The selector name in `part`, checked against `selectors`; `Ok(None)` for any other part.
    fn selector_part<'p>(&mut self, at: &str, part: &'p str, selectors: &Selectors) -> Option<Option<&'p str>> {
        let name = match crate::dbt::selector_name(part) {
            Ok(Some(name)) => name,
            Ok(None) => return Some(None),
            Err(e) => {
                self.error(Diagnostic::error("bad-selector", e.to_string()).at(self.doc.span(at), ""));
                return None;
            }
        };
        if selectors.get(name).is_none() {
            let known: Vec<&str> = selectors.names().collect();
            let mut d = Diagnostic::error("unknown-dbt-selector", format!("no dbt selector `{name}`"))
                .at(self.doc.span(at), "not in the project's selectors.yml");
            d = match crate::diagnostic::did_you_mean(name, known.iter().copied()) {
                Some(guess) => d.help(format!("did you mean `selector:{guess}`?")),
                None if known.is_empty() => d.help("the project has no selectors.yml, or it defines no selector"),
                None => d.help(format!("selectors.yml defines {}", known.join(", "))),
            };
            self.error(d);
            return None;
        }
        Some(Some(name))
    }

    /// An error: `what` at `at` has no command-line form, because `why`.
    pub(super) fn not_expressible(&mut self, at: &str, what: &str, why: &str) {
        self.error(
            Diagnostic::error(
                "selector-not-expressible",
                format!("`{what}` cannot be written on dbt's command line here: {why}"),
            )
            .at(self.doc.span(at), "")
            .help("make `selector:NAME` the stage's whole `select` (it becomes `--selector NAME`), or define the combination as a selector in selectors.yml"),
        );
    }
}

fn push_part(intersection: &mut String, part: &str) {
    if !intersection.is_empty() {
        intersection.push(',');
    }
    intersection.push_str(part);
}

#[cfg(test)]
mod tests {
    use super::super::Operation;
    use crate::source::SourceFile;

    /// Compiles `stages` (YAML under `stages:`) in a spec without layers whose dbt project has
    /// `selectors` as its selectors.yml, against the dbt_modes fixture's manifest. Returns the
    /// dbt command lines by task id, or the rendered errors.
    fn compile(selectors: &str, stages: &str) -> Result<Vec<(String, String)>, String> {
        compile_with(selectors, "", stages)
    }

    /// [`compile`] with `dbt` (lines under `dbt:`) added to the project.
    fn compile_with(selectors: &str, dbt: &str, stages: &str) -> Result<Vec<(String, String)>, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("dbt")).unwrap();
        std::fs::write(dir.path().join("dbt/selectors.yml"), selectors).unwrap();
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dbt_modes/manifest.json");
        std::fs::copy(manifest, dir.path().join("dbt/manifest.json")).unwrap();
        let spec = format!(
            "version: 1\ndbt:\n  project_dir: dbt\n  manifest: dbt/manifest.json\n{dbt}pipelines:\n  p:\n    stages:\n{stages}"
        );
        let name = dir.path().join("spec.yaml").display().to_string();
        let compiled = crate::compile(SourceFile::new(name, spec)).map_err(|ds| {
            ds.sorted()
                .iter()
                .filter(|d| d.severity == crate::diagnostic::Severity::Error)
                .map(|d| d.render())
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        let p = compiled.graph.pipeline("p").unwrap();
        Ok(p.tasks
            .iter()
            .filter_map(|t| match &t.operation {
                Operation::Dbt(inv) => {
                    let words: Vec<&str> = inv
                        .args
                        .iter()
                        .filter_map(|a| match a {
                            super::super::DbtArg::Literal(s) => Some(s.as_str()),
                            _ => None,
                        })
                        .collect();
                    Some((t.id.clone(), words.join(" ")))
                }
                _ => None,
            })
            .collect())
    }

    const SELECTORS: &str = "selectors:\n  - name: staging\n    default: true\n    definition: {method: path, value: models/staging}\n  - name: no_marts\n    definition:\n      union:\n        - 'fqn:*'\n        - exclude: [path:models/marts]\n";

    #[test]
    fn per_model_without_select_builds_the_default_selector() {
        let tasks =
            compile(SELECTORS, "      b: {kind: dbt, command: build, dbt_mode: per_model, group_by: none}\n").unwrap();
        let ids: Vec<&str> = tasks.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["b_deps", "stg_patients_run", "stg_visits_run", "stg_patients_test", "stg_visits_test"]);
        // An explicit selection replaces the default, as in dbt.
        let tasks =
            compile(SELECTORS, "      b: {kind: dbt, command: build, dbt_mode: per_model, select: [dim_patients]}\n")
                .unwrap();
        assert!(tasks.iter().any(|(id, _)| id == "marts.dim_patients_run"), "{tasks:?}");
    }

    #[test]
    fn a_whole_selector_is_dash_dash_selector_and_a_part_is_expanded() {
        let tasks = compile(
            SELECTORS,
            "      a: {kind: dbt, command: build, select: ['selector:no_marts']}\n      b: {kind: dbt, command: test, select: ['selector:staging,tag:x'], after: [a]}\n      c: {kind: dbt, command: run, select: ['tag:y'], exclude: ['selector:staging'], after: [b]}\n      d: {kind: dbt, command: run, select: ['selector:no_marts'], exclude: [stg_visits], after: [c]}\n",
        )
        .unwrap();
        let line = |id: &str| tasks.iter().find(|(t, _)| t == id).map(|(_, l)| l.as_str()).unwrap();
        assert_eq!(line("a"), "build --project-dir --profiles-dir --selector no_marts");
        assert_eq!(line("b"), "test --project-dir --profiles-dir --select path:models/staging,tag:x");
        assert_eq!(line("c"), "run --project-dir --profiles-dir --select tag:y --exclude path:models/staging");
        assert_eq!(line("d"), "run --project-dir --profiles-dir --select fqn:* --exclude path:models/marts stg_visits");
    }

    #[test]
    fn a_selector_that_reads_state_gets_the_stored_state() {
        let file = "selectors:\n  - {name: changed, definition: {method: state, value: modified, children: true}}\n";
        let stage = "      a: {kind: dbt, command: build, select: ['selector:changed'], defer: true}\n";
        let err = compile(file, stage).unwrap_err();
        assert!(err.contains("state-without-artifacts"), "{err}");
        let tasks = compile_with(file, "  artifacts: {path: /mnt/dbt-artifacts}\n", stage).unwrap();
        assert_eq!(tasks[0].1, "build --project-dir --profiles-dir --selector changed --state --defer");
    }

    #[test]
    fn selector_errors_are_located() {
        let err =
            compile(SELECTORS, "      a: {kind: dbt, command: build, select: ['selector:stagng']}\n").unwrap_err();
        assert!(err.contains("no dbt selector `stagng`") && err.contains("did you mean `selector:staging`?"), "{err}");
        assert!(err.contains("spec.yaml:8:"), "{err}");
        let err = compile(SELECTORS, "      a: {kind: dbt, command: build, select: ['selector:no_marts', tag:x]}\n")
            .unwrap_err();
        assert!(err.contains("selector-not-expressible"), "{err}");
        let err =
            compile(SELECTORS, "      a: {kind: dbt, command: build, select: ['+selector:no_marts']}\n").unwrap_err();
        assert!(err.contains("graph operators"), "{err}");
        let broken =
            "selectors:\n  - name: a\n    definition:\n      union:\n        - tag:x\n        - {method: tag}\n";
        let err = compile(broken, "      a: {kind: dbt, command: build, dbt_mode: per_model}\n").unwrap_err();
        // As in dbt, a one-key mapping is `METHOD: VALUE`.
        assert!(err.contains("selectors.yml:6:11") && err.contains("unknown selector method `method`"), "{err}");
        let broken = broken.replace("{method: tag}", "{method: tag, values: x}");
        let err = compile(&broken, "      a: {kind: dbt, command: build, dbt_mode: per_model}\n").unwrap_err();
        assert!(err.contains("expected one `METHOD: VALUE` key, or `method` and `value`"), "{err}");
        let twice = "selectors:\n  - {name: a, default: true, definition: tag:x}\n  - {name: b, default: true, definition: tag:y}\n";
        let err = compile(twice, "      a: {kind: dbt, command: build, dbt_mode: per_model}\n").unwrap_err();
        assert!(
            err.contains("selectors `a` and `b` both have `default: true`") && err.contains("selectors.yml:3:"),
            "{err}"
        );
    }
}
