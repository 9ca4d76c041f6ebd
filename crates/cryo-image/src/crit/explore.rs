//! `crit x DIR ps|fds|mems|rss`: CRIU crit's explorers (`crit/crit/__main__.py`), same output.

use crate::frame::ImageReader;
use crate::kind::ImageKind;
use crate::pb;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Cursor;
use std::path::Path;

/// Error of an explorer: the image that could not be read and why.
#[derive(Debug, thiserror::Error)]
#[error("{image}: {reason}")]
pub struct ExploreError {
    /// The image file.
    pub image: String,
    /// Why.
    pub reason: String,
}

type Res<T> = Result<T, ExploreError>;

fn load<M: prost::Message + Default>(dir: &Path, kind: ImageKind, id: Option<u64>) -> Res<Vec<M>> {
    let name = kind.file_name(id).map_err(|e| ExploreError {
        image: format!("{kind:?}"),
        reason: e.to_string(),
    })?;
    let err = |reason: String| ExploreError {
        image: name.clone(),
        reason,
    };
    let data = std::fs::read(dir.join(&name)).map_err(|e| err(e.to_string()))?;
    let len = data.len() as u64;
    let mut r = ImageReader::with_len(Cursor::new(data), kind, name.clone(), len)
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(m) = r.read_entry::<M>().map_err(|e| err(e.to_string()))? {
        out.push(m);
    }
    Ok(out)
}

fn first<M: prost::Message + Default>(dir: &Path, kind: ImageKind, id: u64) -> Res<M> {
    load::<M>(dir, kind, Some(id))?
        .into_iter()
        .next()
        .ok_or_else(|| ExploreError {
            image: kind.file_name(Some(id)).unwrap_or_default(),
            reason: "no entries".into(),
        })
}

/// Runs explorer `what` (`ps`, `fds`, `mems`, `rss`) on `dir`; the text crit prints.
pub fn explore(dir: &Path, what: &str) -> Res<String> {
    let mut fx = Files::new(dir);
    match what {
        "ps" => ps(dir),
        "fds" => fds(dir, &mut fx),
        "mems" => mems(dir, &mut fx),
        "rss" => rss(dir, &mut fx),
        _ => Err(ExploreError {
            image: String::new(),
            reason: format!("unknown explorer {what}"),
        }),
    }
}

fn ps(dir: &Path) -> Res<String> {
    // As crit: one task per pid (a later entry replaces an earlier one in its place), a task
    // with ppid 0 is a root, not a child, and the last root is shown. Pids being unique and
    // roots no children, the tree below the root has no cycle, whatever the image says.
    let mut tree: Vec<pb::PstreeEntry> = Vec::new();
    for p in load::<pb::PstreeEntry>(dir, ImageKind::Pstree, None)? {
        match tree.iter_mut().find(|t| t.pid == p.pid) {
            Some(t) => *t = p,
            None => tree.push(p),
        }
    }
    let mut comm = HashMap::new();
    for p in &tree {
        let core: pb::CoreEntry = first(dir, ImageKind::Core, u64::from(p.pid))?;
        comm.insert(p.pid, core.tc.map(|t| t.comm).unwrap_or_default());
    }
    let mut out = format!("{:>7}{:>7}{:>7}   {}\n", "PID", "PGID", "SID", "COMM");
    // Depth first with a stack of its own: an image can chain any number of tasks.
    let mut stack: Vec<(&pb::PstreeEntry, usize)> = tree
        .iter()
        .rev()
        .find(|p| p.ppid == 0)
        .map(|root| (root, 0))
        .into_iter()
        .collect();
    while let Some((p, depth)) = stack.pop() {
        let _ = writeln!(
            out,
            "{:>7}{:>7}{:>7}   {}{}",
            p.pid,
            p.pgid,
            p.sid,
            " ".repeat(4 * depth),
            comm.get(&p.pid).map_or("", String::as_str)
        );
        let kids = tree
            .iter()
            .filter(|k| k.ppid == p.pid && k.ppid != 0 && k.pid != p.pid);
        stack.extend(kids.rev().map(|k| (k, depth + 1)));
    }
    Ok(out)
}

/// File descriptions by id, as crit names them.
struct Files<'a> {
    dir: &'a Path,
    files: Option<Vec<pb::FileEntry>>,
    reg: Option<Vec<pb::RegFileEntry>>,
    pipes: Option<Vec<pb::PipeEntry>>,
    unix: Option<Vec<pb::UnixSkEntry>>,
    cache: HashMap<(i32, u32), String>,
}

impl<'a> Files<'a> {
    fn new(dir: &'a Path) -> Self {
        Files {
            dir,
            files: None,
            reg: None,
            pipes: None,
            unix: None,
            cache: HashMap::new(),
        }
    }

    fn in_files(&mut self, id: u32) -> Option<&pb::FileEntry> {
        let dir = self.dir;
        self.files
            .get_or_insert_with(|| load(dir, ImageKind::Files, None).unwrap_or_default())
            .iter()
            .find(|f| f.id == id)
    }

    fn reg(&mut self, id: u32) -> Res<String> {
        let name = if let Some(f) = self.in_files(id) {
            f.reg.as_ref().map(|r| r.name.clone())
        } else {
            let dir = self.dir;
            if self.reg.is_none() {
                self.reg = Some(load(dir, ImageKind::RegFiles, None)?);
            }
            self.reg
                .iter()
                .flatten()
                .find(|r| r.id == id)
                .map(|r| r.name.clone())
        };
        Ok(name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "unknown path".into()))
    }

    fn pipe(&mut self, id: u32) -> Res<String> {
        let p = if let Some(f) = self.in_files(id) {
            f.pipe.as_ref().map(|p| p.pipe_id)
        } else {
            let dir = self.dir;
            if self.pipes.is_none() {
                self.pipes = Some(load(dir, ImageKind::Pipes, None)?);
            }
            self.pipes
                .iter()
                .flatten()
                .find(|p| p.id == id)
                .map(|p| p.pipe_id)
        };
        Ok(match p {
            Some(p) if p != 0 => format!("pipe[{p}]"),
            _ => "pipe[?]".into(),
        })
    }

    fn unix(&mut self, id: u32) -> Res<String> {
        let u = if let Some(f) = self.in_files(id) {
            f.usk.clone()
        } else {
            let dir = self.dir;
            if self.unix.is_none() {
                self.unix = Some(load(dir, ImageKind::Unixsk, None)?);
            }
            self.unix.iter().flatten().find(|u| u.id == id).cloned()
        };
        Ok(match u {
            None => "unix[?]".into(),
            Some(u) => {
                let n = if u.name.is_empty() {
                    String::new()
                } else {
                    // As crit's JSON shows bytes: quoted-printable (a NUL is `=00`).
                    format!(" {}", super::codec::qp_encode(&u.name))
                };
                format!("unix[{} ({}){n}]", u.ino, u.peer)
            }
        })
    }

    fn get(&mut self, ty: i32, id: u32) -> Res<String> {
        if let Some(s) = self.cache.get(&(ty, id)) {
            return Ok(s.clone());
        }
        use pb::FdTypes as T;
        let s = match T::try_from(ty) {
            Ok(T::Reg) => self.reg(id)?,
            Ok(T::Pipe) => self.pipe(id)?,
            Ok(T::Unixsk) => self.unix(id)?,
            Ok(t) => format!("{}.{id}", t.as_str_name()),
            Err(_) => format!("{ty}.{id}"),
        };
        self.cache.insert((ty, id), s.clone());
        Ok(s)
    }
}

const REG: i32 = pb::FdTypes::Reg as i32;

fn fds(dir: &Path, fx: &mut Files<'_>) -> Res<String> {
    let mut out = String::new();
    for p in load::<pb::PstreeEntry>(dir, ImageKind::Pstree, None)? {
        let pid = u64::from(p.pid);
        let ids: pb::TaskKobjIdsEntry = first(dir, ImageKind::Ids, pid)?;
        let fdt = ids.files_id;
        let fdi = load::<pb::FdinfoEntry>(dir, ImageKind::Fdinfo, Some(u64::from(fdt)))?;
        let _ = writeln!(out, "{pid}");
        for fd in fdi {
            let _ = writeln!(out, "\t{:>7}: {}", fd.fd, fx.get(fd.r#type, fd.id)?);
        }
        let fs: pb::FsEntry = first(dir, ImageKind::Fs, pid)?;
        let _ = writeln!(out, "\t{:>7}: {}", "cwd", fx.get(REG, fs.cwd_id)?);
        let _ = writeln!(out, "\t{:>7}: {}", "root", fx.get(REG, fs.root_id)?);
    }
    Ok(out)
}

fn mems(dir: &Path, fx: &mut Files<'_>) -> Res<String> {
    let mut out = String::new();
    let mut vids: HashMap<u64, u64> = HashMap::new();
    let mut vid = |id: u64| {
        let n = vids.len() as u64 + 1;
        *vids.entry(id).or_insert(n)
    };
    for p in load::<pb::PstreeEntry>(dir, ImageKind::Pstree, None)? {
        let pid = u64::from(p.pid);
        let mm: pb::MmEntry = first(dir, ImageKind::Mm, pid)?;
        let _ = writeln!(out, "{pid}");
        let exe = fx.get(REG, mm.exe_file_id)?;
        let _ = writeln!(out, "\t{:<36}    {exe}", "exe");
        for vma in &mm.vmas {
            let st = vma.status;
            let mut fname = if st & (1 << 10) != 0 {
                format!(" ips[{:x}]", vid(vma.shmid))
            } else if st & (1 << 8) != 0 {
                format!(" shmem[{:x}]", vid(vma.shmid))
            } else if st & (1 << 11) != 0 {
                format!(" packet[{:x}]", vid(vma.shmid))
            } else if st & ((1 << 6) | (1 << 7)) != 0 {
                let mut s = format!(" {}", fx.get(REG, vma.shmid as u32)?);
                if vma.pgoff != 0 {
                    let _ = write!(s, " + {:#x}", vma.pgoff);
                }
                if st & (1 << 7) != 0 {
                    s.push_str(" (s)");
                }
                s
            } else if st & (1 << 1) != 0 {
                " [stack]".into()
            } else if st & (1 << 2) != 0 {
                " [vsyscall]".into()
            } else if st & (1 << 3) != 0 {
                " [vdso]".into()
            } else if vma.flags & 0x0100 != 0 {
                " [stack?]".into()
            } else {
                String::new()
            };
            if st & 1 == 0 {
                fname.push_str(" *");
            }
            let prot = format!(
                "{}{}{}",
                if vma.prot & 1 != 0 { 'r' } else { '-' },
                if vma.prot & 2 != 0 { 'w' } else { '-' },
                if vma.prot & 4 != 0 { 'x' } else { '-' }
            );
            let astr = format!("{:08x}-{:08x}", vma.start, vma.end);
            let _ = writeln!(out, "\t{astr:<36}{prot}{fname}");
        }
    }
    Ok(out)
}

fn rss(dir: &Path, fx: &mut Files<'_>) -> Res<String> {
    let mut out = String::new();
    for p in load::<pb::PstreeEntry>(dir, ImageKind::Pstree, None)? {
        let pid = u64::from(p.pid);
        let vmas = first::<pb::MmEntry>(dir, ImageKind::Mm, pid)?.vmas;
        // The head decodes as an entry (same tag 1); skipped as crit's pms[1:].
        let pms = load::<pb::PagemapEntry>(dir, ImageKind::Pagemap, Some(pid))?;
        let _ = writeln!(out, "{pid}");
        let mut vmi = 0usize;
        let mut pvmi: isize = -1;
        for pm in pms.iter().skip(1) {
            let nr = pm.nr_pages.unwrap_or(u64::from(pm.compat_nr_pages));
            let pstr = format!("\t{:x} / {:<8}", pm.vaddr, nr);
            while vmi < vmas.len() && vmas[vmi].end <= pm.vaddr {
                vmi += 1;
            }
            // Python's integers do not wrap: neither may the end of the run nor, below, the
            // page count of a VMA whose end is below its start.
            let pme = i128::from(pm.vaddr) + (i128::from(nr) << 12);
            let mut vstr = String::new();
            while vmi < vmas.len() && i128::from(vmas[vmi].start) < pme {
                let vma = &vmas[vmi];
                if vmi as isize == pvmi {
                    vstr.push_str(" ~");
                } else {
                    let _ = write!(
                        vstr,
                        " {:08x} / {:<8}",
                        vma.start,
                        (i128::from(vma.end) - i128::from(vma.start)) >> 12
                    );
                    if vma.status & ((1 << 6) | (1 << 7)) != 0 {
                        let _ = write!(vstr, " {}", fx.get(REG, vma.shmid as u32)?);
                    }
                    pvmi = vmi as isize;
                }
                let _ = write!(vstr, "\n\t{:23}", "");
                vmi += 1;
            }
            vmi = vmi.saturating_sub(1);
            let _ = writeln!(out, "{pstr:<24}{vstr}");
        }
    }
    Ok(out)
}
