//! Pid namespaces: the numbers the images give tasks, and the pid namespace a tree is
//! restored into.
//!
//! The images name every task by its PID in the tree's own pid namespace, as CRIU's do. A tree
//! in cryo's namespace keeps its PIDs. A tree that lives in a pid namespace of its own is dumped
//! whole with that namespace, its init included: the root of the dump must be the init (PID 1
//! there), and every task is written with the PID, process group and session it sees (a group
//! or session outside the namespace reads 0, as the kernel shows it). Then the `pid_ns_id` of
//! every task's ids differs from the one of the inventory's `root_ids` (cryo's own namespace,
//! as CRIU writes it), which is how a restore, CRIU's too, knows that the root must be the init
//! of a new pid namespace.
//!
//! cryo itself always works with the PIDs of its own namespace (ptrace, /proc, which is the
//! host's); the syscalls the tasks make remotely take theirs.

use crate::error::{Error, Result};
use cryo_image::pb;
use cryo_sys::{procfs, Pid};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

/// The `pid_ns_id` of cryo's own pid namespace in the images.
pub const CRYO_PID_NS_ID: u32 = 1;
/// The `pid_ns_id` of a tree's own pid namespace in the images.
pub const TREE_PID_NS_ID: u32 = 2;

/// How a dumped tree's tasks are numbered in the images.
#[derive(Debug)]
pub struct PidView {
    /// How deep the tree's namespace lies below cryo's (0: the same namespace).
    depth: usize,
    /// The PID in the tree's namespace of each task seen (own namespace only), by its PID here.
    inner: BTreeMap<i32, i32>,
}

fn pid_ns_inode(pid: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/ns/pid");
    std::fs::metadata(&path)
        .map(|m| m.ino())
        .map_err(|source| Error::Path {
            what: "read the pid namespace".into(),
            path,
            source,
        })
}

impl PidView {
    /// The view of the tree rooted at `root`: cryo's own numbers if it lives in cryo's pid
    /// namespace; else it must be the init of its namespace, which is dumped with it.
    pub fn of_root(root: Pid) -> Result<PidView> {
        let same = pid_ns_inode("self")? == pid_ns_inode(&root.0.to_string())?;
        if same {
            return Ok(PidView {
                depth: 0,
                inner: BTreeMap::new(),
            });
        }
        let status = procfs::read_status(root)?;
        let depth = status.ns_pid.len().saturating_sub(1);
        let own = status.ns_pid.last().copied().unwrap_or(0);
        if depth == 0 {
            return Err(Error::Unsupported(format!(
                "pid {root} is in a pid namespace cryo's /proc does not show"
            )));
        }
        if own != 1 {
            return Err(Error::Unsupported(format!(
                "pid {root} is pid {own} of a pid namespace of its own, not its init: dump \
                 the namespace's init (pid 1 there) to take the namespace with the tree"
            )));
        }
        let mut view = PidView {
            depth,
            inner: BTreeMap::new(),
        };
        view.inner.insert(root.0, 1);
        Ok(view)
    }

    /// Whether the tree has a pid namespace of its own.
    pub fn own_ns(&self) -> bool {
        self.depth > 0
    }

    /// The `pid_ns_id` of the tree's tasks.
    pub fn pid_ns_id(&self) -> u32 {
        if self.own_ns() {
            TREE_PID_NS_ID
        } else {
            CRYO_PID_NS_ID
        }
    }

    /// The inventory's `root_ids`: cryo's own namespaces, as CRIU writes them.
    pub fn root_ids(&self) -> pb::TaskKobjIdsEntry {
        pb::TaskKobjIdsEntry {
            pid_ns_id: Some(CRYO_PID_NS_ID),
            ..Default::default()
        }
    }

    /// Learn the number of `task` (a process or thread of the tree); it must be in the
    /// tree's namespace itself, not in one nested below (a process that made a pid namespace
    /// of its own inside the tree would come back at other PIDs).
    pub fn add(&mut self, task: Pid) -> Result<()> {
        let ns_pid = procfs::read_status(task)?.ns_pid;
        if ns_pid.len() != self.depth + 1 {
            return Err(Error::Unsupported(format!(
                "pid {task} in a pid namespace nested in the dumped one (its pids {ns_pid:?})"
            )));
        }
        if self.own_ns() {
            self.inner.insert(task.0, ns_pid[self.depth]);
        }
        Ok(())
    }

    /// The number of `task` in the images.
    pub fn vpid(&self, task: Pid) -> Result<Pid> {
        if !self.own_ns() {
            return Ok(task);
        }
        self.inner.get(&task.0).map(|&v| Pid(v)).ok_or_else(|| {
            Error::Unsupported(format!(
                "pid {task} appeared in the tree's pid namespace after the tree was frozen"
            ))
        })
    }

    /// The process group and session of process `pid` in the images, from its stat here.
    pub fn group_and_session(&self, pid: Pid, stat: &procfs::Stat) -> Result<(u32, u32)> {
        if !self.own_ns() {
            return Ok((stat.pgrp as u32, stat.session as u32));
        }
        let st = procfs::read_status(pid)?;
        let at = |v: &[i32], what: &str| {
            v.get(self.depth).map(|&x| x as u32).ok_or_else(|| {
                Error::Unsupported(format!(
                    "pid {pid} without its {what} in /proc/{pid}/status"
                ))
            })
        };
        Ok((at(&st.ns_pgid, "NSpgid")?, at(&st.ns_sid, "NSsid")?))
    }
}

/// PID `global` (as cryo's pid namespace numbers it) as process `task` sees it: the number a
/// value read by cryo (a signal owner, say) has in the task's own namespace, 0 if that process
/// is not seen there.
pub fn as_seen_by(task: Pid, global: i32) -> Result<i32> {
    if global <= 0 {
        return Ok(global);
    }
    let depth = procfs::read_status(task)?.ns_pid.len();
    if depth <= 1 {
        return Ok(global);
    }
    // A process group whose leader has exited has no /proc entry: not seen, as far as cryo
    // can tell.
    let Ok(theirs) = procfs::read_status(Pid(global)) else {
        tracing::warn!("pid {global} (seen by {task}) is gone: recorded as 0");
        return Ok(0);
    };
    Ok(theirs.ns_pid.get(depth - 1).copied().unwrap_or(0))
}

/// Whether the images hold a tree with a pid namespace of its own (see the module doc): its
/// root's `pid_ns_id` differs from cryo's at dump time.
pub fn images_have_own_pidns(
    root_ids: Option<&pb::TaskKobjIdsEntry>,
    inventory_root_ids: Option<&pb::TaskKobjIdsEntry>,
) -> bool {
    match (
        root_ids.and_then(|i| i.pid_ns_id),
        inventory_root_ids.and_then(|i| i.pid_ns_id),
    ) {
        (Some(task), Some(dumper)) => task != dumper,
        _ => false,
    }
}

/// [`images_have_own_pidns`] for the images in `dir` (inventory, pstree and root core only).
pub fn images_in_have_own_pidns(dir: &std::path::Path) -> Result<bool> {
    use cryo_image::ImageKind;
    let inv: pb::InventoryEntry = cryo_image::read_single(dir, ImageKind::Inventory, None)?;
    let tree: Vec<pb::PstreeEntry> = cryo_image::read_all_entries(dir, ImageKind::Pstree, None)?;
    let Some(root) = tree.first() else {
        return Ok(false);
    };
    let core: pb::CoreEntry =
        cryo_image::read_single(dir, ImageKind::Core, Some(u64::from(root.pid)))?;
    Ok(images_have_own_pidns(
        core.ids.as_ref(),
        inv.root_ids.as_ref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_namespace_keeps_the_numbers() {
        let me = Pid(std::process::id() as i32);
        let mut v = PidView::of_root(me).expect("view");
        assert!(!v.own_ns());
        v.add(me).expect("add");
        assert_eq!(v.vpid(me).expect("vpid"), me);
        assert_eq!(v.pid_ns_id(), CRYO_PID_NS_ID);
    }

    #[test]
    fn pidns_of_images() {
        let ids = |n| pb::TaskKobjIdsEntry {
            pid_ns_id: Some(n),
            ..Default::default()
        };
        assert!(images_have_own_pidns(Some(&ids(2)), Some(&ids(1))));
        assert!(!images_have_own_pidns(Some(&ids(1)), Some(&ids(1))));
        // Images without namespace ids: cryo's namespace.
        assert!(!images_have_own_pidns(Some(&ids(2)), None));
    }
}
