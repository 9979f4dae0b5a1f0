//! Listing a local folder of files to load.

use super::SourceFile;
use std::path::Path;

/// Every `*.json` file under `root/prefix` (recursively; symbolic links followed), sorted by
/// (modification time, key). Keys are relative to `root`. A name that is not UTF-8 is an error
/// (a key is text in the warehouse).
pub fn list(root: &Path, prefix: &str) -> std::io::Result<Vec<SourceFile>> {
    let start = if prefix.is_empty() { root.to_owned() } else { root.join(prefix.trim_end_matches('/')) };
    let mut out = Vec::new();
    let mut pending = vec![start];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let meta = std::fs::metadata(&path)?;
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            if !meta.is_file() || path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let relative = path.strip_prefix(root).map_err(std::io::Error::other)?;
            let mut parts = Vec::new();
            for part in relative.components() {
                let part = part.as_os_str().to_str().ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("file name is not UTF-8: {}", path.display()),
                    )
                })?;
                parts.push(part);
            }
            let key = parts.join("/");
            if !prefix.is_empty() && !key.starts_with(prefix) {
                continue;
            }
            out.push(SourceFile { key, path, modified: meta.modified()?.into() });
        }
    }
    out.sort_by(|a, b| (a.modified, &a.key).cmp(&(b.modified, &b.key)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_json_files_recursively_with_relative_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("raw/sub")).unwrap();
        std::fs::write(dir.path().join("raw/Ciara_O'Keefe54.json"), "{}").unwrap();
        std::fs::write(dir.path().join("raw/sub/美咲.json"), "{}").unwrap();
        std::fs::write(dir.path().join("raw/notes.txt"), "x").unwrap();
        std::fs::write(dir.path().join("top.json"), "{}").unwrap();
        let mut keys: Vec<String> = list(dir.path(), "").unwrap().into_iter().map(|f| f.key).collect();
        keys.sort();
        assert_eq!(keys, ["raw/Ciara_O'Keefe54.json", "raw/sub/美咲.json", "top.json"]);
        let mut keys: Vec<String> = list(dir.path(), "raw/").unwrap().into_iter().map(|f| f.key).collect();
        keys.sort();
        assert_eq!(keys, ["raw/Ciara_O'Keefe54.json", "raw/sub/美咲.json"]);
    }

    #[test]
    fn sorted_by_modification_time_then_key() {
        let dir = tempfile::tempdir().unwrap();
        for (name, secs) in [("b.json", 10), ("a.json", 20), ("c.json", 10)] {
            let path = dir.path().join(name);
            std::fs::write(&path, "{}").unwrap();
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).unwrap();
        }
        let keys: Vec<String> = list(dir.path(), "").unwrap().into_iter().map(|f| f.key).collect();
        assert_eq!(keys, ["b.json", "c.json", "a.json"]);
    }
}
