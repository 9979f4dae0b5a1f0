//! Where generated files go, and how a DAG file finds the dbt project at run time.
//!
//! Every folder a spec writes into is resolved here, by [`OutputDirs`], and none may lead
//! outside the layout's bounds: `--out DIR`, or without it the project the spec is in (the git
//! work tree holding it, else the spec's own folder), so that `pipelines/x.yaml` may write
//! `../dags` in its repository but a spec edited in a pull request cannot write elsewhere.

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::parse::{Document, escape_pointer};
use crate::spec::Spec;
use std::path::{Component, Path, PathBuf};

/// Where the spec's relative paths are rooted, and what the spec is called.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The folder relative paths in the spec resolve against: the spec's folder, or `--out`.
    pub root: PathBuf,
    /// The spec's file name.
    pub spec_name: String,
    /// The spec's folder, which the files it reads at compile time (dbt's profiles) are relative to.
    pub spec_dir: PathBuf,
    /// Which spec owns the files, as each file's header records it: the spec's path relative
    /// to its project root (see [`SpecOwner`]), so that `teams/a/pipeline.yaml` and
    /// `teams/b/pipeline.yaml` writing one DAGs folder never take each other's files.
    pub owner: SpecOwner,
    /// Whether `root` is an `--out` folder, which nothing may be written outside of.
    pub contained: bool,
    /// Without `--out`: how many folders above the spec's the project root is, so how many
    /// leading `..` an output folder may have.
    climb: usize,
}

impl Layout {
    /// The layout for the spec at `spec_path`, rooted at `out` when given.
    pub fn new(spec_path: &Path, out: Option<&Path>) -> Self {
        let root = match out {
            Some(out) => out.to_owned(),
            None => spec_path.parent().map(Path::to_owned).unwrap_or_default(),
        };
        let spec_name =
            spec_path.file_name().map_or_else(|| "spec.yaml".to_owned(), |n| n.to_string_lossy().into_owned());
        let climb = if out.is_some() { 0 } else { project_root(&root) };
        let owner = SpecOwner::of(spec_path, out);
        let spec_dir = spec_path.parent().map(Path::to_owned).unwrap_or_default();
        Self { root, spec_name, spec_dir, owner, contained: out.is_some(), climb }
    }

    /// Where a folder of the spec's goes, relative to `root`, as normalized parts. Under `--out`,
    /// leading `..` are dropped so that `../dags` lands in `out/dags`; elsewhere they stay, for
    /// [`OutputDirs`] to refuse.
    fn parts(&self, spec_path: &str) -> Vec<String> {
        let parts = normalize(spec_path);
        if self.contained { parts.into_iter().skip_while(|p| p == "..").collect() } else { parts }
    }

    /// The root as shown in messages.
    fn root_text(&self) -> String {
        let text = self.root.display().to_string();
        if text.is_empty() { ".".to_owned() } else { text }
    }

    fn escape_diagnostic(&self, escape: &Escape, document: Option<&Document>) -> Diagnostic {
        let root = self.root_text();
        let (folder, help) = if self.contained {
            (format!("the --out folder `{root}`"), "remove the `..` that climb out of the output folder")
        } else {
            (
                format!("the project `{}`", self.display(Path::new(&"../".repeat(self.climb)))),
                "without --out nothing is written outside the git work tree that holds the spec (or, outside one, the spec's folder): run plan and apply with `--out DIR` (leading `..` of `airflow.dags_folder` and `dbt.project_dir` are dropped under it), or remove the `..`",
            )
        };
        Diagnostic::error("path-escapes-output", format!("`{}` leads outside {folder}", escape.written))
            .at(
                document.and_then(|d| d.span(&escape.pointer)),
                format!("resolves to `{}`, relative to `{root}`", escape.resolved),
            )
            .help(help)
    }

    /// `root/path`, with `a/../` folded away, for showing to people.
    pub fn display(&self, path: &Path) -> String {
        let joined = self.root.join(path);
        let text = joined.to_string_lossy();
        let absolute = text.starts_with('/');
        let folded = normalize(&text).join("/");
        match (absolute, folded.is_empty()) {
            (true, _) => format!("/{folded}"),
            (false, true) => ".".to_owned(),
            (false, false) => folded,
        }
    }
}

/// How many folders above `spec_dir` the project of a spec without `--out` is: the nearest
/// folder at or above it that holds `.git`; 0 (the spec's folder) outside a work tree.
fn project_root(spec_dir: &Path) -> usize {
    let start = if spec_dir.as_os_str().is_empty() { Path::new(".") } else { spec_dir };
    let Ok(absolute) = std::path::absolute(start) else { return 0 };
    absolute.ancestors().position(|dir| dir.join(".git").exists()).unwrap_or(0)
}

/// The spec that owns generated files, named unambiguously.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecOwner {
    /// The spec's path relative to `project`, with `/` between folders.
    pub id: String,
    /// The project root, absolute: the git work tree that holds the spec; outside one, the
    /// nearest folder that holds both the spec and `--out`; without `--out`, the spec's folder.
    pub project: PathBuf,
}

impl SpecOwner {
    /// The owner name of the spec at `spec_path`, written under `out` when given.
    pub fn of(spec_path: &Path, out: Option<&Path>) -> Self {
        let spec = absolute(spec_path);
        let spec_dir = spec.parent().map(Path::to_owned).unwrap_or_default();
        let work_tree = spec_dir.ancestors().find(|dir| dir.join(".git").exists()).map(Path::to_owned);
        let project = work_tree
            .or_else(|| {
                let out = absolute(out?);
                let common: PathBuf =
                    spec_dir.components().zip(out.components()).take_while(|(a, b)| a == b).map(|(a, _)| a).collect();
                // A common folder of `/` says nothing about the project, and the id would spell
                // out the machine's folders.
                (common.parent().is_some()).then_some(common)
            })
            .unwrap_or_else(|| spec_dir.clone());
        let id = spec.strip_prefix(&project).map_or_else(
            |_| spec.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            |relative| normalize(&relative.to_string_lossy()).join("/"),
        );
        Self { id, project }
    }

    /// Whether a file whose header names `spec` is this spec's. A header of an earlier version
    /// names the spec's file name alone, which is this spec's only when the spec is at the project root.
    pub fn owns(&self, spec: &str) -> bool {
        spec == self.id
    }

    /// Whether the spec a header names is still there, so that its files are not orphans.
    pub fn other_exists(&self, spec: &str) -> bool {
        let parts = normalize(spec);
        parts.first().is_some_and(|p| p != "..") && self.project.join(parts.join("/")).is_file()
    }
}

/// `path` made absolute against the current folder, with `.` and `a/..` folded away.
fn absolute(path: &Path) -> PathBuf {
    let joined = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut folded = PathBuf::from("/");
    for component in joined.components() {
        match component {
            Component::ParentDir => {
                folded.pop();
            }
            Component::Normal(name) => folded.push(name),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    folded
}

/// The folders a spec writes into, relative to the layout root, each checked to stay inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputDirs {
    /// The DAGs folder (`airflow.dags_folder`).
    pub dags: PathBuf,
    /// The dbt project folder (`dbt.project_dir`), where `selectors.yml` goes.
    pub dbt_project: Option<PathBuf>,
    /// Each layer's models folder (`layers.<name>.path`, by default `models/<name>`), in spec order.
    pub layers: Vec<(String, PathBuf)>,
}

/// A spec value that would put files outside the layout root.
struct Escape {
    /// Where the value is in the spec.
    pointer: String,
    /// The value as written.
    written: String,
    /// Where it leads, relative to the root: it starts with `..`.
    resolved: String,
}

impl OutputDirs {
    /// The output folders of `spec` under `layout`. Each folder that leads outside the root,
    /// after folding `..` lexically, is an error located in `document` when one is given.
    pub fn of(spec: &Spec, layout: &Layout, document: Option<&Document>) -> Result<Self, Diagnostics> {
        let mut escapes = Vec::new();
        let climb = layout.climb;
        let mut inside = |parts: Vec<String>, pointer: String, written: &str| -> Option<PathBuf> {
            if parts.iter().take_while(|p| *p == "..").count() > climb {
                escapes.push(Escape { pointer, written: written.to_owned(), resolved: parts.join("/") });
                return None;
            }
            Some(parts.iter().collect())
        };
        let dags_folder = &spec.airflow.dags_folder.0;
        let dags = inside(layout.parts(dags_folder), "/airflow/dags_folder".to_owned(), dags_folder);
        let mut layers = Vec::new();
        let dbt_project = match &spec.dbt {
            None => None,
            Some(dbt) => {
                let project = layout.parts(&dbt.project_dir.0);
                let checked = inside(project.clone(), "/dbt/project_dir".to_owned(), &dbt.project_dir.0);
                // A project that already escapes is reported once, not again for each layer in it.
                if checked.is_some() {
                    for (name, layer) in &spec.layers {
                        let default = format!("models/{name}");
                        let written = layer.path.as_ref().map_or(default.as_str(), |p| p.0.as_str());
                        let parts = normalize(&format!("{}/{written}", project.join("/")));
                        let pointer = format!("/layers/{}/path", escape_pointer(name.as_ref()));
                        if let Some(folder) = inside(parts, pointer, written) {
                            layers.push((name.to_string(), folder));
                        }
                    }
                }
                checked
            }
        };
        match dags {
            Some(dags) if escapes.is_empty() => Ok(Self { dags, dbt_project, layers }),
            _ => Err(escapes.into_iter().map(|e| layout.escape_diagnostic(&e, document)).collect()),
        }
    }

    /// The folders whose generated files belong to the spec, for stale-file removal: the DAGs
    /// folder and the dbt project's `models` folder.
    pub fn managed(&self) -> Vec<ManagedDir> {
        let mut dirs = vec![ManagedDir { path: self.dags.clone(), base: self.dags.clone() }];
        dirs.extend(self.dbt_project.iter().map(|p| ManagedDir { path: p.join("models"), base: p.clone() }));
        dirs
    }
}

/// A folder searched for the spec's stale files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedDir {
    /// The folder, relative to the layout root.
    pub path: PathBuf,
    /// The folder that files' recorded places are relative to: the DAGs folder, or the dbt
    /// project for its `models` folder.
    pub base: PathBuf,
}

/// Where `path` is relative to `base` (both relative to one root), as a header records it.
pub fn place(path: &Path, base: &Path) -> String {
    relative(&base.to_string_lossy(), &path.to_string_lossy())
        .unwrap_or_else(|| normalize(&path.to_string_lossy()).join("/"))
}

/// Lexically normalizes a relative path: drops `.`, folds `a/..`, keeps leading `..`.
pub fn normalize(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if parts.last().is_some_and(|p| p != "..") {
                    parts.pop();
                } else {
                    parts.push("..".to_owned());
                }
            }
            Component::Normal(name) => parts.push(name.to_string_lossy().into_owned()),
        }
    }
    parts
}

/// The path from folder `from` to `to`, both relative to the same root; `None` when `from`
/// climbs above the root further than `to` does, so the answer would depend on folder names
/// the spec does not know.
pub fn relative(from: &str, to: &str) -> Option<String> {
    let (from, to) = (normalize(from), normalize(to));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if from[common..].iter().any(|p| p == "..") {
        return None;
    }
    let mut parts: Vec<&str> = vec![".."; from.len() - common];
    parts.extend(to[common..].iter().map(String::as_str));
    Some(if parts.is_empty() { ".".to_owned() } else { parts.join("/") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    #[test]
    fn relative_paths_between_spec_folders() {
        assert_eq!(relative("../dags", "../dbt").as_deref(), Some("../dbt"));
        assert_eq!(relative("dags", "dbt/project").as_deref(), Some("../dbt/project"));
        assert_eq!(relative("out/dags", "out/dags").as_deref(), Some("."));
        assert_eq!(relative("../dags", "dbt"), None);
        assert_eq!(normalize("./a/../b/./c"), ["b", "c"]);
        let here = Layout::new(Path::new("pipelines/fhir.yaml"), None);
        assert_eq!(here.display(Path::new("../dags/x.py")), "dags/x.py");
    }

    /// The output folders of a spec with these `airflow`, `dbt` and `layers` lines, at
    /// `pipelines/p.yaml`, under `--out out` or not; an error is its rendered text.
    fn dirs(head: &str, out: bool) -> Result<OutputDirs, String> {
        let text = format!("version: 1\n{head}pipelines:\n  p:\n    stages:\n      a: {{kind: shell, command: x}}\n");
        let document = Document::parse(SourceFile::new("pipelines/p.yaml", text)).expect("parses");
        let spec = crate::validate::check(&document).expect("valid");
        let layout = Layout::new(Path::new("pipelines/p.yaml"), out.then_some(Path::new("out")));
        OutputDirs::of(&spec, &layout, Some(&document)).map_err(|d| d.render())
    }

    /// The `dbt` and `layers` lines of a spec with one layer, `staging`, at `path`.
    fn dbt(project: &str, path: &str) -> String {
        format!("dbt: {{project_dir: '{project}'}}\nlayers:\n  staging: {{path: '{path}', models: [m]}}\n")
    }

    fn layer(dirs: &OutputDirs) -> &Path {
        &dirs.layers[0].1
    }

    #[test]
    fn folders_inside_the_root_are_folded() {
        let under_out = dirs(
            "airflow: {dags_folder: ../dags}\ndbt: {project_dir: ../dbt}\nlayers: {staging: {models: [m]}}\n",
            true,
        )
        .unwrap();
        assert_eq!(under_out.dags, Path::new("dags"));
        assert_eq!(under_out.dbt_project.as_deref(), Some(Path::new("dbt")));
        assert_eq!(layer(&under_out), Path::new("dbt/models/staging"));
        let managed: Vec<(PathBuf, PathBuf)> = under_out.managed().into_iter().map(|m| (m.path, m.base)).collect();
        assert_eq!(managed, [("dags".into(), "dags".into()), ("dbt/models".into(), "dbt".into())]);
        // Leaving the dbt project is fine while the folder stays in the root.
        assert_eq!(layer(&dirs(&dbt("../dbt", "../shared/./x"), true).unwrap()), Path::new("shared/x"));
        assert_eq!(layer(&dirs(&dbt("dbt", "models/a/../b"), false).unwrap()), Path::new("dbt/models/b"));
        assert_eq!(dirs("airflow: {dags_folder: 'x/../../y'}\n", true).unwrap().dags, Path::new("y"));
        assert_eq!(dirs("", false).unwrap().dags, Path::new("dags"));
        assert_eq!(dirs("airflow: {dags_folder: .}\n", false).unwrap().dags, Path::new(""));
    }

    #[test]
    fn folders_leaving_the_root_are_located_errors() {
        let cases = [
            (
                dbt("dbt", "../../../../srv/evil"),
                true,
                "pipelines/p.yaml:4:19",
                "`../../../srv/evil`, relative to `out`",
            ),
            (dbt("../dbt", "models/../../../x"), true, "pipelines/p.yaml:4:19", "`../x`, relative to `out`"),
            // Without --out the bound is the git work tree holding the spec: this repository,
            // one folder above `pipelines/`.
            (dbt("dbt", "../../../x"), false, "pipelines/p.yaml:4:19", "`../../x`, relative to `pipelines`"),
            (dbt("../../dbt", "models"), false, "pipelines/p.yaml:2:20", "`../../dbt`, relative to `pipelines`"),
            ("airflow: {dags_folder: ../../dags}\n".to_owned(), false, "pipelines/p.yaml:2:24", "`../../dags`"),
            ("airflow: {dags_folder: 'a/../../..'}\n".to_owned(), false, "pipelines/p.yaml:2:24", "`../..`, relative"),
        ];
        for (head, out, at, resolved) in cases {
            let text = dirs(&head, out).expect_err(&head);
            assert!(text.contains("error[path-escapes-output]"), "{text}");
            assert!(text.contains(at), "{head}: not at {at}:\n{text}");
            assert!(text.contains(resolved), "{head}: not {resolved}:\n{text}");
            assert_eq!(text.matches("error[").count(), 1, "one error for one escaping value:\n{text}");
        }
    }
}

#[cfg(test)]
mod project_root_tests {
    use super::project_root;

    #[test]
    fn the_bound_is_the_work_tree_that_holds_the_spec() {
        let dir = tempfile::tempdir().unwrap();
        let specs = dir.path().join("repo/teams/a");
        std::fs::create_dir_all(&specs).unwrap();
        assert_eq!(project_root(&specs), 0, "outside a work tree: the spec's folder");
        std::fs::create_dir(dir.path().join("repo/.git")).unwrap();
        assert_eq!(project_root(&specs), 2);
        assert_eq!(project_root(&dir.path().join("repo")), 0);
    }
}
