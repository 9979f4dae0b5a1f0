//! Where generated files go, and how a DAG file finds the dbt project at run time.

use std::path::{Component, Path, PathBuf};

/// Where the spec's relative paths are rooted, and what the spec is called.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The folder relative paths in the spec resolve against: the spec's folder, or `--out`.
    pub root: PathBuf,
    /// The spec's file name, as recorded in each file's header.
    pub spec_name: String,
    /// Whether `root` is an `--out` folder, which nothing may be written outside of.
    pub contained: bool,
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
        Self { root, spec_name, contained: out.is_some() }
    }

    /// Where a path of the spec's goes, relative to `root`. Under `--out`, leading `..` are
    /// dropped so that `../dags` lands in `out/dags` and nothing escapes the folder.
    pub fn place(&self, spec_path: &str) -> PathBuf {
        let parts = normalize(spec_path);
        let parts = if self.contained { parts.into_iter().skip_while(|p| p == "..").collect() } else { parts };
        parts.iter().collect()
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

    #[test]
    fn relative_paths_between_spec_folders() {
        assert_eq!(relative("../dags", "../dbt").as_deref(), Some("../dbt"));
        assert_eq!(relative("dags", "dbt/project").as_deref(), Some("../dbt/project"));
        assert_eq!(relative("out/dags", "out/dags").as_deref(), Some("."));
        assert_eq!(relative("../dags", "dbt"), None);
        assert_eq!(normalize("./a/../b/./c"), ["b", "c"]);
        let out = Layout::new(Path::new("pipelines/fhir.yaml"), Some(Path::new("out")));
        assert_eq!(out.place("../dags"), PathBuf::from("dags"));
        let here = Layout::new(Path::new("pipelines/fhir.yaml"), None);
        assert_eq!(here.place("../dags"), PathBuf::from("../dags"));
        assert_eq!(here.display(&here.place("../dags/x.py")), "dags/x.py");
    }
}
