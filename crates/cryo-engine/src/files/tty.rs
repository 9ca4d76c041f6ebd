//! Terminals: pseudo-terminal pairs made by the tree, the controlling terminal and foreground
//! group of each of its sessions, /dev/tty, the system console, virtual consoles, and the
//! terminal a shell job shares with its caller (`--shell-job`). As CRIU writes them
//! (criu/tty.c): a `FileEntry { type: TTY, tty: TtyFileEntry }` per open file with a REG entry
//! of its path (`regf_id`), one `TtyInfoEntry` per terminal (each side of a pty is one) in
//! `tty-info.img`, and the data queued in a pty in `tty-data.img`.
//!
//! Terminal ids are CRIU's: 2N for the slave of pty N (/dev/pts/N), 2N+1 for its master
//! (/dev/ptmx), 2004 the console, 2008 a virtual console, 2012 /dev/tty (pty indices above 1000
//! have no id there and are refused).
//!
//! # Dump
//! Everything is read through cryo's copy of the task's file, mostly from the master: a
//! master's ioctls answer for the pair (termios, locked termios, window size, session,
//! foreground group), and for itself (index, lock, packet mode, exclusive mode). A slave whose
//! master is not in the tree is refused, unless it is hung up (its master was closed: only
//! that is kept) or the dump is a shell job's (`--shell-job`: the terminal stays with the
//! caller; its session is the holder's if it is that process's controlling terminal).
//! /dev/tty is kept as "the controlling terminal", with the holder's session and foreground
//! group; it needs that terminal to be in the dump (or `--shell-job`).
//!
//! Data in flight, once every process is dumped (the tree is frozen): what the slave wrote and
//! the master has not read, read from the master (FIONREAD bytes at a time, poll(2) first so
//! that the kernel's pending buffer work is done); what the master wrote and the slave has not
//! read, from a new slave file (TIOCGPTPEER, non-blocking): in canonical mode the complete lines
//! one read each, then the partial line with ICANON off for a moment. The input is recorded as
//! the bytes to type into the master to give the same queue (see [`encode_input`]). Both are
//! written back at once, under a transparent termios ([`transparent`]), so that a tree left
//! running (or a failed dump) finds its terminal as it was.
//!
//! # Restore
//! A pty pair is made once, lazily, in cryo: /dev/ptmx is opened until it gives index N (the
//! lower indices it passes are closed again); a restore whose index is taken by another
//! terminal fails, naming it (a pty made at another index would make a program that opens
//! /dev/pts/N by name open someone else's terminal). Then: unlocked, the queued data written
//! under the transparent termios, the dumped termios, locked termios, window size and packet
//! mode set, the slave's owner and mode. The master entry gets cryo's master file, each slave
//! entry a new open of the slave (TIOCGPTPEER). A hung-up slave is opened on a pair whose master
//! cryo closes once every process has its files (the kernel hangs the slave up). The terminal
//! of a shell job is opened by path.
//!
//! The controlling terminal is set right after its session leader calls setsid(2), before it
//! forks its session's members, which inherit it at fork as they did ([`FdKind::new_session`]:
//! a slave file put into the leader, TIOCSCTTY, closed). The foreground group is set by the
//! leader once every process and group of the tree exists ([`FdKind::session_ready`]: TIOCSPGRP
//! through /dev/tty). /dev/tty is opened by the process itself ([`Opened::InPuppet`]), once it
//! has its controlling terminal. The lock and exclusive modes come last
//! ([`FdKind::after_fds`]), when nothing is to open the slave any more.
//!
//! # What is not kept
//! A pending packet-mode status byte (read, and so consumed, with the data); which processes of
//! a session did not have its controlling terminal (all get it, TIOCNOTTY is not replayed); a
//! controlling terminal no process of the tree holds a file of (master, slave or /dev/tty);
//! whether a master-only pair's slave was never opened or opened and closed again (restored as
//! never opened, unless it is a session's controlling terminal or has data queued); an input
//! line ended by an escaped line-ending character is told from one ended by that character
//! only by its last byte.

use super::kind::{any_kind, FdKind, FdParams, Opened};
use super::table::FileTable;
use super::transfer::FdSource;
use crate::cx::{DumpCx, RestoreCx};
use crate::error::{Error, Result, TaskCtx};
use crate::remote::Injector;
use cryo_image::{pb, ImageKind};
use cryo_sys::tty::{self as sys, Termios, Winsize, NCCS};
use cryo_sys::{procfs, Pid, RemoteFd};
use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use tracing::{debug, warn};

/// Highest pty index CRIU's terminal ids have room for.
pub const MAX_PTY_INDEX: u32 = 1000;
/// Terminal id of the console (CRIU's `CONSOLE_INDEX << 1`).
const CONSOLE_ID: u32 = 1002 << 1;
/// Terminal id of a virtual console (`VT_INDEX << 1`).
const VT_ID: u32 = 1004 << 1;
/// Terminal id of /dev/tty (`CTTY_INDEX << 1`).
const CTTY_ID: u32 = 1006 << 1;
/// At most this much queued data is kept per direction of a pty (the kernel's line
/// discipline holds 4 KiB, its buffers a few more).
const MAX_QUEUED_BYTES: usize = 64 << 10;

/// What a terminal file is, by its device number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    /// A pty master (/dev/ptmx, /dev/pts/ptmx).
    Master,
    /// A pty slave (/dev/pts/N).
    Slave,
    /// /dev/tty: the opener's controlling terminal.
    Ctty,
    /// /dev/console.
    Console,
    /// A virtual console (/dev/ttyN, N in 1..=63).
    Vt,
}

/// The driver of character device `major:minor`, or what it is when cryo refuses it; `None`
/// when it is no terminal.
fn driver_of(major: u64, minor: u64) -> Option<std::result::Result<Driver, String>> {
    use sys::{PTY_MAJOR_COUNT, PTY_MASTER_MAJOR, PTY_SLAVE_MAJOR, TTYAUX_MAJOR, TTY_MAJOR};
    Some(match (major, minor) {
        (TTYAUX_MAJOR, 0) => Ok(Driver::Ctty),
        (TTYAUX_MAJOR, 1) => Ok(Driver::Console),
        (TTYAUX_MAJOR, 2) => Ok(Driver::Master),
        (m, _) if (PTY_MASTER_MAJOR..PTY_MASTER_MAJOR + PTY_MAJOR_COUNT).contains(&m) => {
            Ok(Driver::Master)
        }
        (m, _) if (PTY_SLAVE_MAJOR..PTY_SLAVE_MAJOR + PTY_MAJOR_COUNT).contains(&m) => {
            Ok(Driver::Slave)
        }
        (TTY_MAJOR, 1..=63) => Ok(Driver::Vt),
        (TTY_MAJOR, 0) => Err(
            "the current virtual console (/dev/tty0), which cryo cannot tell \
                               from another after a restore: open /dev/ttyN by number"
                .into(),
        ),
        // Serial lines: 4:64.., USB serial (188) and low-density serial (204) ports.
        (TTY_MAJOR, _) | (188, _) | (204, _) => Err(format!(
            "a serial line ({major}:{minor}), which cryo does not restore (a line's settings \
             belong to the device on the other end)"
        )),
        _ => return None,
    })
}

/// The terminal id of `driver` at pty index `index` (CRIU's `tty_gen_id`).
fn info_id(driver: Driver, index: u32) -> u32 {
    match driver {
        Driver::Master => (index << 1) | 1,
        Driver::Slave => index << 1,
        Driver::Console => CONSOLE_ID,
        Driver::Vt => VT_ID,
        Driver::Ctty => CTTY_ID,
    }
}

/// The pty index of `info`, which must be a pty's.
fn pty_index(info: &pb::TtyInfoEntry) -> Result<u32> {
    match (&info.pty, info.r#type == pb::TtyType::Pty as i32) {
        (Some(p), true) => Ok(p.index),
        _ => Err(Error::BadImage {
            image: "tty-info.img".into(),
            what: format!("terminal {} is no pty", info.id),
        }),
    }
}

/// Whether `info` is a pty master's (by its device number, as CRIU decides).
fn is_master(info: &pb::TtyInfoEntry) -> bool {
    let rdev = u64::from(info.rdev);
    let (major, minor) = (
        (rdev >> 8) & 0xfff,
        (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
    );
    matches!(driver_of(major, minor), Some(Ok(Driver::Master)))
}

// ---------------------------------------------------------------------------------------------
// Image conversion (no processes involved)

/// `termios` as CRIU's `TermiosEntry`: CRIU copies glibc's 32 control characters into the
/// repeated uint32 field as raw memory, 4 to an entry (`termios_copy` in criu/tty.c), in an
/// array of 19 entries; the kernel's 19 characters fill the first 5.
pub fn termios_entry(t: &Termios) -> pb::TermiosEntry {
    let mut cc = [0u8; 4 * NCCS];
    cc[..NCCS].copy_from_slice(&t.c_cc);
    pb::TermiosEntry {
        c_iflag: t.c_iflag,
        c_oflag: t.c_oflag,
        c_cflag: t.c_cflag,
        c_lflag: t.c_lflag,
        c_line: u32::from(t.c_line),
        c_ispeed: 0,
        c_ospeed: 0,
        c_cc: cc
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    }
}

/// The kernel termios of CRIU's `TermiosEntry` (see [`termios_entry`]).
pub fn termios_of(e: &pb::TermiosEntry) -> Result<Termios> {
    if e.c_cc.len() < NCCS.div_ceil(4) {
        return Err(Error::BadImage {
            image: "tty-info.img".into(),
            what: format!("termios with {} control-character words", e.c_cc.len()),
        });
    }
    let bytes: Vec<u8> = e.c_cc.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut c_cc = [0u8; NCCS];
    c_cc.copy_from_slice(&bytes[..NCCS]);
    Ok(Termios {
        c_iflag: e.c_iflag,
        c_oflag: e.c_oflag,
        c_cflag: e.c_cflag,
        c_lflag: e.c_lflag,
        c_line: e.c_line as u8,
        c_cc,
    })
}

fn winsize_entry(w: &Winsize) -> pb::WinsizeEntry {
    pb::WinsizeEntry {
        ws_row: u32::from(w.ws_row),
        ws_col: u32::from(w.ws_col),
        ws_xpixel: u32::from(w.ws_xpixel),
        ws_ypixel: u32::from(w.ws_ypixel),
    }
}

fn winsize_of(e: &pb::WinsizeEntry) -> Winsize {
    Winsize {
        ws_row: e.ws_row as u16,
        ws_col: e.ws_col as u16,
        ws_xpixel: e.ws_xpixel as u16,
        ws_ypixel: e.ws_ypixel as u16,
    }
}

/// `c` is set (0 is _POSIX_VDISABLE on Linux).
fn cc(t: &Termios, i: u32) -> Option<u8> {
    Some(t.c_cc[i as usize]).filter(|&c| c != 0)
}

fn has(flags: u32, bit: u32) -> bool {
    flags & bit != 0
}

/// The termios under which bytes written into the master land in the slave's input queue as
/// they are, and bytes written into the slave reach the master as they are: no echo, no
/// signals, no flow control, no input translation, no output processing, no editing
/// characters; canonical mode, its line ends and the literal-next character (IEXTEN) as in `t`,
/// so that lines and their ends come out as [`encode_input`] wrote them.
pub fn transparent(t: &Termios) -> Termios {
    let mut r = *t;
    r.c_iflag &= !(libc::ICRNL
        | libc::INLCR
        | libc::IGNCR
        | libc::IUCLC
        | libc::ISTRIP
        | libc::IXON
        | libc::IXOFF
        | libc::PARMRK
        | libc::INPCK);
    r.c_oflag &= !libc::OPOST;
    r.c_lflag &= !(libc::ECHO
        | libc::ECHOE
        | libc::ECHOK
        | libc::ECHONL
        | libc::ECHOCTL
        | libc::ECHOPRT
        | libc::ECHOKE
        | libc::ISIG
        | libc::TOSTOP
        | libc::EXTPROC);
    for i in [libc::VERASE, libc::VKILL, libc::VWERASE, libc::VREPRINT] {
        r.c_cc[i] = 0;
    }
    if !has(t.c_lflag, libc::ICANON) {
        r.c_cc[libc::VMIN] = 1;
        r.c_cc[libc::VTIME] = 0;
    }
    r
}

/// One line read from a slave in canonical mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// What a read returned: the line with its end character (newline, VEOL, VEOL2), or
    /// without one for a line ended by VEOF (end of file).
    pub text: Vec<u8>,
}

/// The bytes to type into the master, under [`transparent`]`(t)`, to give back a slave's
/// input queue of complete `lines` and a `partial` line (CRIU's `tty-data.img` holds what is
/// written into the master). In canonical mode every character that would be special there is
/// preceded by the literal-next character (when IEXTEN gives one), except a line's own end, and
/// a line ended by end-of-file gets VEOF back; in non-canonical mode the queue is the bytes
/// themselves.
pub fn encode_input(t: &Termios, lines: &[Line], partial: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if !has(t.c_lflag, libc::ICANON) {
        for l in lines {
            out.extend_from_slice(&l.text);
        }
        out.extend_from_slice(partial);
        return out;
    }
    let iexten = has(t.c_lflag, libc::IEXTEN);
    let lnext = cc(t, libc::VLNEXT as u32).filter(|_| iexten);
    let eof = cc(t, libc::VEOF as u32);
    let eol = cc(t, libc::VEOL as u32);
    let eol2 = cc(t, libc::VEOL2 as u32).filter(|_| iexten);
    // Every character any of the dumped settings could take as special.
    let mut special = vec![b'\n', b'\r'];
    for i in [
        libc::VINTR,
        libc::VQUIT,
        libc::VERASE,
        libc::VKILL,
        libc::VEOF,
        libc::VEOL,
        libc::VEOL2,
        libc::VSTART,
        libc::VSTOP,
        libc::VSUSP,
        libc::VREPRINT,
        libc::VWERASE,
        libc::VLNEXT,
    ] {
        if let Some(c) = cc(t, i as u32) {
            special.push(c);
        }
    }
    let is_end = |c: u8| c == b'\n' || Some(c) == eol || Some(c) == eol2;
    let put = |out: &mut Vec<u8>, body: &[u8]| {
        for &c in body {
            if let (Some(l), true) = (lnext, special.contains(&c)) {
                out.push(l);
            }
            out.push(c);
        }
    };
    for l in lines {
        match l.text.split_last() {
            Some((&last, body)) if is_end(last) => {
                put(&mut out, body);
                out.push(last);
            }
            _ => {
                put(&mut out, &l.text);
                if let Some(e) = eof {
                    out.push(e);
                }
            }
        }
    }
    put(&mut out, partial);
    out
}

/// The `tty-info.img` entry of a terminal whose file `f` was dumped, with everything but the
/// session and the pty bits.
fn info_of(
    id: u32,
    driver: Driver,
    index: u32,
    meta: &std::fs::Metadata,
    f: BorrowedFd<'_>,
) -> std::io::Result<pb::TtyInfoEntry> {
    let ty = match driver {
        Driver::Master | Driver::Slave => pb::TtyType::Pty,
        Driver::Console => pb::TtyType::Console,
        Driver::Vt => pb::TtyType::Vt,
        Driver::Ctty => pb::TtyType::Ctty,
    };
    let mut info = pb::TtyInfoEntry {
        id,
        r#type: ty as i32,
        locked: false,
        exclusive: false,
        packet_mode: false,
        sid: 0,
        pgrp: 0,
        rdev: meta.rdev() as u32,
        dev: Some(meta.dev() as u32),
        pty: matches!(driver, Driver::Master | Driver::Slave).then_some(pb::TtyPtyEntry { index }),
        uid: Some(meta.uid()),
        gid: Some(meta.gid()),
        ..Default::default()
    };
    match sys::termios(f) {
        // A hung-up file: only what is above.
        Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(info),
        Err(e) => return Err(e),
        Ok(t) => info.termios = Some(termios_entry(&t)),
    }
    // Another line discipline (PPP, SLIP, a serial protocol) would be set again by nobody,
    // and its queues read by no one.
    let ldisc = sys::line_discipline(f)?;
    if ldisc != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("a terminal with line discipline {ldisc} (only N_TTY, 0, is restored)"),
        ));
    }
    info.termios_locked = Some(termios_entry(&sys::locked_termios(f)?));
    info.winsize = Some(winsize_entry(&sys::winsize(f)?));
    info.exclusive = sys::exclusive(f)?;
    if driver == Driver::Master {
        info.locked = sys::pty_locked(f)?;
        info.packet_mode = sys::packet_mode(f)?;
    }
    Ok(info)
}

// ---------------------------------------------------------------------------------------------
// The kind

/// Dump: what is known of one pty index.
#[derive(Debug, Default)]
struct DumpPty {
    /// cryo's copy of the master, if a process of the tree holds it.
    master: Option<File>,
    /// A slave file of the tree, for messages: "fd N of pid P".
    slave_at: Option<String>,
    /// The slave files are hung up (the master was closed).
    hung: bool,
}

/// Restore: how pty index N is made again.
#[derive(Debug, Default)]
struct PtyPlan {
    /// The master's file entry: (file id, regf id, status flags).
    master: Option<(u32, Option<u32>, u32)>,
    /// The master's and the slave's terminal info.
    master_info: Option<pb::TtyInfoEntry>,
    slave_info: Option<pb::TtyInfoEntry>,
    /// Some slave file is restored.
    slaves: bool,
    /// The regf id of a slave entry (for its mode, and the path of a shell job's terminal).
    slave_regf: Option<u32>,
}

impl PtyPlan {
    /// The terminal's settings: the master's view, else the slave's.
    fn settings(&self) -> Option<&pb::TtyInfoEntry> {
        self.master_info
            .as_ref()
            .filter(|i| i.termios.is_some())
            .or(self.slave_info.as_ref().filter(|i| i.termios.is_some()))
    }

    /// The slave is hung up: its master is not restored, and it has no settings.
    fn hung(&self) -> bool {
        self.master.is_none()
            && self
                .slave_info
                .as_ref()
                .is_some_and(|i| i.termios.is_none())
    }

    /// The terminal is a shell job's, outside the tree: opened by path.
    fn external(&self) -> bool {
        self.master.is_none() && !self.hung()
    }
}

/// Restore: a pty pair made again, held by cryo until every process has its files.
#[derive(Debug)]
struct Pair {
    master: OwnedFd,
    /// The slave's owner and mode are set.
    slave_attrs_done: bool,
}

/// Restore: a session's controlling terminal.
#[derive(Debug, Clone, Copy)]
struct Ctty {
    index: u32,
    /// The foreground group, as the images number it (0: none).
    pgrp: u32,
}

/// The terminals of a dump or a restore.
#[derive(Debug, Default)]
pub struct Ttys {
    /// `tty-info.img` entries.
    infos: Vec<pb::TtyInfoEntry>,
    /// Dump: the REG entries of the terminals' paths (`regf_id`), for `files.img`.
    regs: Vec<pb::FileEntry>,
    /// Dump: every pty index seen.
    ptys: BTreeMap<u32, DumpPty>,
    /// Dump: /dev/tty files and the pty index of the terminal each means (None: no pty).
    cttys_seen: Vec<(Option<u32>, String)>,
    /// `tty-data.img` entries.
    data: Vec<pb::TtyDataEntry>,
    /// Restore: the plan of each pty index.
    plans: BTreeMap<u32, PtyPlan>,
    /// Restore: the pairs made so far.
    pairs: RefCell<BTreeMap<u32, Pair>>,
    /// Restore: the controlling terminal of each session (as the images number it).
    cttys: BTreeMap<u32, Ctty>,
    /// Restore: how files reach a session leader before its fd table is filled.
    source: OnceCell<FdSource>,
}

fn tty_of(entry: &pb::FileEntry) -> Result<&pb::TtyFileEntry> {
    entry.tty.as_ref().ok_or_else(|| Error::BadImage {
        image: "files.img".into(),
        what: format!("file {} is no terminal", entry.id),
    })
}

/// cryo's own pid, for errors of what it does on its side.
fn me() -> Pid {
    Pid(std::process::id() as i32)
}

/// The open flags a terminal file is opened with again: access mode, O_NONBLOCK, O_APPEND;
/// never as cryo's controlling terminal.
fn reopen_flags(flags: u32) -> i32 {
    (flags as i32 & (libc::O_ACCMODE | libc::O_NONBLOCK | libc::O_APPEND)) | libc::O_NOCTTY
}

/// Settable status flags of a file opened before its entry was known (a pty master).
fn set_flags(fd: BorrowedFd<'_>, flags: u32) -> std::io::Result<()> {
    let want = flags as i32 & (libc::O_NONBLOCK | libc::O_APPEND);
    let now = cryo_sys::socket::status_flags(fd)?;
    if now & (libc::O_NONBLOCK | libc::O_APPEND) != want {
        cryo_sys::socket::set_status_flags(
            fd,
            (now & !(libc::O_NONBLOCK | libc::O_APPEND)) | want,
        )?;
    }
    Ok(())
}

impl Ttys {
    fn info(&self, id: u32) -> Result<&pb::TtyInfoEntry> {
        self.infos
            .iter()
            .find(|i| i.id == id)
            .ok_or_else(|| Error::BadImage {
                image: "tty-info.img".into(),
                what: format!("no terminal {id}"),
            })
    }

    /// Dump: the session and foreground group of the terminal of `p`, as the tree sees them:
    /// from a master, the pair's; from another terminal, the holder's if it is the holder's
    /// controlling terminal (a slave answers only its own session's processes).
    fn session_of(p: &FdParams, driver: Driver) -> Result<(u32, u32)> {
        let seen = |n: i32| crate::pid_ns::as_seen_by(p.pid, n).map(|v| v.max(0) as u32);
        if driver == Driver::Master {
            return match sys::session(p.file.as_fd()) {
                Ok(sid) => {
                    let pgrp = sys::foreground_group(p.file.as_fd())
                        .task_ctx("read the foreground group of a pty (TIOCGPGRP)", p.pid)?;
                    Ok((seen(sid)?, seen(pgrp)?))
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Ok((0, 0)),
                Err(e) => Err(e).task_ctx("read the session of a pty (TIOCGSID)", p.pid),
            };
        }
        let st = procfs::read_stat(p.pid)?;
        let mine = sys::tty_nr_device(st.tty_nr) == (p.rdev_major(), p.rdev_minor());
        if st.tty_nr == 0 || !(mine || driver == Driver::Ctty) {
            return Ok((0, 0));
        }
        let status = procfs::read_status(p.pid)?;
        let sid = status.ns_sid.last().copied().unwrap_or(st.session);
        Ok((sid.max(0) as u32, seen(st.tpgid)?))
    }

    /// Dump, at the end: read what is queued in pty `index` both ways and put it back at once
    /// (see the module doc). Best effort: a terminal never promised delivery.
    fn dump_queued(&mut self, index: u32, master: &File, slave_held: bool) {
        let (out, input) = match read_queues(master, slave_held) {
            Ok(q) => q,
            Err(e) => {
                warn!("pty {index}: queued data not kept: {e}");
                return;
            }
        };
        debug!(
            "pty {index}: {} bytes queued for the master, {} for the slave",
            out.len(),
            input.len()
        );
        if !out.is_empty() {
            self.data.push(pb::TtyDataEntry {
                tty_id: info_id(Driver::Master, index),
                data: out,
            });
        }
        if !input.is_empty() {
            let id = info_id(Driver::Slave, index);
            if !self.infos.iter().any(|i| i.id == id) {
                // No slave file in the tree: its info carries the data.
                if let Some(m) = self.infos.iter().find(|i| i.id == id + 1) {
                    let mut s = m.clone();
                    s.id = id;
                    s.locked = false;
                    s.packet_mode = false;
                    s.exclusive = false;
                    s.rdev = ((sys::PTY_SLAVE_MAJOR + u64::from(index >> 8)) << 8
                        | u64::from(index & 0xff)) as u32;
                    s.dev = None;
                    self.infos.push(s);
                }
            }
            self.data.push(pb::TtyDataEntry {
                tty_id: id,
                data: input,
            });
        }
    }
}

/// Read the queues of the pty whose master is `master` (the task's file; only ioctls, reads
/// and writes that act on the terminal, never on the file's flags): (bytes for the master,
/// bytes to type for the slave), put back before returning. `slave_held`: a slave file is
/// open (so opening one more changes nothing), or the slave was closed (poll says HUP).
fn read_queues(master: &File, slave_held: bool) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let m = master.as_fd();
    let t = sys::termios(m)?;
    let packet = sys::packet_mode(m)?;
    let out = read_master(master, packet)?;
    let (_, hup) = sys::poll_in(m, 0)?;
    if out.is_empty() && !slave_held && !hup {
        // A slave never opened: opening one would change that; nothing to put back.
        return Ok((out, Vec::new()));
    }
    let peer = if slave_held || hup {
        let locked = sys::pty_locked(m)?;
        if locked {
            sys::set_pty_lock(m, false)?;
        }
        let peer = sys::open_peer(m, libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK);
        if locked {
            sys::set_pty_lock(m, true)?;
        }
        Some(File::from(peer?))
    } else {
        None
    };
    // Locked settings would keep the temporary ones from taking: unlocked meanwhile.
    let lk = sys::locked_termios(m)?;
    if lk != Termios::default() {
        sys::set_locked_termios(m, &Termios::default())?;
    }
    // A packet-mode reader would see the flow-control changes as status bytes: off meanwhile
    // (turning it on again clears the status, already consumed by the read above).
    if packet {
        sys::set_packet_mode(m, false)?;
    }
    let res = (|| {
        let input = match &peer {
            Some(p) => read_slave(p, m, &t)?,
            None => Vec::new(),
        };
        put_back(master, peer.as_ref(), &t, &input, &out)?;
        Ok((out, input))
    })();
    // The settings as they were, whatever happened.
    let _ = sys::set_termios(m, &t);
    if packet {
        let _ = sys::set_packet_mode(m, true);
    }
    if lk != Termios::default() {
        let _ = sys::set_locked_termios(m, &lk);
    }
    res
}

/// What the master would read (without the packet-mode status bytes).
fn read_master(master: &File, packet: bool) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut f = master;
    // poll(2) completes the kernel's pending buffer work before it answers.
    while sys::poll_in(master.as_fd(), 0)?.0 && out.len() < MAX_QUEUED_BYTES {
        let n = sys::input_bytes(master.as_fd())?;
        if n == 0 && !packet {
            break;
        }
        let mut buf = vec![0u8; n + usize::from(packet)];
        let got = f.read(&mut buf)?;
        if got == 0 {
            break;
        }
        let data = if packet {
            if buf[0] != sys::TIOCPKT_DATA {
                debug!("packet-mode status {:#x} dropped", buf[0]);
            }
            &buf[1..got]
        } else {
            &buf[..got]
        };
        out.extend_from_slice(data);
    }
    Ok(out)
}

/// The slave's input queue, read through `peer` (non-blocking), encoded by [`encode_input`];
/// `t` are the settings, changed through `master` for the partial line.
fn read_slave(peer: &File, master: BorrowedFd<'_>, t: &Termios) -> std::io::Result<Vec<u8>> {
    let mut f = peer;
    let mut buf = vec![0u8; 8192];
    let mut read_all = |f: &mut &File| -> std::io::Result<Vec<Vec<u8>>> {
        let mut reads = Vec::new();
        let mut total = 0;
        while total < MAX_QUEUED_BYTES && reads.len() < 4096 {
            match f.read(&mut buf) {
                Ok(n) => {
                    total += n;
                    reads.push(buf[..n].to_vec());
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(reads)
    };
    if !has(t.c_lflag, libc::ICANON) {
        let reads = read_all(&mut f)?;
        return Ok(reads.concat());
    }
    // Complete lines, one read each (an empty read is an empty line ended by end-of-file).
    let lines: Vec<Line> = read_all(&mut f)?
        .into_iter()
        .map(|text| Line { text })
        .collect();
    // The partial line: readable only outside canonical mode.
    let mut raw = *t;
    raw.c_lflag &= !libc::ICANON;
    raw.c_cc[libc::VMIN] = 0;
    raw.c_cc[libc::VTIME] = 0;
    sys::set_termios(master, &raw)?;
    let partial = read_all(&mut f).map(|r| r.concat());
    sys::set_termios(master, t)?;
    Ok(encode_input(t, &lines, &partial?))
}

/// Write `input` into the master and `output` into the slave (`slave`), under the transparent
/// form of `t`, then set `t`. The input is processed once poll(2) of the slave returns.
fn put_back(
    master: &File,
    slave: Option<&File>,
    t: &Termios,
    input: &[u8],
    output: &[u8],
) -> std::io::Result<()> {
    let m = master.as_fd();
    sys::set_termios(m, &transparent(t))?;
    if !input.is_empty() {
        let mut f = master;
        f.write_all(input)?;
    }
    if let Some(s) = slave {
        if !output.is_empty() {
            let mut f = s;
            f.write_all(output)?;
        }
        // The slave's line discipline has taken in what was written into the master.
        sys::poll_in(s.as_fd(), 0)?;
    }
    sys::set_termios(m, t)
}

impl Ttys {
    /// Restore: the pair of pty `index`, made if it is not yet.
    fn pair(&self, files: &FileTable, index: u32) -> Result<std::cell::RefMut<'_, Pair>> {
        let mut pairs = self.pairs.borrow_mut();
        if let std::collections::btree_map::Entry::Vacant(v) = pairs.entry(index) {
            v.insert(self.make_pair(files, index)?);
        }
        std::cell::RefMut::filter_map(pairs, |p| p.get_mut(&index))
            .map_err(|_| Error::Unsupported(format!("pty {index} vanished while it was restored")))
    }

    fn plan(&self, index: u32) -> Result<&PtyPlan> {
        self.plans.get(&index).ok_or_else(|| Error::BadImage {
            image: "tty-info.img".into(),
            what: format!("no pty {index}"),
        })
    }

    /// The path of REG entry `regf` (a terminal's), or `default`.
    fn path_of(files: &FileTable, regf: Option<u32>, default: &str) -> String {
        regf.and_then(|id| files.entry(id))
            .and_then(|e| e.reg.as_ref())
            .map_or_else(|| default.to_string(), |r| r.name.clone())
    }

    /// Make pty `index` again (see the module doc).
    fn make_pair(&self, files: &FileTable, index: u32) -> Result<Pair> {
        let plan = self.plan(index)?;
        let (path, flags) = match plan.master {
            Some((_, regf, flags)) => (Self::path_of(files, regf, "/dev/ptmx"), flags),
            None => ("/dev/ptmx".to_string(), libc::O_RDWR as u32),
        };
        let path_err = |what: &str, source| Error::Path {
            what: what.into(),
            path: path.clone(),
            source,
        };
        // A terminal of the dumped tree, killed a moment ago, may still be on its way out:
        // a second at most.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let master = 'made: loop {
            let mut passed = Vec::new();
            let got = loop {
                let f = super::open_with_flags(&path, flags & !(libc::O_NONBLOCK as u32))
                    .map_err(|e| path_err("open", e))?;
                let got =
                    sys::pty_index(f.as_fd()).map_err(|e| path_err("read the pty index of", e))?;
                if got == index {
                    break 'made f;
                }
                if got > index || passed.len() > MAX_PTY_INDEX as usize {
                    break got;
                }
                passed.push(f);
            };
            drop(passed);
            if std::time::Instant::now() >= deadline {
                return Err(Error::Unsupported(format!(
                    "restoring pty {index} (/dev/pts/{index}) while another terminal has that \
                     index ({path} gave {got}): close that terminal, or restore where the index \
                     is free"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        debug!("pty {index} made again");
        let cx = |what: &str| format!("{what} of pty {index}");
        let m = master.as_fd();
        sys::set_pty_lock(m, false).task_ctx(&cx("unlock"), me())?;
        let input = self.queued(info_id(Driver::Slave, index));
        let output = self.queued(info_id(Driver::Master, index));
        let mut slave_attrs_done = false;
        if let Some(info) = plan.settings() {
            let t = match &info.termios {
                Some(t) => termios_of(t)?,
                None => Termios::default(),
            };
            // A slave file to push the data through: when one is restored anyway, or data
            // says one was open.
            let slave = if plan.slaves || !output.is_empty() || !input.is_empty() {
                Some(File::from(
                    sys::open_peer(m, libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK)
                        .task_ctx(&cx("open the slave"), me())?,
                ))
            } else {
                None
            };
            put_back(&master, slave.as_ref(), &t, input, output)
                .task_ctx(&cx("put back the queued data and settings"), me())?;
            if let Some(lk) = &info.termios_locked {
                let lk = termios_of(lk)?;
                match sys::set_locked_termios(m, &lk) {
                    Ok(()) => {}
                    // Without CAP_SYS_ADMIN: fine if they are as dumped already (as CRIU).
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                        if sys::locked_termios(m).task_ctx(&cx("read locked settings"), me())? != lk
                        {
                            return Err(e).task_ctx(&cx("lock settings"), me());
                        }
                    }
                    Err(e) => return Err(e).task_ctx(&cx("lock settings"), me()),
                }
            }
            if let Some(w) = &info.winsize {
                sys::set_winsize(m, &winsize_of(w)).task_ctx(&cx("set the window size"), me())?;
            }
            if let Some(s) = &slave {
                self.slave_attrs(files, plan, s.as_fd(), index)?;
                slave_attrs_done = true;
            }
        }
        if plan.master_info.as_ref().is_some_and(|i| i.packet_mode) {
            sys::set_packet_mode(m, true).task_ctx(&cx("set packet mode"), me())?;
        }
        Ok(Pair {
            master: master.into(),
            slave_attrs_done,
        })
    }

    /// The data queued for terminal `id`.
    fn queued(&self, id: u32) -> &[u8] {
        self.data
            .iter()
            .find(|d| d.tty_id == id)
            .map_or(&[][..], |d| &d.data[..])
    }

    /// The slave's owner and mode as dumped, set through `slave`.
    fn slave_attrs(
        &self,
        files: &FileTable,
        plan: &PtyPlan,
        slave: BorrowedFd<'_>,
        index: u32,
    ) -> Result<()> {
        let cx = |what: &str| format!("{what} of /dev/pts/{index}");
        let f = File::from(slave.try_clone_to_owned().task_ctx("copy a slave", me())?);
        let meta = f.metadata().task_ctx(&cx("stat"), me())?;
        if let Some(info) = &plan.slave_info {
            if let (Some(uid), Some(gid)) = (info.uid, info.gid) {
                if (uid, gid) != (meta.uid(), meta.gid()) {
                    std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                        .task_ctx(&cx("set the owner"), me())?;
                }
            }
        }
        let mode = plan
            .slave_regf
            .and_then(|id| files.entry(id))
            .and_then(|e| e.reg.as_ref())
            .and_then(|r| r.mode);
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            if mode & 0o7777 != meta.mode() & 0o7777 {
                f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
                    .task_ctx(&cx("set the mode"), me())?;
            }
        }
        Ok(())
    }

    /// A new slave file of pty `index` with open `flags` (its pair made if need be).
    fn open_slave(&self, files: &FileTable, index: u32, flags: i32) -> Result<OwnedFd> {
        let mut pair = self.pair(files, index)?;
        let fd = sys::open_peer(pair.master.as_fd(), flags)
            .task_ctx(&format!("open /dev/pts/{index} (TIOCGPTPEER)"), me())?;
        if !pair.slave_attrs_done {
            pair.slave_attrs_done = true;
            self.slave_attrs(files, self.plan(index)?, fd.as_fd(), index)?;
        }
        Ok(fd)
    }

    /// A file of the terminal of session leader-to-be's pty `index`, opened in cryo.
    fn terminal_file(&self, files: &FileTable, index: u32) -> Result<OwnedFd> {
        let plan = self.plan(index)?;
        if plan.external() {
            let path = Self::path_of(files, plan.slave_regf, &format!("/dev/pts/{index}"));
            let f = super::open_with_flags(&path, libc::O_RDWR as u32).map_err(|source| {
                Error::Path {
                    what: "open the terminal".into(),
                    path,
                    source,
                }
            })?;
            return Ok(f.into());
        }
        self.open_slave(files, index, libc::O_RDWR | libc::O_NOCTTY)
    }
}

impl FdKind for Ttys {
    fn name(&self) -> &'static str {
        "terminal"
    }

    fn fd_type(&self) -> pb::FdTypes {
        pb::FdTypes::Tty
    }

    fn claims(&self, _cx: &DumpCx, p: &FdParams) -> bool {
        p.is_char_device() && driver_of(p.rdev_major(), p.rdev_minor()).is_some()
    }

    /// Two masters on /dev/ptmx are one inode: the pty index tells them apart.
    fn dedup_key(&self, p: &FdParams) -> u64 {
        match driver_of(p.rdev_major(), p.rdev_minor()) {
            Some(Ok(Driver::Master)) => sys::pty_index(p.file.as_fd()).map_or(0, u64::from),
            _ => 0,
        }
    }

    fn dump(&mut self, cx: &mut DumpCx, p: &FdParams, id: u32) -> Result<pb::FileEntry> {
        let driver = match driver_of(p.rdev_major(), p.rdev_minor()) {
            Some(Ok(d)) => d,
            Some(Err(what)) => return Err(p.refuse(what)),
            None => return Err(p.refuse("a character device that is no terminal")),
        };
        let index = match driver {
            Driver::Master => sys::pty_index(p.file.as_fd())
                .task_ctx(&format!("read the pty index of fd {}", p.fd), p.pid)?,
            Driver::Slave => ((p.rdev_major() - sys::PTY_SLAVE_MAJOR) << 8 | p.rdev_minor()) as u32,
            _ => 0,
        };
        if matches!(driver, Driver::Master | Driver::Slave) && index > MAX_PTY_INDEX {
            return Err(p.refuse(format!(
                "pty {index}: indices above {MAX_PTY_INDEX} (CRIU's image limit)"
            )));
        }
        let tid = info_id(driver, index);
        if !self.infos.iter().any(|i| i.id == tid) {
            let mut info = match info_of(tid, driver, index, &p.meta, p.file.as_fd()) {
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => return Err(p.refuse(e)),
                r => r.task_ctx(&format!("read the terminal of fd {}", p.fd), p.pid)?,
            };
            let hung = info.termios.is_none();
            if hung && driver != Driver::Slave {
                return Err(p.refuse("a hung-up terminal other than a pty slave"));
            }
            (info.sid, info.pgrp) = Self::session_of(p, driver)?;
            if driver == Driver::Ctty && info.sid == 0 {
                return Err(
                    p.refuse("/dev/tty of a process that has no controlling terminal any more")
                );
            }
            if driver == Driver::Slave && hung {
                self.ptys.entry(index).or_default().hung = true;
            }
            self.infos.push(info);
        }
        match driver {
            Driver::Master => {
                let copy = p.file.try_clone().task_ctx("copy a pty master", p.pid)?;
                self.ptys.entry(index).or_default().master = Some(copy);
            }
            Driver::Slave => {
                let at = format!("fd {} of pid {} ({})", p.fd, p.pid, p.link);
                self.ptys
                    .entry(index)
                    .or_default()
                    .slave_at
                    .get_or_insert(at);
            }
            Driver::Ctty => {
                let st = procfs::read_stat(p.pid)?;
                let (major, minor) = sys::tty_nr_device(st.tty_nr);
                let pty = (sys::PTY_SLAVE_MAJOR..sys::PTY_SLAVE_MAJOR + sys::PTY_MAJOR_COUNT)
                    .contains(&major)
                    .then(|| ((major - sys::PTY_SLAVE_MAJOR) << 8 | minor) as u32);
                self.cttys_seen
                    .push((pty, format!("fd {} of pid {} (/dev/tty)", p.fd, p.pid)));
            }
            Driver::Console | Driver::Vt => {}
        }
        // The path, as CRIU has it: a REG entry of its own.
        let regf = cx.ids.next_id();
        self.regs.push(pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id: regf,
            reg: Some(pb::RegFileEntry {
                id: regf,
                flags: p.info.flags,
                pos: 0,
                fown: super::kind::no_fown(),
                // A hung-up slave's node is gone from devpts: its link says so.
                name: p.link.trim_end_matches(" (deleted)").to_string(),
                mode: Some(p.meta.mode()),
                ..Default::default()
            }),
            ..Default::default()
        });
        Ok(pb::FileEntry {
            r#type: pb::FdTypes::Tty as i32,
            id,
            tty: Some(pb::TtyFileEntry {
                id,
                tty_info_id: tid,
                flags: p.info.flags,
                fown: p.fown,
                regf_id: Some(regf),
            }),
            ..Default::default()
        })
    }

    /// Every slave's master is in the tree (or the slave is hung up, or a shell job's); the
    /// queued data; `tty-info.img` and `tty-data.img`.
    fn write_images(&mut self, cx: &DumpCx) -> Result<()> {
        for (index, pty) in &self.ptys {
            if let (None, false, Some(at)) = (&pty.master, pty.hung, &pty.slave_at) {
                if !cx.opts.shell_job {
                    return Err(Error::Unsupported(format!(
                        "{at}: a terminal whose master (/dev/ptmx of pty {index}) is outside \
                         the dump: dump the process that holds the master too, or, for the \
                         terminal the job was started from, use --shell-job"
                    )));
                }
            }
        }
        for (pty, at) in &self.cttys_seen {
            let inside = pty
                .and_then(|i| self.ptys.get(&i))
                .is_some_and(|p| p.master.is_some());
            if !inside && !cx.opts.shell_job {
                return Err(Error::Unsupported(format!(
                    "{at}: a controlling terminal that is not in the dump (a pty whose master \
                     a process of the tree holds): use --shell-job for the terminal the job \
                     was started from"
                )));
            }
        }
        let ptys = std::mem::take(&mut self.ptys);
        for (index, pty) in &ptys {
            if let Some(master) = &pty.master {
                self.dump_queued(*index, master, pty.slave_at.is_some());
            }
        }
        self.ptys = ptys;
        if !self.infos.is_empty() {
            cryo_image::write_all_entries(cx.dir, ImageKind::TtyInfo, None, &self.infos)?;
        }
        if !self.data.is_empty() {
            cryo_image::write_all_entries(cx.dir, ImageKind::TtyData, None, &self.data)?;
        }
        Ok(())
    }

    fn more_entries(&mut self) -> Vec<pb::FileEntry> {
        std::mem::take(&mut self.regs)
    }

    fn load(&mut self, cx: &RestoreCx, entries: &[&pb::FileEntry]) -> Result<()> {
        self.infos = cryo_image::read_all_entries(cx.dir, ImageKind::TtyInfo, None)?;
        self.data = cryo_image::read_all_entries(cx.dir, ImageKind::TtyData, None)?;
        for d in &self.data {
            self.info(d.tty_id)?;
        }
        for e in entries {
            let t = tty_of(e)?;
            let info = self.info(t.tty_info_id)?.clone();
            if info.r#type != pb::TtyType::Pty as i32 {
                continue;
            }
            let index = pty_index(&info)?;
            let plan = self.plans.entry(index).or_default();
            if is_master(&info) {
                if plan.master.is_some() {
                    return Err(Error::BadImage {
                        image: "files.img".into(),
                        what: format!("two masters of pty {index}"),
                    });
                }
                plan.master = Some((e.id, t.regf_id, t.flags));
                plan.master_info = Some(info);
            } else {
                plan.slaves = true;
                plan.slave_regf = plan.slave_regf.or(t.regf_id);
                plan.slave_info = Some(info);
            }
        }
        // Infos without files: a pair's other side (the slave's data, settings).
        for info in &self.infos {
            if info.r#type != pb::TtyType::Pty as i32 {
                continue;
            }
            let index = pty_index(info)?;
            if let Some(plan) = self.plans.get_mut(&index) {
                if is_master(info) {
                    plan.master_info.get_or_insert_with(|| info.clone());
                } else {
                    plan.slave_info.get_or_insert_with(|| info.clone());
                }
            }
        }
        for (index, plan) in &self.plans {
            if plan.external() && !cx.opts.shell_job {
                return Err(Error::Unsupported(format!(
                    "restoring /dev/pts/{index}, a terminal outside the dump: use --shell-job"
                )));
            }
            for info in [&plan.master_info, &plan.slave_info].into_iter().flatten() {
                if info.sid == 0 {
                    continue;
                }
                let c = Ctty {
                    index: *index,
                    pgrp: info.pgrp,
                };
                if let Some(other) = self.cttys.insert(info.sid, c) {
                    if other.index != *index {
                        return Err(Error::BadImage {
                            image: "tty-info.img".into(),
                            what: format!(
                                "session {} has two controlling terminals (ptys {} and {index})",
                                info.sid, other.index
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn open(&self, files: &FileTable, entry: &pb::FileEntry) -> Result<Opened> {
        let t = tty_of(entry)?;
        let info = self.info(t.tty_info_id)?;
        let ty = pb::TtyType::try_from(info.r#type).unwrap_or(pb::TtyType::Unknown);
        let file: OwnedFd = match ty {
            pb::TtyType::Pty => {
                let index = pty_index(info)?;
                let plan = self.plan(index)?;
                if is_master(info) {
                    let pair = self.pair(files, index)?;
                    let m = pair
                        .master
                        .try_clone()
                        .task_ctx("copy a pty master", me())?;
                    set_flags(m.as_fd(), t.flags)
                        .task_ctx(&format!("set the flags of pty master {index}"), me())?;
                    m
                } else if plan.external() {
                    let path = Self::path_of(files, t.regf_id, &format!("/dev/pts/{index}"));
                    super::open_with_flags(&path, t.flags)
                        .map_err(|source| Error::Path {
                            what: "open terminal".into(),
                            path,
                            source,
                        })?
                        .into()
                } else {
                    self.open_slave(files, index, reopen_flags(t.flags))?
                }
            }
            pb::TtyType::Ctty => return Ok(Opened::InPuppet),
            pb::TtyType::Console | pb::TtyType::Vt => {
                let default = if ty == pb::TtyType::Console {
                    "/dev/console"
                } else {
                    "/dev/tty1"
                };
                let path = Self::path_of(files, t.regf_id, default);
                let f = super::open_with_flags(&path, t.flags).map_err(|source| Error::Path {
                    what: "open terminal".into(),
                    path: path.clone(),
                    source,
                })?;
                restore_simple_settings(&f, info).map_err(|source| Error::Path {
                    what: "set the settings of terminal".into(),
                    path,
                    source,
                })?;
                f.into()
            }
            _ => {
                return Err(Error::Unsupported(format!(
                    "terminal {} of type {}",
                    info.id,
                    ty.as_str_name()
                )))
            }
        };
        Ok(Opened::Local(file))
    }

    /// /dev/tty, opened by the process: its controlling terminal.
    fn open_in(
        &self,
        files: &FileTable,
        inj: &Injector,
        entry: &pb::FileEntry,
    ) -> Result<RemoteFd> {
        let t = tty_of(entry)?;
        let path = Self::path_of(files, t.regf_id, "/dev/tty");
        inj.open(
            &path,
            reopen_flags(t.flags) as u32,
            &format!("its controlling terminal {path}"),
        )
    }

    /// The session's controlling terminal, before the leader forks its members.
    fn new_session(&self, files: &FileTable, inj: &Injector, sid: u32) -> Result<()> {
        let Some(c) = self.cttys.get(&sid) else {
            return Ok(());
        };
        debug!("session {sid}: controlling terminal /dev/pts/{}", c.index);
        let local = self.terminal_file(files, c.index)?;
        let source = match self.source.get() {
            Some(s) => s,
            None => {
                let s = FdSource::new()?;
                self.source.get_or_init(|| s)
            }
        };
        let what = format!("/dev/pts/{}", c.index);
        let fd = source.install(inj, local.as_fd(), &what)?;
        let set = inj.syscall(
            &format!("make {what} the controlling terminal (TIOCSCTTY)"),
            libc::SYS_ioctl,
            &[fd.0 as u64, libc::TIOCSCTTY, 0],
        );
        let closed = inj.close(fd, &what);
        set.map_err(|e| match e {
            Error::Task { source, .. } if source.raw_os_error() == Some(libc::EPERM) => {
                Error::Unsupported(format!(
                    "making {what} the controlling terminal of session {sid}, while it is \
                     another session's: end that session first"
                ))
            }
            e => e,
        })?;
        closed
    }

    /// The foreground group of the leader's terminal.
    fn session_ready(&self, _files: &FileTable, inj: &Injector, sid: u32) -> Result<()> {
        let Some(c) = self.cttys.get(&sid) else {
            return Ok(());
        };
        // TIOCSCTTY made the leader's own group the foreground one.
        if c.pgrp == 0 || c.pgrp == sid {
            return Ok(());
        }
        let fd = inj.open(
            "/dev/tty",
            (libc::O_RDWR | libc::O_NOCTTY) as u32,
            "its controlling terminal /dev/tty",
        )?;
        let set = {
            let s = inj.scratch();
            let at = s.bytes(&(c.pgrp as i32).to_ne_bytes())?;
            inj.syscall(
                &format!("make group {} the foreground one (TIOCSPGRP)", c.pgrp),
                libc::SYS_ioctl,
                &[fd.0 as u64, libc::TIOCSPGRP, at.0],
            )
        };
        let closed = inj.close(fd, "/dev/tty");
        set?;
        closed
    }

    /// The lock and exclusive modes, now that nothing opens a slave any more; hung-up slaves
    /// lose their master.
    fn after_fds(&self) -> Result<()> {
        let mut pairs = self.pairs.borrow_mut();
        for (index, pair) in pairs.iter() {
            let plan = self.plan(*index)?;
            let m = pair.master.as_fd();
            let cx = |what: &str| format!("{what} of pty {index}");
            if plan.slaves && plan.slave_info.as_ref().is_some_and(|i| i.exclusive) {
                let s = sys::open_peer(m, libc::O_RDWR | libc::O_NOCTTY)
                    .task_ctx(&cx("open the slave"), me())?;
                sys::set_exclusive(s.as_fd(), true).task_ctx(&cx("set exclusive mode"), me())?;
            }
            if let Some(info) = &plan.master_info {
                if info.exclusive {
                    sys::set_exclusive(m, true).task_ctx(&cx("set exclusive mode"), me())?;
                }
                if info.locked {
                    sys::set_pty_lock(m, true).task_ctx(&cx("lock"), me())?;
                }
            }
        }
        // cryo's masters go: a master no process holds hangs its slave up, as dumped.
        pairs.clear();
        Ok(())
    }

    fn cleanup(&self) {
        self.pairs.borrow_mut().clear();
    }

    fn flags_and_owner<'a>(&self, entry: &'a pb::FileEntry) -> Option<(u32, &'a pb::FownEntry)> {
        entry.tty.as_ref().map(|t| (t.flags, &t.fown))
    }

    any_kind!();
}

/// The settings of a console or virtual console as dumped, where they differ.
fn restore_simple_settings(f: &File, info: &pb::TtyInfoEntry) -> std::io::Result<()> {
    let fd = f.as_fd();
    if let Some(t) = &info.termios {
        let t = termios_of(t).map_err(|e| std::io::Error::other(e.to_string()))?;
        if sys::termios(fd)? != t {
            sys::set_termios(fd, &t)?;
        }
    }
    if let Some(w) = &info.winsize {
        let w = winsize_of(w);
        if sys::winsize(fd)? != w {
            sys::set_winsize(fd, &w)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_termios() -> Termios {
        let mut t = Termios {
            c_iflag: libc::ICRNL | libc::IXON | libc::IUTF8,
            c_oflag: libc::OPOST | libc::ONLCR,
            c_cflag: libc::B38400 | libc::CS8 | libc::CREAD,
            c_lflag: libc::ISIG
                | libc::ICANON
                | libc::ECHO
                | libc::ECHOE
                | libc::ECHOK
                | libc::IEXTEN
                | libc::ECHOCTL
                | libc::ECHOKE,
            c_line: 0,
            c_cc: [0; NCCS],
        };
        let cc = [
            (libc::VINTR, 3),
            (libc::VQUIT, 0x1c),
            (libc::VERASE, 0x7f),
            (libc::VKILL, 0x15),
            (libc::VEOF, 4),
            (libc::VMIN, 1),
            (libc::VSTART, 0x11),
            (libc::VSTOP, 0x13),
            (libc::VSUSP, 0x1a),
            (libc::VREPRINT, 0x12),
            (libc::VWERASE, 0x17),
            (libc::VLNEXT, 0x16),
        ];
        for (i, v) in cc {
            t.c_cc[i] = v;
        }
        t
    }

    #[test]
    fn termios_packs_as_criu_does() {
        let mut t = std_termios();
        t.c_cc[libc::VINTR] = 0x11;
        t.c_cc[libc::VMIN] = 7;
        let e = termios_entry(&t);
        assert_eq!(e.c_cc.len(), NCCS);
        // From an image CRIU 4.2 wrote on this machine for the same settings: VINTR VQUIT
        // VERASE VKILL in the first word, VEOF VTIME VMIN VSWTC in the second.
        assert_eq!(e.c_cc[0], 360651793);
        assert_eq!(e.c_cc[1], 458756);
        assert!(e.c_cc[5..].iter().all(|&w| w == 0));
        assert_eq!(termios_of(&e).unwrap(), t);
        let mut short = e.clone();
        short.c_cc.truncate(4);
        assert!(termios_of(&short).is_err());
    }

    #[test]
    fn infos_have_criu_ids() {
        assert_eq!(info_id(Driver::Slave, 3), 6);
        assert_eq!(info_id(Driver::Master, 3), 7);
        assert_eq!(info_id(Driver::Console, 0), 2004);
        assert_eq!(info_id(Driver::Vt, 0), 2008);
        assert_eq!(info_id(Driver::Ctty, 0), 2012);
        assert_eq!(driver_of(5, 2), Some(Ok(Driver::Master)));
        assert_eq!(driver_of(136, 0), Some(Ok(Driver::Slave)));
        assert_eq!(driver_of(143, 255), Some(Ok(Driver::Slave)));
        assert_eq!(driver_of(5, 0), Some(Ok(Driver::Ctty)));
        assert_eq!(driver_of(5, 1), Some(Ok(Driver::Console)));
        assert_eq!(driver_of(4, 5), Some(Ok(Driver::Vt)));
        assert!(matches!(driver_of(4, 64), Some(Err(_))));
        assert!(matches!(driver_of(4, 0), Some(Err(_))));
        assert_eq!(driver_of(1, 3), None);
        let master = pb::TtyInfoEntry {
            rdev: (5 << 8) | 2,
            ..Default::default()
        };
        assert!(is_master(&master));
        let slave = pb::TtyInfoEntry {
            rdev: (136 << 8) | 2,
            ..Default::default()
        };
        assert!(!is_master(&slave));
    }

    #[test]
    fn transparent_settings_keep_lines_only() {
        let t = std_termios();
        let r = transparent(&t);
        assert_eq!(r.c_lflag & (libc::ECHO | libc::ISIG), 0);
        assert_ne!(r.c_lflag & (libc::ICANON | libc::IEXTEN), 0);
        assert_eq!(r.c_iflag & (libc::ICRNL | libc::IXON), 0);
        assert_eq!(r.c_iflag & libc::IUTF8, libc::IUTF8);
        assert_eq!(r.c_oflag & libc::OPOST, 0);
        assert_eq!(r.c_cc[libc::VERASE], 0);
        assert_eq!(r.c_cc[libc::VEOF], 4);
        assert_eq!(r.c_cc[libc::VLNEXT], 0x16);
        assert_eq!(r.c_cflag, t.c_cflag);
    }

    /// A pty pair of cryo's own: (master, slave).
    fn own_pair() -> (File, File) {
        let m = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/ptmx")
            .unwrap();
        sys::set_pty_lock(m.as_fd(), false).unwrap();
        let s = File::from(sys::open_peer(m.as_fd(), libc::O_RDWR | libc::O_NOCTTY).unwrap());
        (m, s)
    }

    fn read_now(f: &File) -> Vec<u8> {
        let mut out = Vec::new();
        while sys::poll_in(f.as_fd(), 100).unwrap().0 {
            let mut buf = [0u8; 4096];
            let n = (&*f).read(&mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
            if n == 0 {
                break;
            }
        }
        out
    }

    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn queued_data_is_read_and_put_back() {
        let (m, s) = own_pair();
        let mut t = sys::termios(s.as_fd()).unwrap();
        t.c_lflag &= !libc::ECHO;
        sys::set_termios(s.as_fd(), &t).unwrap();
        (&m).write_all(b"one\neof\x04two\npart").unwrap();
        (&s).write_all(b"out\n").unwrap();
        sys::poll_in(s.as_fd(), 100).unwrap();
        let (out, input) = read_queues(&m, true).unwrap();
        assert_eq!(out, b"out\r\n");
        assert_eq!(input, b"one\neof\x04two\npart");
        // Put back as it was: the lines one read each, the partial one still partial, the
        // master's data once, the settings unchanged.
        assert_eq!(sys::termios(s.as_fd()).unwrap(), t);
        assert_eq!(read_now(&m), b"out\r\n");
        let mut buf = [0u8; 64];
        assert_eq!((&s).read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"one\n");
        assert_eq!((&s).read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"eof");
        assert_eq!((&s).read(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"two\n");
        assert!(
            !sys::poll_in(s.as_fd(), 50).unwrap().0,
            "the partial line is complete"
        );
        (&m).write_all(b"\n").unwrap();
        assert_eq!((&s).read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"part\n");
    }

    #[test]
    fn input_is_typed_back_with_its_line_ends() {
        let t = std_termios();
        let lines = [
            Line {
                text: b"one\n".to_vec(),
            },
            // Ended by VEOF: no end character in what the read gave.
            Line {
                text: b"eof".to_vec(),
            },
            // An empty line ended by VEOF.
            Line { text: Vec::new() },
            // A literal ^C and erase character inside a line.
            Line {
                text: b"a\x03b\x7f\n".to_vec(),
            },
        ];
        let got = encode_input(&t, &lines, b"part\x04");
        assert_eq!(
            got,
            b"one\neof\x04\x04a\x16\x03b\x16\x7f\npart\x16\x04".to_vec()
        );
        // Non-canonical: the bytes as they are.
        let mut raw = t;
        raw.c_lflag &= !libc::ICANON;
        assert_eq!(
            encode_input(
                &raw,
                &[Line {
                    text: b"x\x03".to_vec()
                }],
                b"y"
            ),
            b"x\x03y".to_vec()
        );
        // Without IEXTEN there is no literal-next character to escape with.
        let mut noext = t;
        noext.c_lflag &= !libc::IEXTEN;
        assert_eq!(encode_input(&noext, &[], b"a\x03"), b"a\x03".to_vec());
    }
}
