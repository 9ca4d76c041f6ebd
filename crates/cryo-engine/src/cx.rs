//! What a phase of a dump or a restore may touch, handed to the kinds of resources: the images
//! directory and the options ([`DumpCx`], [`RestoreCx`]), the allocation of file ids
//! ([`IdAlloc`]), and at dump the sink of shared-memory pages. The scratch memory of a task is
//! the injector's ([`crate::remote::Scratch`]).

use crate::memory::ShmemDump;
use crate::{DumpOptions, RestoreOptions};
use std::path::Path;

/// Hands out the ids of `files.img` entries (and of the images that hang off them, such as
/// ghost files): 1, 2, 3, ... in one space for every kind, as CRIU does.
#[derive(Debug)]
pub struct IdAlloc {
    next: u32,
}

impl Default for IdAlloc {
    fn default() -> IdAlloc {
        IdAlloc { next: 1 }
    }
}

impl IdAlloc {
    /// A fresh id.
    pub fn next_id(&mut self) -> u32 {
        let id = self.next;
        self.next += 1;
        id
    }
}

/// The context of a dump, for the kinds of files and the memory dump.
pub struct DumpCx<'a> {
    /// Where the images go.
    pub dir: &'a Path,
    /// What the dump was asked to do.
    pub opts: &'a DumpOptions,
    /// File ids.
    pub ids: IdAlloc,
    /// The first free pages-image id.
    pub pages_id: u32,
    /// Shared memory (of memfds and shared mappings), written once for all its holders.
    pub shmem: ShmemDump,
}

impl std::fmt::Debug for DumpCx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DumpCx")
            .field("dir", &self.dir)
            .field("ids", &self.ids)
            .field("pages_id", &self.pages_id)
            .finish_non_exhaustive()
    }
}

impl<'a> DumpCx<'a> {
    /// A fresh context for dumping into `opts.images_dir`.
    pub fn new(opts: &'a DumpOptions) -> DumpCx<'a> {
        DumpCx {
            dir: opts.images_dir.as_path(),
            opts,
            ids: IdAlloc::default(),
            pages_id: 1,
            shmem: ShmemDump::default(),
        }
    }
}

/// The context of a restore, for the kinds of files.
#[derive(Debug)]
pub struct RestoreCx<'a> {
    /// Where the images are.
    pub dir: &'a Path,
    /// What the restore was asked to do.
    pub opts: &'a RestoreOptions,
}

impl<'a> RestoreCx<'a> {
    /// The context of restoring from `opts.images_dir`.
    pub fn new(opts: &'a RestoreOptions) -> RestoreCx<'a> {
        RestoreCx {
            dir: opts.images_dir.as_path(),
            opts,
        }
    }
}
