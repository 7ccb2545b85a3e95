//! Which directories are watched: every directory under a root minus the ignored ones, plus the
//! directory of each single-file root. One non-recursive watch per directory; the recursion is
//! ours, so ignored directories are never entered and never cost a watch.
//!
//! - Ignored below a root: `__pycache__`, hidden directories (a name starting with `.`),
//!   virtualenvs (named `venv` or `.venv`, or holding a `pyvenv.cfg`), `site-packages`,
//!   `node_modules`, and the names given in `ignore=`. A root itself is never ignored: it is
//!   watched because it was asked for.
//! - Symbolic links to directories are never followed. One pointing outside its root would
//!   watch files that are not the program's; one pointing inside is already watched under its
//!   real path, and a second inotify watch on the same directory gets the same descriptor, so
//!   notify would report that directory's events under only one of the two names.
//! - A single-file root is watched through its directory (non-recursively), not through the
//!   file: an editor saving by rename replaces the file, and a watch on the old file would go
//!   with it. Events for the directory's other entries are filtered out ([`Roots::accepts`]).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::coalesce::is_python;
use super::failure::Failure;

/// Directory names never entered, whatever the `ignore=` argument says.
const ALWAYS_IGNORED: [&str; 4] = ["__pycache__", "venv", "site-packages", "node_modules"];

/// The roots, split by kind; fixed for the life of a watcher and shared with notify's thread.
#[derive(Debug, Default)]
pub struct Roots {
    pub dirs: Vec<PathBuf>,
    pub files: Vec<PathBuf>,
}

impl Roots {
    /// Whether an event for `path` is reported: a `.py` file under a directory root, or a
    /// single-file root itself.
    pub fn accepts(&self, path: &Path) -> bool {
        is_python(path)
            && (self.files.iter().any(|f| f == path)
                || self.dirs.iter().any(|d| path.starts_with(d)))
    }
}

/// `path` made absolute against `cwd` and normalised lexically, like `os.path.abspath`:
/// `.` and empty components dropped, `..` taken off the end; symbolic links are not resolved,
/// so reported paths start the way the caller's `__file__` values do.
pub fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    let joined = cwd.join(path);
    let mut out = PathBuf::from("/");
    for component in joined.components() {
        match component {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Whether a directory named `name` is skipped by its name alone.
pub fn ignored_name(name: &OsStr, extra: &[OsString]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().starts_with(b".")
        || ALWAYS_IGNORED.iter().any(|n| name == *n)
        || extra.iter().any(|n| n == name)
}

/// The directories being watched.
#[derive(Debug)]
pub struct Tree {
    /// Directories under a directory root: watched, and their new subdirectories too.
    recursive: HashSet<PathBuf>,
    /// Directories of single-file roots that are not also in `recursive`.
    parents: HashSet<PathBuf>,
    ignore: Vec<OsString>,
}

impl Tree {
    pub fn new(ignore: Vec<OsString>) -> Tree {
        Tree {
            recursive: HashSet::new(),
            parents: HashSet::new(),
            ignore,
        }
    }

    /// How many directories are watched.
    pub fn count(&self) -> usize {
        self.recursive.len() + self.parents.len()
    }

    /// Whether `dir` is watched with its new subdirectories.
    pub fn recurses_into(&self, dir: &Path) -> bool {
        self.recursive.contains(dir)
    }

    /// Whether the directory `dir` (below a root) is skipped: by name, or as a virtualenv.
    pub fn is_ignored(&self, dir: &Path) -> bool {
        dir.file_name()
            .is_some_and(|name| ignored_name(name, &self.ignore))
            || dir.join("pyvenv.cfg").exists()
    }

    /// Watches `top` and every directory below it that is not ignored (`top` itself is not
    /// checked). `watch` adds one OS watch; `found` is told of each `.py` file in the
    /// directories newly watched here (the files a new directory brought along).
    ///
    /// A failure at `top` is returned; below it, a directory that cannot be watched or read
    /// (gone meanwhile, no permission) is skipped, and only a failure that concerns the whole
    /// watcher (the watch limit) stops the walk.
    pub fn add_tree(
        &mut self,
        top: &Path,
        watch: &mut dyn FnMut(&Path) -> Result<(), Failure>,
        found: &mut dyn FnMut(&Path),
    ) -> Result<(), Failure> {
        let mut stack = vec![top.to_owned()];
        while let Some(dir) = stack.pop() {
            // Directories walked before (a nested root, a rescan) are not watched twice, but
            // are entered: a rescan looks for subdirectories it missed.
            let fresh = !self.recursive.contains(&dir);
            if fresh {
                match watch(&dir) {
                    Ok(()) => {}
                    Err(failure) if dir != top && failure.is_local() => continue,
                    Err(failure) => return Err(failure),
                }
                self.parents.remove(&dir);
                self.recursive.insert(dir.clone());
            }
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                // From the directory entry's type: no stat, and a symbolic link is a link.
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    let path = entry.path();
                    if !self.is_ignored(&path) {
                        stack.push(path);
                    }
                } else if fresh && is_python(Path::new(&entry.file_name())) {
                    found(&entry.path());
                }
            }
        }
        Ok(())
    }

    /// Watches `dir`, the directory of a single-file root, unless it is watched already.
    pub fn add_parent(
        &mut self,
        dir: &Path,
        watch: &mut dyn FnMut(&Path) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        if self.recursive.contains(dir) || self.parents.contains(dir) {
            return Ok(());
        }
        watch(dir)?;
        self.parents.insert(dir.to_owned());
        Ok(())
    }

    /// Forgets `dir` and every watched directory below it (it was removed or renamed away);
    /// returns them, for their OS watches to be dropped.
    pub fn forget(&mut self, dir: &Path) -> Vec<PathBuf> {
        let mut gone: Vec<PathBuf> = self
            .recursive
            .iter()
            .chain(&self.parents)
            .filter(|d| d.starts_with(dir))
            .cloned()
            .collect();
        for d in &gone {
            self.recursive.remove(d);
            self.parents.remove(d);
        }
        gone.sort();
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute_like_abspath() {
        let cwd = Path::new("/home/me/proj");
        assert_eq!(
            absolute(Path::new("src"), cwd),
            Path::new("/home/me/proj/src")
        );
        assert_eq!(
            absolute(Path::new("./src/../lib/"), cwd),
            Path::new("/home/me/proj/lib")
        );
        assert_eq!(absolute(Path::new("/a//b/./c/.."), cwd), Path::new("/a/b"));
        assert_eq!(absolute(Path::new(""), cwd), Path::new("/home/me/proj"));
        assert_eq!(absolute(Path::new("/../x"), cwd), Path::new("/x"));
    }

    #[test]
    fn caches_hidden_directories_and_environments_are_ignored_by_name() {
        let extra = vec![OsString::from("build")];
        for name in [
            "__pycache__",
            ".git",
            ".venv",
            "venv",
            "site-packages",
            "node_modules",
        ] {
            assert!(ignored_name(OsStr::new(name), &extra), "{name}");
        }
        assert!(ignored_name(OsStr::new("build"), &extra));
        for name in ["src", "pkg", "venvs", "my.venv", "tests"] {
            assert!(!ignored_name(OsStr::new(name), &extra), "{name}");
        }
    }

    #[test]
    fn events_are_accepted_for_sources_under_a_root_or_for_a_file_root() {
        let roots = Roots {
            dirs: vec![PathBuf::from("/proj/src")],
            files: vec![PathBuf::from("/proj/tools/run.py")],
        };
        assert!(roots.accepts(Path::new("/proj/src/pkg/mod.py")));
        assert!(roots.accepts(Path::new("/proj/tools/run.py")));
        assert!(
            !roots.accepts(Path::new("/proj/tools/other.py")),
            "a sibling of a file root"
        );
        assert!(
            !roots.accepts(Path::new("/proj/srcx/mod.py")),
            "a prefix is not a parent"
        );
        assert!(!roots.accepts(Path::new("/proj/src/data.json")));
    }

    #[test]
    fn forgetting_a_directory_forgets_everything_below_it() {
        let mut tree = Tree::new(Vec::new());
        for d in ["/r", "/r/a", "/r/a/b", "/r/ab"] {
            tree.recursive.insert(PathBuf::from(d));
        }
        tree.parents.insert(PathBuf::from("/r/a/c"));
        let gone = tree.forget(Path::new("/r/a"));
        assert_eq!(
            gone,
            vec![PathBuf::from("/r/a"), "/r/a/b".into(), "/r/a/c".into()]
        );
        assert_eq!(tree.count(), 2);
        assert!(tree.recurses_into(Path::new("/r/ab")));
    }
}
