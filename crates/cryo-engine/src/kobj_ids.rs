//! Which processes of a dumped tree share a kernel object: the address space (CLONE_VM), the
//! fd table (CLONE_FILES), cwd/root/umask (CLONE_FS) and the signal handlers (CLONE_SIGHAND).
//! The answer is the `TaskKobjIdsEntry` of each process: equal ids, shared object.
//!
//! kcmp(2) is exact, but a tree of n processes would need up to n²/2 calls per kind compared
//! pairwise. Two things keep the count down (CRIU's wish list, W13):
//! - a cheap pre-id read from /proc for each object, equal for processes that share it (the
//!   mm's size counters, the fd numbers and table size, cwd/root/umask, the ignored and
//!   caught signal sets); kcmp runs only between processes whose pre-ids match;
//! - kcmp's answer is an order, not just "equal or not", so within one pre-id the known
//!   objects are kept sorted by it and a new process is placed by binary search: about
//!   log2(k) calls among k objects instead of k ([`KcmpSorted`], which open files use too).
//!
//! The pre-ids must be read while the tree is frozen and before cryo changes anything in it
//! (the remote-syscall scratch mapping changes the mm's size, an image opened in a task its fd
//! list), so [`assign_ids`] runs once, right after the tree is seized.

use crate::error::{Error, Result};
use cryo_image::pb;
use cryo_sys::task::{kcmp, KcmpType};
use cryo_sys::{procfs, Pid};
use std::cmp::Ordering;
use std::collections::HashMap;

/// The object kinds, in the order of [`ProcIds`]'s fields.
const KINDS: [KcmpType; 4] = [
    KcmpType::Vm,
    KcmpType::Files,
    KcmpType::Fs,
    KcmpType::Sighand,
];

/// The ids of one process, and what the assignment cost.
#[derive(Debug, Default)]
pub struct TreeIds {
    /// Per process of the input, in order.
    pub ids: Vec<pb::TaskKobjIdsEntry>,
    /// kcmp calls made.
    pub kcmp_calls: u64,
}

/// Cheap pre-ids of the four objects of `pid`, from /proc.
fn pre_ids(pid: Pid) -> Result<[String; 4]> {
    let status = procfs::read_text(&format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> &str {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
            .unwrap_or("")
    };
    // Sizes that only mapping calls change: RSS would move under reclaim even while frozen.
    let vm = ["VmSize", "VmLck", "VmData", "VmStk", "VmExe", "VmLib"]
        .iter()
        .map(|f| field(f))
        .collect::<Vec<_>>()
        .join(",");
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|source| Error::Path {
            what: "list the fds in".into(),
            path: format!("/proc/{pid}/fd"),
            source,
        })?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    let files = format!("{} {:?}", field("FDSize"), fds);
    let link = |name: &str| {
        std::fs::read_link(format!("/proc/{pid}/{name}"))
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let fs = format!("{}\0{}\0{}", link("cwd"), link("root"), field("Umask"));
    let sighand = format!("{} {}", field("SigIgn"), field("SigCgt"));
    Ok([vm, files, fs, sighand])
}

/// Objects told apart by kcmp: for each cheap pre-id, the objects seen so far as (a holder
/// of it, its id), sorted by kcmp's order, so that a new holder is placed by binary search.
/// `H` names a holder (a process, or a process and an fd).
#[derive(Debug)]
pub struct KcmpSorted<K, H> {
    by_pre: HashMap<K, Vec<(H, u32)>>,
}

impl<K, H> Default for KcmpSorted<K, H> {
    fn default() -> Self {
        KcmpSorted {
            by_pre: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq, H: Copy> KcmpSorted<K, H> {
    /// The id of the object `holder` has, whose pre-id is `pre`: a known one's if kcmp
    /// (`cmp(known holder)`, the order of `holder`'s object against the known one's) finds it
    /// equal, else `new_id()`, remembered. `calls` counts the kcmp calls.
    pub fn id_of(
        &mut self,
        pre: K,
        holder: H,
        mut cmp: impl FnMut(H) -> Result<Ordering>,
        new_id: impl FnOnce() -> Result<u32>,
        calls: &mut u64,
    ) -> Result<u32> {
        let known = self.by_pre.entry(pre).or_default();
        let (mut lo, mut hi) = (0usize, known.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            *calls += 1;
            match cmp(known[mid].0)? {
                Ordering::Equal => return Ok(known[mid].1),
                Ordering::Less => hi = mid,
                Ordering::Greater => lo = mid + 1,
            }
        }
        let id = new_id()?;
        known.insert(lo, (holder, id));
        Ok(id)
    }
}

/// One kind of object of [`KINDS`], numbered from 1.
#[derive(Default)]
struct Objects {
    sorted: KcmpSorted<String, Pid>,
    next_id: u32,
}

impl Objects {
    fn id_of(&mut self, pid: Pid, pre: String, what: KcmpType, calls: &mut u64) -> Result<u32> {
        let next = &mut self.next_id;
        self.sorted.id_of(
            pre,
            pid,
            // An error (the process vanished) is reported as such.
            |other| {
                kcmp(pid, other, what).map_err(|source| Error::Task {
                    what: format!("compare {what:?} with pid {other} (kcmp)"),
                    pid,
                    source,
                })
            },
            || {
                *next += 1;
                Ok(*next)
            },
            calls,
        )
    }
}

/// Assign the kernel-object ids of `pids` (the live processes of a frozen tree).
pub fn assign_ids(pids: &[Pid]) -> Result<TreeIds> {
    let mut kinds: [Objects; 4] = Default::default();
    let mut out = TreeIds::default();
    for &pid in pids {
        let pre = pre_ids(pid)?;
        let mut id = [0u32; 4];
        for (k, pre) in pre.into_iter().enumerate() {
            id[k] = kinds[k].id_of(pid, pre, KINDS[k], &mut out.kcmp_calls)?;
        }
        out.ids.push(pb::TaskKobjIdsEntry {
            vm_id: id[0],
            files_id: id[1],
            fs_id: id[2],
            sighand_id: id[3],
            ..Default::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// A `sleep` held stopped, so its pre-ids hold still.
    fn stopped_sleep() -> Child {
        let c = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        cryo_sys::task::kill(Pid(c.id() as i32), libc::SIGSTOP).expect("stop it");
        std::thread::sleep(std::time::Duration::from_millis(50));
        c
    }

    #[test]
    fn shared_objects_get_one_id_and_others_their_own() {
        let (mut a, mut b) = (stopped_sleep(), stopped_sleep());
        let (pa, pb) = (Pid(a.id() as i32), Pid(b.id() as i32));
        let same = assign_ids(&[pa, pa]).expect("ids");
        assert_eq!(same.ids[0], same.ids[1]);
        // The second process of each kind was found by one kcmp.
        assert_eq!(same.kcmp_calls, 4);
        let two = assign_ids(&[pa, pb]).expect("ids");
        let (x, y) = (two.ids[0], two.ids[1]);
        assert!(x.vm_id != y.vm_id && x.files_id != y.files_id);
        assert!(x.fs_id != y.fs_id && x.sighand_id != y.sighand_id);
        for c in [&mut a, &mut b] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
