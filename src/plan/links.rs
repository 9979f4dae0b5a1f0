//! Symbolic links under the output root: writing through one that leads outside it would put
//! files where `--out` (or the spec's folder) says nothing goes, so it is refused.

use crate::error::Error;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

/// Refuses `relative` (a normalized path under `root`) when a folder on the way to it, or the
/// file itself, is a symbolic link that leads outside `root`. Links that stay inside are fine.
pub(super) fn refuse_escaping_links(root: &Path, relative: &Path) -> Result<(), Error> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, action: "read", source }
    };
    let inside = match root.canonicalize() {
        Ok(inside) => inside,
        // Nothing exists under a root that does not exist yet.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(root)(e)),
    };
    let mut at = root.to_path_buf();
    for part in relative.components() {
        at.push(part);
        let metadata = match std::fs::symlink_metadata(&at) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&at)(e)),
        };
        if !metadata.file_type().is_symlink() {
            continue;
        }
        let target = match at.canonicalize() {
            Ok(target) => target,
            Err(e) if e.kind() == ErrorKind::NotFound => dangling_target(&at).map_err(io(&at))?,
            Err(e) => return Err(io(&at)(e)),
        };
        if !target.starts_with(&inside) {
            return Err(Error::Refused {
                path: at,
                reason: format!(
                    "it is a symbolic link to {}, outside the output folder {}; nothing was written. Replace the link with a real folder or file, or point --out at where it leads",
                    target.display(),
                    root.display()
                ),
            });
        }
    }
    Ok(())
}

/// Where a link whose target does not exist points, with `..` folded lexically.
fn dangling_target(link: &Path) -> std::io::Result<PathBuf> {
    let target = std::fs::read_link(link)?;
    let parent = link.parent().unwrap_or(Path::new("."));
    let base = parent.canonicalize()?;
    let mut folded = PathBuf::new();
    for part in base.join(target).components() {
        match part {
            Component::ParentDir => {
                folded.pop();
            }
            Component::CurDir => {}
            other => folded.push(other),
        }
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_inside_the_root_pass_and_links_out_of_it_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("real")).unwrap();
        symlink(r.join("real"), r.join("inside")).unwrap();
        symlink("../real", r.join("real/up")).unwrap();
        symlink(outside.path(), r.join("away")).unwrap();
        symlink(outside.path().join("f.py"), r.join("real/file.py")).unwrap();
        symlink(outside.path().join("missing/deeper"), r.join("dangling_away")).unwrap();
        symlink("not-yet", r.join("dangling_inside")).unwrap();
        let cases = [
            ("dags/x.py", None),
            ("inside/x.py", None),
            ("inside/up/up/x.py", None),
            ("dangling_inside/x.py", None),
            ("away/x.py", Some("away")),
            ("real/file.py", Some("real/file.py")),
            ("inside/file.py", Some("inside/file.py")),
            ("dangling_away/x.py", Some("dangling_away")),
        ];
        for (path, refused) in cases {
            let result = refuse_escaping_links(r, Path::new(path));
            match (refused, result) {
                (None, Ok(())) => {}
                (Some(link), Err(Error::Refused { path: at, reason })) => {
                    assert_eq!(at, r.join(link), "{path}");
                    assert!(reason.contains("outside the output folder"), "{path}: {reason}");
                }
                (expected, got) => panic!("{path}: expected refusal at {expected:?}, got {got:?}"),
            }
        }
        assert!(refuse_escaping_links(&r.join("no/such/root"), Path::new("away/x.py")).is_ok());
    }
}
