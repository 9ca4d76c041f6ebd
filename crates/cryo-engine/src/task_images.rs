//! The images of one process, read and checked before anything is made
//! ([`read_images`]): pstree entry, cores of every thread, mm, fs, fdinfo, pagemaps.

use crate::error::{Error, Result};
use crate::memory;
use cryo_image::{pb, ImageKind};
use cryo_sys::{Pid, PAGE_SIZE};
use std::collections::BTreeMap;
use std::path::Path;

/// Everything read from the images for one process.
pub(crate) struct TaskImages {
    pub(crate) pstree: pb::PstreeEntry,
    /// One core per thread, the leader's first.
    pub(crate) cores: Vec<(Pid, pb::CoreEntry)>,
    pub(crate) mm: pb::MmEntry,
    pub(crate) fs: pb::FsEntry,
    pub(crate) fdinfos: Vec<pb::FdinfoEntry>,
    pub(crate) pagemap: Vec<pb::PagemapEntry>,
    pub(crate) pages_id: u32,
    pub(crate) shmem: BTreeMap<u64, (u32, Vec<pb::PagemapEntry>)>,
    /// A zombie: its wait status (nothing else of it is in the images).
    pub(crate) zombie: Option<u32>,
    /// Which mm, fd table, fs and signal handlers it has (equal ids: shared).
    pub(crate) ids: pb::TaskKobjIdsEntry,
}

pub(crate) fn bad(image: &str, what: impl Into<String>) -> Error {
    Error::BadImage {
        image: image.to_string(),
        what: what.into(),
    }
}

/// The tasks of the images, parents first, and whether the tree has a pid namespace of its own
/// (see `pid_ns`).
pub(crate) fn read_images(dir: &Path) -> Result<(Vec<TaskImages>, bool)> {
    let inv: pb::InventoryEntry = cryo_image::read_single(dir, ImageKind::Inventory, None)?;
    if inv.img_version != 2 {
        return Err(bad(
            "inventory.img",
            format!("image version {} (want 2)", inv.img_version),
        ));
    }
    let tree: Vec<pb::PstreeEntry> = cryo_image::read_all_entries(dir, ImageKind::Pstree, None)?;
    if tree.is_empty() {
        return Err(bad("pstree.img", "no task"));
    }
    let mut out = Vec::new();
    for (n, pstree) in tree.into_iter().enumerate() {
        if n > 0
            && pstree.ppid != 0
            && !out.iter().any(|t: &TaskImages| t.pstree.pid == pstree.ppid)
        {
            return Err(bad(
                "pstree.img",
                format!("pid {} comes before its parent {}", pstree.pid, pstree.ppid),
            ));
        }
        let pid = pstree.pid;
        let id = Some(u64::from(pid));
        let mut tids = pstree.threads.clone();
        if tids.is_empty() {
            tids.push(pid);
        }
        if tids[0] != pid {
            return Err(bad(
                "pstree.img",
                format!("the first thread of {pid} is {}", tids[0]),
            ));
        }
        let mut cores = Vec::new();
        for tid in tids {
            let core: pb::CoreEntry =
                cryo_image::read_single(dir, ImageKind::Core, Some(u64::from(tid)))?;
            if core.mtype != pb::core_entry::March::X8664 as i32 {
                return Err(bad(
                    &format!("core-{tid}.img"),
                    format!("machine type {} is not x86_64", core.mtype),
                ));
            }
            cores.push((Pid(tid as i32), core));
        }
        // TASK_DEAD with other threads is no zombie: the leader exited alone and the process
        // lives on (see `exit_leader`).
        if let Some(tc) = cores[0]
            .1
            .tc
            .as_ref()
            .filter(|tc| tc.task_state == crate::proc_dump::TASK_DEAD && cores.len() == 1)
        {
            out.push(TaskImages {
                zombie: Some(tc.exit_code),
                pstree,
                cores,
                mm: Default::default(),
                fs: Default::default(),
                fdinfos: Vec::new(),
                pagemap: Vec::new(),
                pages_id: 0,
                shmem: BTreeMap::new(),
                ids: Default::default(),
            });
            continue;
        }
        let ids = cores[0]
            .1
            .ids
            .or(if n == 0 { inv.root_ids } else { None })
            .unwrap_or_default();
        let mm: pb::MmEntry = cryo_image::read_single(dir, ImageKind::Mm, id)?;
        let fs: pb::FsEntry = cryo_image::read_single(dir, ImageKind::Fs, id)?;
        let fdinfos =
            cryo_image::read_all_entries(dir, ImageKind::Fdinfo, Some(u64::from(ids.files_id)))?;
        let (head, pagemap) =
            cryo_image::pagemap::read_pagemap(dir, ImageKind::Pagemap, u64::from(pid))?;
        check_pages_len(dir, head.pages_id, &pagemap)?;
        let mut shmem = BTreeMap::new();
        for v in &mm.vmas {
            if v.status & memory::status::VMA_ANON_SHARED != 0 && !shmem.contains_key(&v.shmid) {
                match cryo_image::pagemap::read_pagemap(dir, ImageKind::ShmemPagemap, v.shmid) {
                    Ok((h, entries)) => {
                        check_pages_len(dir, h.pages_id, &entries)?;
                        shmem.insert(v.shmid, (h.pages_id, entries));
                    }
                    Err(cryo_image::ImageError::Missing { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        out.push(TaskImages {
            pstree,
            cores,
            mm,
            fs,
            fdinfos,
            pagemap,
            pages_id: head.pages_id,
            shmem,
            zombie: None,
            ids,
        });
    }
    let own_pidns = crate::pid_ns::images_have_own_pidns(Some(&out[0].ids), inv.root_ids.as_ref());
    if own_pidns {
        if out[0].pstree.pid != 1 {
            return Err(bad(
                "pstree.img",
                format!(
                    "the root {} of a tree with its own pid namespace is not its init (pid 1)",
                    out[0].pstree.pid
                ),
            ));
        }
        // Every other root would be made the init of a namespace of its own.
        if let Some(t) = out.iter().skip(1).find(|t| t.pstree.ppid == 0) {
            return Err(bad(
                "pstree.img",
                format!(
                    "pid {} is a second root of a tree with its own pid namespace",
                    t.pstree.pid
                ),
            ));
        }
    }
    // Every process in the root's pid namespace: one nested in it would come back elsewhere.
    if let Some(t) = out
        .iter()
        .find(|t| t.zombie.is_none() && t.ids.pid_ns_id != out[0].ids.pid_ns_id)
    {
        return Err(Error::Unsupported(format!(
            "pid {} in another pid namespace than the root's (nested pid namespaces)",
            t.pstree.pid
        )));
    }
    Ok((out, own_pidns))
}

/// The pages image must hold every page its pagemap lists.
pub(crate) fn check_pages_len(
    dir: &Path,
    pages_id: u32,
    pagemap: &[pb::PagemapEntry],
) -> Result<()> {
    let path = cryo_image::image_path(dir, ImageKind::Pages, Some(u64::from(pages_id)))?;
    let want: u64 = pagemap
        .iter()
        .map(|pe| {
            pe.nr_pages
                .unwrap_or(u64::from(pe.compat_nr_pages))
                .saturating_mul(PAGE_SIZE)
        })
        .fold(0u64, |a, b| a.saturating_add(b));
    let have = std::fs::metadata(&path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => {
                Error::Image(cryo_image::ImageError::Missing { path: path.clone() })
            }
            _ => Error::Path {
                what: "stat".into(),
                path: path.display().to_string(),
                source,
            },
        })?
        .len();
    if have < want {
        return Err(bad(
            &path.display().to_string(),
            format!("ends at offset {have}, but its pagemap lists {want} bytes of pages"),
        ));
    }
    Ok(())
}
