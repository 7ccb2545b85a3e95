//! Why watching failed, in kinds, and the messages users read: pure formatting, apart from
//! [`Failure::from_notify`], which reads the current limits from `/proc` to name them.

use std::path::{Path, PathBuf};

/// Where Linux keeps the per-user inotify limits.
const MAX_USER_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";
const MAX_USER_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

/// A failure to watch, raised to Python as `WatchError` (an `OSError`) unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A root does not exist.
    MissingRoot(PathBuf),
    /// A root is a file, but not a `.py` file (raised as `ValueError`).
    NotPython(PathBuf),
    /// inotify's per-user watch limit is reached (ENOSPC) at `dir`.
    WatchLimit {
        dir: PathBuf,
        max_user_watches: Option<u64>,
    },
    /// inotify's per-user instance limit (or the process's file limit) is reached (EMFILE).
    InstanceLimit { max_user_instances: Option<u64> },
    /// Anything else, as notify or the OS put it.
    Other {
        path: Option<PathBuf>,
        errno: Option<i32>,
        message: String,
    },
}

impl Failure {
    /// Classifies an error of notify met while watching `dir`.
    pub fn from_notify(error: notify::Error, dir: &Path) -> Failure {
        let errno = match &error.kind {
            notify::ErrorKind::Io(io) => io.raw_os_error(),
            _ => None,
        };
        let watch_limit =
            matches!(error.kind, notify::ErrorKind::MaxFilesWatch) || errno == Some(libc::ENOSPC);
        let not_found =
            matches!(error.kind, notify::ErrorKind::PathNotFound) || errno == Some(libc::ENOENT);
        if watch_limit {
            Failure::WatchLimit {
                dir: dir.to_owned(),
                max_user_watches: read_limit(MAX_USER_WATCHES),
            }
        } else if errno == Some(libc::EMFILE) && error.paths.is_empty() {
            Failure::InstanceLimit {
                max_user_instances: read_limit(MAX_USER_INSTANCES),
            }
        } else if not_found {
            Failure::MissingRoot(dir.to_owned())
        } else {
            Failure::Other {
                path: Some(dir.to_owned()),
                errno,
                message: error.to_string(),
            }
        }
    }

    /// Whether the failure only concerns the one directory (which is then left unwatched) as
    /// opposed to the whole watcher: a directory that vanished or cannot be read.
    pub fn is_local(&self) -> bool {
        matches!(self, Failure::MissingRoot(_) | Failure::Other { .. })
    }

    /// The `errno` the exception carries.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Failure::MissingRoot(_) => Some(libc::ENOENT),
            Failure::NotPython(_) => None,
            Failure::WatchLimit { .. } => Some(libc::ENOSPC),
            Failure::InstanceLimit { .. } => Some(libc::EMFILE),
            Failure::Other { errno, .. } => *errno,
        }
    }

    /// The path the exception names as its `filename`, for the failures that read best as
    /// `[Errno N] message: 'path'`.
    pub fn filename(&self) -> Option<&Path> {
        match self {
            Failure::MissingRoot(path) | Failure::NotPython(path) => Some(path),
            Failure::Other { path, .. } => path.as_deref(),
            Failure::WatchLimit { .. } | Failure::InstanceLimit { .. } => None,
        }
    }

    /// The message (the `strerror` when there is an `errno`).
    pub fn message(&self) -> String {
        match self {
            Failure::MissingRoot(_) => "watch root does not exist".to_owned(),
            Failure::NotPython(_) => "a watch root that is a file must be a .py file".to_owned(),
            Failure::WatchLimit {
                dir,
                max_user_watches,
            } => watch_limit_message(dir, *max_user_watches),
            Failure::InstanceLimit { max_user_instances } => {
                instance_limit_message(*max_user_instances)
            }
            Failure::Other { message, .. } => message.clone(),
        }
    }
}

/// The message for a full inotify watch table: which directory, the current limit, and the
/// three ways out.
pub fn watch_limit_message(dir: &Path, max_user_watches: Option<u64>) -> String {
    let current = match max_user_watches {
        Some(n) => format!("fs.inotify.max_user_watches is {n}"),
        None => format!("fs.inotify.max_user_watches could not be read from {MAX_USER_WATCHES}"),
    };
    format!(
        "cannot watch {}: the inotify watch limit is reached ({current}; every directory \
         watched by any program of this user counts). Raise it with \
         `sudo sysctl fs.inotify.max_user_watches=524288`, and keep it across reboots with the \
         line `fs.inotify.max_user_watches=524288` in a file under /etc/sysctl.d/ (for example \
         /etc/sysctl.d/90-inotify.conf); or watch a smaller tree (fewer roots, more directory \
         names in ignore=); or pass poll=True",
        dir.display()
    )
}

/// The message for too many inotify instances (one per watcher, per program of this user).
pub fn instance_limit_message(max_user_instances: Option<u64>) -> String {
    let current = match max_user_instances {
        Some(n) => format!("fs.inotify.max_user_instances is {n}"),
        None => "fs.inotify.max_user_instances could not be read".to_owned(),
    };
    format!(
        "cannot start an inotify watcher: this user has too many inotify instances open \
         ({current}), or this process too many files. Close watchers no longer used, raise \
         the limit with `sudo sysctl fs.inotify.max_user_instances=1024`, or pass poll=True"
    )
}

fn read_limit(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_limit_message_names_the_directory_the_limit_and_the_remedies() {
        let message = watch_limit_message(Path::new("/srv/app/pkg/sub"), Some(8192));
        for needle in [
            "/srv/app/pkg/sub",
            "fs.inotify.max_user_watches is 8192",
            "sudo sysctl fs.inotify.max_user_watches=524288",
            "/etc/sysctl.d/",
            "smaller tree",
            "poll=True",
        ] {
            assert!(
                message.contains(needle),
                "{needle:?} missing from {message:?}"
            );
        }
    }

    #[test]
    fn the_watch_limit_message_says_when_the_limit_is_unknown() {
        let message = watch_limit_message(Path::new("/x"), None);
        assert!(message.contains("could not be read from /proc/sys/fs/inotify/max_user_watches"));
    }

    #[test]
    fn notify_errors_are_classified_by_kind_and_errno() {
        let dir = Path::new("/srv/app");
        let limit = Failure::from_notify(notify::Error::new(notify::ErrorKind::MaxFilesWatch), dir);
        assert!(matches!(&limit, Failure::WatchLimit { dir: d, .. } if d == dir));
        assert_eq!(limit.errno(), Some(libc::ENOSPC));
        assert!(!limit.is_local());

        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let limit = Failure::from_notify(notify::Error::io(enospc), dir);
        assert!(matches!(limit, Failure::WatchLimit { .. }));

        let missing = Failure::from_notify(notify::Error::path_not_found(), dir);
        assert_eq!(missing, Failure::MissingRoot(dir.to_owned()));
        assert_eq!(missing.filename(), Some(dir));
        assert!(missing.is_local());

        let denied = std::io::Error::from_raw_os_error(libc::EACCES);
        let denied = Failure::from_notify(notify::Error::io(denied), dir);
        assert_eq!(denied.errno(), Some(libc::EACCES));
        assert!(denied.is_local());
    }
}
