//! The engine's error type: every failure says what failed on which task, fd, path or image.

use cryo_sys::Pid;
use std::io;

/// Why a dump or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something cryo does not handle yet, named precisely.
    #[error("{0} is not supported yet")]
    Unsupported(String),
    /// A system call or kernel interface failed.
    #[error("{what} of pid {pid}")]
    Task {
        /// What was being done ("seize", "read registers", ...).
        what: String,
        /// The task.
        pid: Pid,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A /proc file could not be read or parsed.
    #[error(transparent)]
    Proc(#[from] cryo_sys::procfs::ProcError),
    /// An image could not be read or written.
    #[error(transparent)]
    Image(#[from] cryo_image::ImageError),
    /// A file-system operation on cryo's side failed.
    #[error("{what} {path}")]
    Path {
        /// What was being done.
        what: String,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The images are inconsistent or describe something impossible.
    #[error("bad image {image}: {what}")]
    BadImage {
        /// Which image.
        image: String,
        /// What is wrong.
        what: String,
    },
    /// A restore step failed on a resource described by an image.
    #[error("restore {what} of pid {pid} (from {image})")]
    Restore {
        /// The resource.
        what: String,
        /// The task being restored.
        pid: Pid,
        /// The image that described it.
        image: String,
        /// The cause.
        #[source]
        source: Box<Error>,
    },
    /// A task waits in `vfork()` for its child to exec or exit: no ptrace stop can happen
    /// before that (it sleeps killable, not interruptible).
    #[error(
        "pid {pid} is in vfork(), waiting for {} to exec or exit: it cannot be stopped until \
         then (CRIU cannot dump this either)",
        vfork_child(.child)
    )]
    VforkParent {
        /// The vfork parent.
        pid: Pid,
        /// Its child sharing its memory, if found.
        child: Option<Pid>,
    },
    /// cryo was asked to stop (SIGINT/SIGTERM/SIGHUP) and released the tasks.
    #[error("interrupted by signal {0}, tasks released")]
    Interrupted(i32),
    /// A dump failed on purpose (test builds only, CRYO_FAULT_INJECT).
    #[error("fault injected at {0}")]
    FaultInjected(String),
}

fn vfork_child(child: &Option<Pid>) -> String {
    match child {
        Some(c) => format!("its child {c}"),
        None => "its child".into(),
    }
}

/// Result with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach task context to an io::Error.
pub trait TaskCtx<T> {
    /// Name the step and the task.
    fn task_ctx(self, what: &str, pid: Pid) -> Result<T>;
}

impl<T> TaskCtx<T> for io::Result<T> {
    fn task_ctx(self, what: &str, pid: Pid) -> Result<T> {
        self.map_err(|source| Error::Task {
            what: what.to_string(),
            pid,
            source,
        })
    }
}

/// Attach a path to an io::Error.
pub trait PathCtx<T> {
    /// Name the step and the path.
    fn path_ctx(self, what: &str, path: &std::path::Path) -> Result<T>;
}

impl<T> PathCtx<T> for io::Result<T> {
    fn path_ctx(self, what: &str, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| Error::Path {
            what: what.to_string(),
            path: path.display().to_string(),
            source,
        })
    }
}
