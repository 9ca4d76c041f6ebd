//! File descriptors: the fd tables of the tasks (`fdinfo-N.img`) and the open files behind them
//! (`files.img`).
//!
//! - [`table`]: what is the same for every kind of file (ids, which fds share an open file,
//!   close-on-exec, O_ASYNC and signal owners, handing a file to every process that holds it);
//! - [`kind`]: the contract every kind of file fulfils, and the registry of kinds;
//! - one module per kind, dump and restore side together: files reopened by path (`reg`:
//!   regular files, directories, /dev/null-like devices, deleted files), pipes (`pipe`),
//!   memfds (`memfd`), unix sockets (`unix_socket`) and terminals (`tty`);
//! - [`transfer`]: how files cryo holds reach a puppet.
//!
//! An fd no kind claims is refused, naming the fd and what it is.

pub mod kind;
pub mod memfd;
pub mod pipe;
pub mod reg;
pub mod table;
pub mod transfer;
pub mod tty;
pub mod unix_socket;

pub use table::FileTable;

/// Open flags that act only when a file is created or first opened: never replayed.
const O_REOPEN_MASK: u32 = (libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY) as u32;

/// Open `path` in cryo with the dumped open `flags`, less those that act only at creation;
/// never as a controlling terminal, close-on-exec in cryo.
pub(crate) fn open_with_flags(path: &str, flags: u32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    match flags as i32 & libc::O_ACCMODE {
        libc::O_WRONLY => o.write(true),
        libc::O_RDWR => o.read(true).write(true),
        _ => o.read(true),
    };
    o.custom_flags((flags & !O_REOPEN_MASK & !(libc::O_ACCMODE as u32)) as i32 | libc::O_NOCTTY);
    o.open(path)
}
