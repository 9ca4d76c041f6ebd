//! Newtypes for things that live in another process: its PID, an address in its memory, an fd in
//! its table. Keeping them apart from bare integers stops a remote address from being used as a
//! local one.

use std::fmt;

/// A process or thread ID, as seen from cryo's pid namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(pub i32);

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An address in another task's address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteAddr(pub u64);

impl RemoteAddr {
    /// This address plus `off` bytes.
    pub fn offset(self, off: u64) -> RemoteAddr {
        RemoteAddr(self.0.wrapping_add(off))
    }
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A file descriptor number in another task's fd table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteFd(pub i32);

impl fmt::Display for RemoteFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The size of a page on x86_64.
pub const PAGE_SIZE: u64 = 4096;
