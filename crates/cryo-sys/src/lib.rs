//! Thin kernel interfaces: the only crate of cryo with `unsafe`. Each module wraps one kernel
//! facility and cites its man page or uapi header.

pub mod cgroupfs;
pub mod cpu;
pub mod mem;
pub mod pidns;
pub mod pipe;
pub mod probe;
pub mod proc_ctl;
pub mod procfs;
pub mod ptrace;
pub mod puppet;
pub mod remote;
pub mod shmem;
pub mod signal;
pub mod sock_diag;
pub mod socket;
pub mod task;
pub mod tty;
pub mod types;
pub mod uffd;

pub use types::{Pid, RemoteAddr, RemoteFd, PAGE_SIZE};
