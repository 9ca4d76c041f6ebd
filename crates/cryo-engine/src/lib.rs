//! Dump and restore of process trees: the orchestrators (`dump`, `restore`) over one module per
//! resource kind.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

/// What `cryo dump` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// Root of the tree to dump.
    pub pid: i32,
    /// Where images go.
    pub images_dir: PathBuf,
    /// Leave the tasks running after the dump (`-R`).
    pub leave_running: bool,
    /// Leave the tasks stopped after the dump (`-s`).
    pub leave_stopped: bool,
    /// The task shares the caller's terminal (`-j`).
    pub shell_job: bool,
    /// How long to wait for the tasks to stop (`--timeout`).
    pub timeout: Option<Duration>,
}

/// What `cryo restore` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Where images are read from.
    pub images_dir: PathBuf,
    /// Do not wait for the restored tree (`-d`).
    pub detached: bool,
    /// The task shared the caller's terminal at dump time (`-j`).
    pub shell_job: bool,
}

/// The outcome of a successful restore.
#[derive(Debug, Clone)]
pub struct Restored {
    /// PID of the root of the restored tree.
    pub root_pid: i32,
}

/// Why a dump or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not implemented yet.
    #[error("{0} is not supported yet")]
    Unsupported(String),
}

/// Checkpoint the tree rooted at `opts.pid` into `opts.images_dir`.
pub fn dump(opts: &DumpOptions) -> Result<(), Error> {
    let _ = opts;
    Err(Error::Unsupported("dump".into()))
}

/// Restore the tree from `opts.images_dir`; the tasks are running when this returns.
pub fn restore(opts: &RestoreOptions) -> Result<Restored, Error> {
    let _ = opts;
    Err(Error::Unsupported("restore".into()))
}
