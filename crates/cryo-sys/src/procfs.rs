//! Parsers for the /proc files cryo reads (proc(5)). Each parser takes the file's text, so it is
//! tested without a process; `read_*` helpers fetch the text for a PID.

use crate::types::Pid;
use std::io;

/// Errors while reading or parsing a /proc file.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The file could not be read.
    #[error("read {path}")]
    Io {
        /// The /proc path.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file's text was not what proc(5) describes.
    #[error("parse {path}: {what}")]
    Parse {
        /// The /proc path.
        path: String,
        /// What did not parse.
        what: String,
    },
}

fn parse_err(path: &str, what: impl Into<String>) -> ProcError {
    ProcError::Parse {
        path: path.to_string(),
        what: what.into(),
    }
}

/// Read a whole /proc file as text.
pub fn read_text(path: &str) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Io {
        path: path.to_string(),
        source,
    })
}

/// One line of /proc/PID/maps (plus the VmFlags of smaps when read from there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapsEntry {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// Readable.
    pub read: bool,
    /// Writable.
    pub write: bool,
    /// Executable.
    pub exec: bool,
    /// MAP_SHARED (`s`) rather than private (`p`).
    pub shared: bool,
    /// File offset in bytes.
    pub offset: u64,
    /// Device major of the backing file.
    pub dev_major: u32,
    /// Device minor of the backing file.
    pub dev_minor: u32,
    /// Inode of the backing file, 0 for anonymous memory.
    pub inode: u64,
    /// The path column (file path, `[heap]`, `[stack]`, `[vdso]`, ... or empty).
    pub path: String,
    /// The two-letter VmFlags of smaps (empty when parsed from maps).
    pub vm_flags: Vec<String>,
}

impl MapsEntry {
    /// Has the two-letter smaps flag `f` (e.g. "gd" for MAP_GROWSDOWN).
    pub fn has_flag(&self, f: &str) -> bool {
        self.vm_flags.iter().any(|x| x == f)
    }
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    /// Whether the mapping is empty (never, for the kernel's maps).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

fn parse_maps_line(line: &str, path: &str) -> Result<MapsEntry, ProcError> {
    let mut rest = line;
    let next = |rest: &mut &str| -> Option<String> {
        let t = rest.trim_start();
        let end = t.find(' ').unwrap_or(t.len());
        let (tok, r) = t.split_at(end);
        *rest = r;
        if tok.is_empty() {
            None
        } else {
            Some(tok.to_string())
        }
    };
    let bad = || parse_err(path, format!("bad maps line {line:?}"));
    let range = next(&mut rest).ok_or_else(bad)?;
    let perms = next(&mut rest).ok_or_else(bad)?;
    let offset = next(&mut rest).ok_or_else(bad)?;
    let dev = next(&mut rest).ok_or_else(bad)?;
    let inode = next(&mut rest).ok_or_else(bad)?;
    let (s, e) = range.split_once('-').ok_or_else(bad)?;
    let (maj, min) = dev.split_once(':').ok_or_else(bad)?;
    let p = perms.as_bytes();
    if p.len() < 4 {
        return Err(bad());
    }
    Ok(MapsEntry {
        start: u64::from_str_radix(s, 16).map_err(|_| bad())?,
        end: u64::from_str_radix(e, 16).map_err(|_| bad())?,
        read: p[0] == b'r',
        write: p[1] == b'w',
        exec: p[2] == b'x',
        shared: p[3] == b's',
        offset: u64::from_str_radix(&offset, 16).map_err(|_| bad())?,
        dev_major: u32::from_str_radix(maj, 16).map_err(|_| bad())?,
        dev_minor: u32::from_str_radix(min, 16).map_err(|_| bad())?,
        inode: inode.parse().map_err(|_| bad())?,
        path: rest.trim_start().to_string(),
        vm_flags: Vec::new(),
    })
}

/// Parse the text of /proc/PID/maps or /proc/PID/smaps (whose VmFlags lines are attached to the
/// mapping above them; other smaps lines are skipped).
pub fn parse_maps(text: &str, path: &str) -> Result<Vec<MapsEntry>, ProcError> {
    let mut out: Vec<MapsEntry> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            if let Some(last) = out.last_mut() {
                last.vm_flags = flags.split_whitespace().map(str::to_string).collect();
            }
            continue;
        }
        // smaps field lines look like "Rss:   4 kB": a key ending in ':' and no '-' range.
        let first = line.split_whitespace().next().unwrap_or("");
        if first.ends_with(':') {
            continue;
        }
        out.push(parse_maps_line(line, path)?);
    }
    Ok(out)
}

/// The VMAs of `pid`, with VmFlags (from smaps).
pub fn read_smaps(pid: Pid) -> Result<Vec<MapsEntry>, ProcError> {
    let path = format!("/proc/{pid}/smaps");
    parse_maps(&read_text(&path)?, &path)
}

/// The fields of /proc/PID/stat cryo uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stat {
    /// The PID.
    pub pid: i32,
    /// comm, between the parentheses.
    pub comm: String,
    /// The state letter (R, S, D, T, t, Z, ...).
    pub state: char,
    /// Parent PID.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Session.
    pub session: i32,
    /// The controlling terminal's device number (0: none).
    pub tty_nr: i32,
    /// The controlling terminal's foreground process group (-1: none).
    pub tpgid: i32,
    /// Number of threads.
    pub num_threads: i64,
    /// Scheduling priority as the kernel shows it.
    pub priority: i64,
    /// nice value.
    pub nice: i64,
    /// Start of text.
    pub start_code: u64,
    /// End of text.
    pub end_code: u64,
    /// Bottom of the stack.
    pub start_stack: u64,
    /// The CPU the task last ran on.
    pub processor: i64,
    /// Real-time priority.
    pub rt_priority: u64,
    /// Scheduling policy.
    pub policy: u64,
    /// Start of data.
    pub start_data: u64,
    /// End of data.
    pub end_data: u64,
    /// Start of the brk area.
    pub start_brk: u64,
    /// Start of argv.
    pub arg_start: u64,
    /// End of argv.
    pub arg_end: u64,
    /// Start of the environment.
    pub env_start: u64,
    /// End of the environment.
    pub env_end: u64,
    /// Exit code (for zombies).
    pub exit_code: i64,
}

/// Parse /proc/PID/stat (comm may contain spaces and parentheses: it ends at the last ')').
pub fn parse_stat(text: &str, path: &str) -> Result<Stat, ProcError> {
    let open = text.find('(').ok_or_else(|| parse_err(path, "no '('"))?;
    let close = text.rfind(')').ok_or_else(|| parse_err(path, "no ')'"))?;
    if close < open {
        return Err(parse_err(path, "bad comm"));
    }
    let pid = text[..open]
        .trim()
        .parse()
        .map_err(|_| parse_err(path, "bad pid"))?;
    let comm = text[open + 1..close].to_string();
    let f: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    let get = |n: usize| -> Result<&str, ProcError> {
        f.get(n - 3)
            .copied()
            .ok_or_else(|| parse_err(path, format!("no field {n}")))
    };
    let num = |n: usize| -> Result<i64, ProcError> {
        get(n)?
            .parse::<i64>()
            .map_err(|_| parse_err(path, format!("bad field {n}")))
    };
    let unum = |n: usize| -> Result<u64, ProcError> {
        get(n)?
            .parse::<u64>()
            .map_err(|_| parse_err(path, format!("bad field {n}")))
    };
    Ok(Stat {
        pid,
        comm,
        state: get(3)?.chars().next().unwrap_or('?'),
        ppid: num(4)? as i32,
        pgrp: num(5)? as i32,
        session: num(6)? as i32,
        tty_nr: num(7)? as i32,
        tpgid: num(8)? as i32,
        priority: num(18)?,
        nice: num(19)?,
        num_threads: num(20)?,
        start_code: unum(26)?,
        end_code: unum(27)?,
        start_stack: unum(28)?,
        processor: num(39)?,
        rt_priority: unum(40)?,
        policy: unum(41)?,
        start_data: unum(45)?,
        end_data: unum(46)?,
        start_brk: unum(47)?,
        arg_start: unum(48)?,
        arg_end: unum(49)?,
        env_start: unum(50)?,
        env_end: unum(51)?,
        exit_code: num(52)?,
    })
}

/// /proc/PID/stat of `pid`.
pub fn read_stat(pid: Pid) -> Result<Stat, ProcError> {
    let path = format!("/proc/{pid}/stat");
    parse_stat(&read_text(&path)?, &path)
}

/// The fields of /proc/PID/status cryo uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Real, effective, saved, filesystem uid.
    pub uids: [u32; 4],
    /// Real, effective, saved, filesystem gid.
    pub gids: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Inheritable capabilities.
    pub cap_inh: u64,
    /// Permitted capabilities.
    pub cap_prm: u64,
    /// Effective capabilities.
    pub cap_eff: u64,
    /// Bounding set.
    pub cap_bnd: u64,
    /// Ambient capabilities.
    pub cap_amb: u64,
    /// no_new_privs.
    pub no_new_privs: u32,
    /// Seccomp mode.
    pub seccomp: u32,
    /// umask.
    pub umask: u32,
    /// Number of threads.
    pub threads: u32,
    /// Thread-group ID.
    pub tgid: i32,
    /// The task's PID in each pid namespace from the one of this /proc down to its own
    /// (`NSpid`; 0 where the kernel shows none).
    pub ns_pid: Vec<i32>,
    /// Its process group, likewise (`NSpgid`; 0 in a namespace where the group is not seen).
    pub ns_pgid: Vec<i32>,
    /// Its session, likewise (`NSsid`).
    pub ns_sid: Vec<i32>,
}

/// Parse /proc/PID/status.
pub fn parse_status(text: &str, path: &str) -> Result<Status, ProcError> {
    let mut st = Status::default();
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        let bad = || parse_err(path, format!("bad {key} line {val:?}"));
        let ids = |v: &str| -> Result<[u32; 4], ProcError> {
            let n: Vec<u32> = v
                .split_whitespace()
                .map(|x| x.parse::<u32>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            n.try_into().map_err(|_| bad())
        };
        let hex = |v: &str| u64::from_str_radix(v, 16).map_err(|_| bad());
        let pids = |v: &str| -> Result<Vec<i32>, ProcError> {
            v.split_whitespace()
                .map(|x| x.parse::<i32>().map_err(|_| bad()))
                .collect()
        };
        match key {
            "Uid" => st.uids = ids(val)?,
            "Gid" => st.gids = ids(val)?,
            "Groups" => {
                st.groups = val
                    .split_whitespace()
                    .map(|x| x.parse::<u32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| bad())?
            }
            "CapInh" => st.cap_inh = hex(val)?,
            "CapPrm" => st.cap_prm = hex(val)?,
            "CapEff" => st.cap_eff = hex(val)?,
            "CapBnd" => st.cap_bnd = hex(val)?,
            "CapAmb" => st.cap_amb = hex(val)?,
            "NoNewPrivs" => st.no_new_privs = val.parse().map_err(|_| bad())?,
            "Seccomp" => st.seccomp = val.parse().map_err(|_| bad())?,
            "Umask" => st.umask = u32::from_str_radix(val, 8).map_err(|_| bad())?,
            "Threads" => st.threads = val.parse().map_err(|_| bad())?,
            "Tgid" => st.tgid = val.parse().map_err(|_| bad())?,
            "NSpid" => st.ns_pid = pids(val)?,
            "NSpgid" => st.ns_pgid = pids(val)?,
            "NSsid" => st.ns_sid = pids(val)?,
            _ => {}
        }
    }
    Ok(st)
}

/// /proc/PID/status of `pid`.
pub fn read_status(pid: Pid) -> Result<Status, ProcError> {
    let path = format!("/proc/{pid}/status");
    parse_status(&read_text(&path)?, &path)
}

/// The first lines of /proc/PID/fdinfo/FD.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FdInfo {
    /// File position.
    pub pos: u64,
    /// open(2) flags (octal in the file), including O_CLOEXEC for the fd.
    pub flags: u32,
    /// Mount ID.
    pub mnt_id: i32,
    /// Inode number.
    pub ino: u64,
}

/// Parse /proc/PID/fdinfo/FD.
pub fn parse_fdinfo(text: &str, path: &str) -> Result<FdInfo, ProcError> {
    let mut fi = FdInfo::default();
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        let bad = || parse_err(path, format!("bad {key} line {val:?}"));
        match key {
            "pos" => fi.pos = val.parse().map_err(|_| bad())?,
            "flags" => fi.flags = u32::from_str_radix(val, 8).map_err(|_| bad())?,
            "mnt_id" => fi.mnt_id = val.parse().map_err(|_| bad())?,
            "ino" => fi.ino = val.parse().map_err(|_| bad())?,
            _ => {}
        }
    }
    Ok(fi)
}

/// /proc/PID/fdinfo/FD of `pid`.
pub fn read_fdinfo(pid: Pid, fd: i32) -> Result<FdInfo, ProcError> {
    let path = format!("/proc/{pid}/fdinfo/{fd}");
    parse_fdinfo(&read_text(&path)?, &path)
}

/// One POSIX timer from /proc/PID/timers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerInfo {
    /// Timer ID.
    pub id: i32,
    /// Signal number delivered.
    pub signo: i32,
    /// sigev_value as the kernel prints it.
    pub sigval: u64,
    /// Notification kind: "signal", "thread", "none".
    pub notify: String,
    /// The PID or TID notified.
    pub notify_tid: i32,
    /// Whether the notification goes to a thread (SIGEV_THREAD_ID: "tid" in the file).
    pub notify_thread_id: bool,
    /// Clock ID.
    pub clock_id: i32,
}

/// Parse /proc/PID/timers.
pub fn parse_timers(text: &str, path: &str) -> Result<Vec<TimerInfo>, ProcError> {
    let mut out: Vec<TimerInfo> = Vec::new();
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        let bad = || parse_err(path, format!("bad {key} line {val:?}"));
        match key {
            "ID" => out.push(TimerInfo {
                id: val.parse().map_err(|_| bad())?,
                ..Default::default()
            }),
            "signal" => {
                let t = out.last_mut().ok_or_else(bad)?;
                let (sig, v) = val.split_once('/').ok_or_else(bad)?;
                t.signo = sig.parse().map_err(|_| bad())?;
                t.sigval =
                    u64::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|_| bad())?;
            }
            "notify" => {
                let t = out.last_mut().ok_or_else(bad)?;
                let (kind, who) = val.split_once('/').ok_or_else(bad)?;
                t.notify = kind.to_string();
                if let Some((kind, n)) = who.split_once('.') {
                    t.notify_thread_id = kind == "tid";
                    t.notify_tid = n.parse().map_err(|_| bad())?;
                }
            }
            "ClockID" => {
                out.last_mut().ok_or_else(bad)?.clock_id = val.parse().map_err(|_| bad())?
            }
            _ => {}
        }
    }
    Ok(out)
}

/// /proc/PID/timers of `pid`.
pub fn read_timers(pid: Pid) -> Result<Vec<TimerInfo>, ProcError> {
    let path = format!("/proc/{pid}/timers");
    parse_timers(&read_text(&path)?, &path)
}

/// The auxiliary vector of `pid` (/proc/PID/auxv) as pairs of words, ending with AT_NULL.
pub fn read_auxv(pid: Pid) -> Result<Vec<u64>, ProcError> {
    let path = format!("/proc/{pid}/auxv");
    let bytes = std::fs::read(&path).map_err(|source| ProcError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// The thread IDs of `pid` (/proc/PID/task).
pub fn read_threads(pid: Pid) -> Result<Vec<Pid>, ProcError> {
    let path = format!("/proc/{pid}/task");
    let dir = std::fs::read_dir(&path).map_err(|source| ProcError::Io {
        path: path.clone(),
        source,
    })?;
    let mut out = Vec::new();
    for e in dir {
        let e = e.map_err(|source| ProcError::Io {
            path: path.clone(),
            source,
        })?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(Pid(n));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_smaps() {
        let text =
            "55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]\n\
7f0000000000-7f0000001000 r-xs 00002000 fe:01 1234   /tmp/a file (deleted)\n\
Size:                  4 kB\n\
VmFlags: rd ex sh mr mw me ms\n\
7ffee2885000-7ffee28a6000 rw-p 00000000 00:00 0\n";
        let m = parse_maps(text, "x").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].start, 0x55d0c0a00000);
        assert_eq!(m[0].path, "[heap]");
        assert!(m[1].shared && m[1].exec && !m[1].write);
        assert_eq!(m[1].offset, 0x2000);
        assert_eq!(
            (m[1].dev_major, m[1].dev_minor, m[1].inode),
            (0xfe, 1, 1234)
        );
        assert_eq!(m[1].path, "/tmp/a file (deleted)");
        assert!(m[1].has_flag("sh"));
        assert_eq!(m[2].path, "");
        assert!(parse_maps("zz-yy rw-p", "x").is_err());
    }

    #[test]
    fn stat_with_odd_comm() {
        let text = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 100 1000 10 18446744073709551615 4194304 4196000 140730000000000 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 6000000 6001000 7000000 140730000001000 140730000001100 140730000001100 140730000002000 0\n";
        let s = parse_stat(text, "x").unwrap();
        assert_eq!(s.comm, "a) b");
        assert_eq!(s.state, 'S');
        assert_eq!((s.ppid, s.pgrp, s.session), (1, 42, 42));
        assert_eq!(s.start_code, 4194304);
        assert_eq!(s.start_brk, 7000000);
        assert_eq!(s.env_end, 140730000002000);
        assert!(parse_stat("42 (x) S 1", "x").is_err());
    }

    #[test]
    fn status_fields() {
        let text = "Name:\tx\nUmask:\t0027\nTgid:\t42\nUid:\t1000\t1000\t1000\t1000\nGid:\t1\t2\t3\t4\nGroups:\t1000 2000 \nCapInh:\t0000000000000000\nCapEff:\t0000000000000401\nNoNewPrivs:\t1\nThreads:\t1\n";
        let s = parse_status(text, "x").unwrap();
        assert_eq!(s.umask, 0o27);
        assert_eq!(s.uids, [1000; 4]);
        assert_eq!(s.gids, [1, 2, 3, 4]);
        assert_eq!(s.groups, vec![1000, 2000]);
        assert_eq!(s.cap_eff, 0x401);
        assert_eq!(s.no_new_privs, 1);
        assert!(parse_status("Uid:\t1 2\n", "x").is_err());
    }

    #[test]
    fn fdinfo_and_timers() {
        let f = parse_fdinfo("pos:\t12\nflags:\t02102001\nmnt_id:\t29\nino:\t77\n", "x").unwrap();
        assert_eq!((f.pos, f.flags, f.mnt_id, f.ino), (12, 0o2102001, 29, 77));
        let t = parse_timers("ID: 0\nsignal: 14/0000000000c0ffee\nnotify: signal/pid.1234\nClockID: 1\nID: 1\nsignal: 10/0000000000000000\nnotify: thread/tid.99\nClockID: 0\n", "x").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].signo, t[0].sigval, t[0].clock_id), (14, 0xc0ffee, 1));
        assert_eq!(
            (t[1].notify.as_str(), t[1].notify_tid, t[1].notify_thread_id),
            ("thread", 99, true)
        );
    }
}
