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
    /// A file descriptor of some kind failed at dump or restore.
    #[error("{kind} at fd {fd} of pid {pid}: {source}")]
    Fd {
        /// The kind of file ("pipe", "unix socket").
        kind: &'static str,
        /// The process.
        pid: Pid,
        /// The fd.
        fd: i32,
        /// What failed.
        #[source]
        source: Box<Error>,
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

/// The classes of failure, each with its own exit status and RPC `cr_errno` (W36). The values
/// are errno numbers, as CRIU's `cr_errno` is: ESRCH for no such process, EEXIST for a PID in
/// use, and so on; 1 is any other failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Something cryo does not handle, refused by name (EOPNOTSUPP).
    Unsupported,
    /// The process to dump, or one cryo works on, does not exist (ESRCH).
    NoProcess,
    /// A PID the images need is taken (EEXIST).
    PidInUse,
    /// An image is missing (ENOENT).
    MissingImage,
    /// An image is corrupt or inconsistent (EBADMSG).
    BadImage,
    /// cryo was interrupted by a signal (EINTR).
    Interrupted,
    /// A permission the kernel refused (EPERM, EACCES).
    Permission,
    /// Any other failure of the kernel or the file system.
    Other,
}

impl ErrorClass {
    /// The exit status of a cryo command that failed this way, and its RPC `cr_errno`.
    pub fn code(self) -> u8 {
        match self {
            ErrorClass::Unsupported => libc::EOPNOTSUPP as u8,
            ErrorClass::NoProcess => libc::ESRCH as u8,
            ErrorClass::PidInUse => libc::EEXIST as u8,
            ErrorClass::MissingImage => libc::ENOENT as u8,
            ErrorClass::BadImage => libc::EBADMSG as u8,
            ErrorClass::Interrupted => libc::EINTR as u8,
            ErrorClass::Permission => libc::EACCES as u8,
            ErrorClass::Other => 1,
        }
    }
}

impl Error {
    /// What kind of failure this is (see [`ErrorClass`]).
    pub fn class(&self) -> ErrorClass {
        let io_class = |e: &io::Error| match e.raw_os_error() {
            Some(libc::ESRCH) => ErrorClass::NoProcess,
            Some(libc::EEXIST) => ErrorClass::PidInUse,
            Some(libc::EPERM | libc::EACCES) => ErrorClass::Permission,
            _ => ErrorClass::Other,
        };
        match self {
            Error::Unsupported(_) | Error::VforkParent { .. } => ErrorClass::Unsupported,
            Error::Task { source, .. } => io_class(source),
            Error::Path { source, .. } => io_class(source),
            Error::Proc(_) => ErrorClass::Other,
            Error::Image(cryo_image::ImageError::Missing { .. }) => ErrorClass::MissingImage,
            Error::Image(_) | Error::BadImage { .. } => ErrorClass::BadImage,
            Error::Restore { source, .. } | Error::Fd { source, .. } => source.class(),
            Error::Interrupted(_) => ErrorClass::Interrupted,
            Error::FaultInjected(_) => ErrorClass::Other,
        }
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
