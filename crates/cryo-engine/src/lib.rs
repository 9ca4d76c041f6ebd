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
    /// Dump every task of this cgroup (`--cgroup`, cryo's own), stopped through its freezer;
    /// `pid` is not used.
    pub cgroup: Option<PathBuf>,
    /// Stop the tree through this cgroup's freezer (`--freeze-cgroup`, as CRIU).
    pub freeze_cgroup: Option<PathBuf>,
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

pub mod cgroup;
pub mod control;
pub mod cpu;
pub mod creds;
pub mod cx;
pub mod dump;
pub mod error;
pub mod files;
pub mod kobj_ids;
pub mod memory;
pub mod pid_ns;
pub mod proc_dump;
pub(crate) mod proc_restore;
pub(crate) mod puppet;
pub mod remote;
pub mod restore;
pub mod seize;
pub mod signals;
pub mod task_attrs;
pub(crate) mod task_images;
pub mod timers;
pub(crate) mod tree_build;
pub mod tree_shape;

pub use dump::dump;
pub use error::Error;
pub use restore::restore;
