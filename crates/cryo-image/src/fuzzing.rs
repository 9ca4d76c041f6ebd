//! Fuzz harnesses of the image readers, shared by the cargo-fuzz targets (`fuzz/`) and the
//! regression test (`tests/fuzz_regressions.rs`), plus seed inputs for both.
//!
//! Each harness takes any byte string and returns `Ok` when the input was read (and
//! round-tripped), `Err` with the reader's message when it was rejected. A panic is a bug: of
//! a reader (it must reject bad input with an error) or of a property the harness asserts
//! (an error names the file and offset; `encode(decode(image))` decodes to the same JSON).
//!
//! Why here and not in `fuzz/`: the fuzz targets build on nightly only, outside the workspace,
//! while every crashing input must stay a test on stable (`cargo test`, CI). One copy of each
//! harness, called by both, keeps the two from drifting apart. A cargo feature would need
//! `Cargo.toml` changes and `cfg(test)` is not visible to integration tests, so the module is
//! always compiled: it adds no dependency, nothing else in the crate calls it (it costs
//! compile time only), and it is `#[doc(hidden)]`, not API.
#![doc(hidden)]

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;

use crate::crit::{self, Json};
use crate::error::ImageError;
use crate::frame::{read_all_entries, read_single, ImageReader, ImageWriter};
use crate::kind::ImageKind;
use crate::magic::{IMG_COMMON_MAGIC, PAGEMAP_MAGIC};
use crate::pagemap::{
    entry_flags, entry_len_bytes, entry_nr_pages, pagemap_entry, PagemapReader, PagemapWriter,
    PAGE_SIZE, PE_LAZY, PE_PARENT, PE_PRESENT,
};
use crate::pb;

/// What a harness made of its input: `Err` is the reader's (or parser's) rejection.
pub type Outcome = Result<(), String>;

/// A harness: any bytes in, an [`Outcome`] out, a panic on a bug.
pub type Harness = fn(&[u8]) -> Outcome;

/// Every harness by fuzz target name (`fuzz/fuzz_targets/<name>.rs`, and the folder of
/// `tests/fuzz-regressions/<name>/`).
pub const TARGETS: &[(&str, Harness)] = &[
    ("frame", frame),
    ("pagemap", pagemap),
    ("crit_decode", crit_decode),
    ("crit_json", crit_json),
    ("message", message),
    ("explore", explore),
];

/// The file name the harnesses give readers, to check errors name it.
const NAME: &str = "fuzz-input.img";

/// Asserts that an error of a reader over `len` bytes in memory names the file and an offset
/// inside the input, and gives its message.
fn checked(e: ImageError, len: usize) -> String {
    let msg = e.to_string();
    let offset = match &e {
        ImageError::BadMagic { offset, .. }
        | ImageError::Truncated { offset, .. }
        | ImageError::EntryTooLarge { offset, .. }
        | ImageError::Decode { offset, .. } => *offset,
        other => panic!("unexpected error for in-memory input: {other:?}"),
    };
    assert!(msg.contains(NAME), "error does not name the file: {msg}");
    assert!(
        msg.contains(&format!("at offset {offset}")),
        "error has no offset: {msg}"
    );
    assert!(
        offset <= len as u64,
        "offset {offset} past the input ({len})"
    );
    msg
}

/// A directory of its own for one harness call, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cryo-fuzz-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        // A leftover of a killed run of the same pid would make create_dir fail.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("temp dir: {e}"))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut w = [0u8; 4];
    for (d, s) in w.iter_mut().zip(b) {
        *d = *s;
    }
    u32::from_le_bytes(w)
}

/// `frame`: [`ImageReader`] over any bytes.
///
/// Input: `kind` (index into [`ImageKind::ALL`]), `flags`, then with `flags & 2` a script
/// (`n`, then `n % 16` operations of 5 bytes: `op`, `u32` LE argument), then the image.
/// `flags & 1`: the reader knows the length ([`ImageReader::with_len`]); `flags & 4`: the
/// image is also read from a file ([`read_all_entries`], [`read_single`]). Operations:
/// `op % 6` = 0 `read_entry::<()>` (framing only), 1 `read_entry::<FsEntry>`,
/// 2 `read_raw(arg << (op >> 4))` (lengths up to 2^47), 3 `read_raw_into` (at most 1 MiB),
/// 4 `read_raw_to_end`, 5 `read_entry::<CoreEntry>`. Without a script: entries to the end,
/// then the rest raw.
pub fn frame(data: &[u8]) -> Outcome {
    let [kind, flags, rest @ ..] = data else {
        return Err("short input".into());
    };
    let kind = ImageKind::ALL[usize::from(*kind) % ImageKind::ALL.len()];
    let mut ops: Vec<(u8, u32)> = Vec::new();
    let mut image = rest;
    if flags & 2 != 0 {
        let Some((&n, tail)) = image.split_first() else {
            return Err("short script".into());
        };
        let n = usize::from(n % 16);
        if tail.len() < 5 * n {
            return Err("short script".into());
        }
        let (script, img) = tail.split_at(5 * n);
        ops = script.chunks(5).map(|c| (c[0], le_u32(&c[1..]))).collect();
        image = img;
    }
    let memory = frame_memory(kind, *flags, &ops, image);
    if flags & 4 != 0 {
        let file = frame_file(kind, image);
        // Without a script both read the entries to the end.
        if ops.is_empty() {
            assert_eq!(
                file.is_ok(),
                memory.is_ok(),
                "file {file:?}, memory {memory:?}"
            );
        }
        file?;
    }
    memory
}

/// The in-memory half of [`frame`].
fn frame_memory(kind: ImageKind, flags: u8, ops: &[(u8, u32)], image: &[u8]) -> Outcome {
    let len = image.len();
    let mut r = if flags & 1 != 0 {
        ImageReader::with_len(Cursor::new(image), kind, NAME, len as u64)
    } else {
        ImageReader::new(Cursor::new(image), kind, NAME)
    }
    .map_err(|e| checked(e, len))?;
    let check = |r: &ImageReader<Cursor<&[u8]>>| {
        assert!(r.offset() <= len as u64, "offset past the input");
        if flags & 1 != 0 {
            assert_eq!(r.remaining(), Some(len as u64 - r.offset()));
        }
    };
    if ops.is_empty() {
        while r.read_entry::<()>().map_err(|e| checked(e, len))?.is_some() {
            check(&r);
        }
        let tail = r.read_raw_to_end().map_err(|e| checked(e, len))?;
        assert!(tail.is_empty(), "data after a clean end");
        return Ok(());
    }
    for &(op, arg) in ops {
        let before = r.offset();
        match op % 6 {
            0 => {
                r.read_entry::<()>().map_err(|e| checked(e, len))?;
            }
            1 => {
                r.read_entry::<pb::FsEntry>().map_err(|e| checked(e, len))?;
            }
            2 => {
                let want = u64::from(arg) << (op >> 4);
                let got = r.read_raw(want).map_err(|e| checked(e, len))?;
                assert_eq!(got.len() as u64, want);
            }
            3 => {
                let mut buf = vec![0u8; (arg as usize) % (1 << 20)];
                r.read_raw_into(&mut buf).map_err(|e| checked(e, len))?;
            }
            4 => {
                let got = r.read_raw_to_end().map_err(|e| checked(e, len))?;
                assert_eq!(before + got.len() as u64, len as u64);
            }
            _ => {
                r.read_entry::<pb::CoreEntry>()
                    .map_err(|e| checked(e, len))?;
            }
        }
        assert!(r.offset() >= before, "offset went back");
        check(&r);
    }
    Ok(())
}

/// The file half of [`frame`]: the image as a file of `kind` in a directory.
fn frame_file(kind: ImageKind, image: &[u8]) -> Outcome {
    let dir = TempDir::new("frame")?;
    let id = kind.needs_id().then_some(1);
    let name = kind.file_name(id).map_err(|e| e.to_string())?;
    std::fs::write(dir.0.join(&name), image).map_err(|e| format!("write: {e}"))?;
    let named = |e: ImageError| {
        let msg = e.to_string();
        assert!(msg.contains(&name), "error does not name the file: {msg}");
        msg
    };
    let all = read_all_entries::<()>(&dir.0, kind, id).map_err(named);
    let one = read_single::<()>(&dir.0, kind, id).map_err(named);
    // read_single reads the first entry only: it fails whenever read_all_entries fails on the
    // first entry, and a whole-file success with at least one entry means it succeeds.
    if let Ok(entries) = &all {
        assert_eq!(
            one.is_ok(),
            !entries.is_empty(),
            "read_single vs read_all_entries"
        );
    }
    all.map(|_| ())
}

/// `pagemap`: [`PagemapReader`] over any bytes, and the page arithmetic of every entry.
///
/// Input: `flags`, then the image after its header (`flags & 4`: with its header).
/// `flags & 1`: a shmem pagemap; `flags & 2`: the reader knows the length.
pub fn pagemap(data: &[u8]) -> Outcome {
    let Some((&flags, body)) = data.split_first() else {
        return Err("short input".into());
    };
    let kind = if flags & 1 != 0 {
        ImageKind::ShmemPagemap
    } else {
        ImageKind::Pagemap
    };
    let mut image = Vec::with_capacity(body.len() + 8);
    if flags & 4 == 0 {
        image.extend_from_slice(&IMG_COMMON_MAGIC.to_ne_bytes());
        image.extend_from_slice(&PAGEMAP_MAGIC.to_ne_bytes());
    }
    image.extend_from_slice(body);
    let len = image.len();
    let inner = if flags & 2 != 0 {
        ImageReader::with_len(Cursor::new(&image[..]), kind, NAME, len as u64)
    } else {
        ImageReader::new(Cursor::new(&image[..]), kind, NAME)
    }
    .map_err(|e| checked(e, len))?;
    let mut r = PagemapReader::new(inner).map_err(|e| checked(e, len))?;
    let mut w = PagemapWriter::new(
        ImageWriter::new(Vec::new(), kind).map_err(|e| e.to_string())?,
        r.head().pages_id,
    )
    .map_err(|e| e.to_string())?;
    let mut want = Vec::new();
    while let Some(pe) = r.next_entry().map_err(|e| checked(e, len))? {
        let nr = entry_nr_pages(&pe);
        let flags = entry_flags(&pe);
        assert_eq!(entry_len_bytes(&pe), nr.checked_mul(PAGE_SIZE));
        if pe.in_parent == Some(true) {
            assert!(flags & PE_PARENT != 0, "in_parent without PE_PARENT");
        }
        // Rewritten as cryo writes pagemaps (both counts, explicit flags), runs up to
        // u32::MAX pages: longer ones become 2^32 entries and more (the writer's split is
        // tested on its own).
        if nr <= u64::from(u32::MAX) {
            w.add(pe.vaddr, nr, flags).map_err(|e| e.to_string())?;
            if nr != 0 {
                want.push((pe.vaddr, nr, flags));
            }
        }
    }
    let bytes = w.finish().map_err(|e| e.to_string())?;
    let inner =
        ImageReader::new(Cursor::new(&bytes), kind, "rewritten").map_err(|e| e.to_string())?;
    let mut again = PagemapReader::new(inner).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    while let Some(pe) = again.next_entry().map_err(|e| e.to_string())? {
        assert_eq!(pe.nr_pages, Some(u64::from(pe.compat_nr_pages)));
        got.push((pe.vaddr, entry_nr_pages(&pe), entry_flags(&pe)));
    }
    assert_eq!(got, want, "pagemap rewrite");
    Ok(())
}

/// The crit JSON of `img` as text, for comparisons (`NaN != NaN` as a value).
fn text(j: &Json) -> String {
    j.to_python_string(None)
}

/// The message of a `crit::decode` error, which must give the offset of a malformed entry
/// (crit has no file name: its caller adds it).
fn crit_err(e: crit::CritError) -> String {
    let msg = e.to_string();
    if let crit::CritError::Format(_) | crit::CritError::Convert(_) = e {
        assert!(
            msg.contains(" at offset "),
            "crit error without an offset: {msg}"
        );
    }
    msg
}

/// `crit decode` of an image, `encode` of the JSON, and `decode` of that must agree.
fn crit_round_trip(image: &[u8]) -> Outcome {
    let plain = crit::decode(image, false, false).map_err(crit_err);
    let pretty = crit::decode(image, true, false).map_err(crit_err);
    let nopl = crit::decode(image, false, true).map_err(crit_err);
    let info = crit::info(image).map_err(crit_err);
    // The renderings differ, the reading does not.
    assert_eq!(plain.is_ok(), pretty.is_ok(), "pretty vs plain: {pretty:?}");
    assert_eq!(plain.is_ok(), nopl.is_ok(), "nopl vs plain: {nopl:?}");
    assert_eq!(plain.is_ok(), info.is_ok(), "info vs plain: {info:?}");
    let plain = plain?;
    // JSON text round trip, both layouts.
    for indent in [None, Some(4)] {
        let t = plain.to_python_string(indent);
        let back = Json::parse(&t).unwrap_or_else(|e| panic!("own JSON does not parse: {e}"));
        assert_eq!(text(&back), text(&plain), "JSON text round trip");
    }
    let encoded = crit::encode(&plain).unwrap_or_else(|e| panic!("encode(decode(image)): {e}"));
    let again = crit::decode(&encoded, false, false)
        .unwrap_or_else(|e| panic!("decode(encode(decode(image))): {e}"));
    assert_eq!(text(&again), text(&plain), "crit JSON round trip");
    // What `crit show` prints encodes to an image `crit show` prints the same way. (Not
    // necessarily the same image: like crit, a pretty address shows the first 4 words of a
    // longer list.)
    if let Ok(pretty) = pretty {
        let t = pretty.to_python_string(Some(4));
        let parsed = Json::parse(&t).unwrap_or_else(|e| panic!("pretty JSON does not parse: {e}"));
        let from_pretty =
            crit::encode(&parsed).unwrap_or_else(|e| panic!("encode(decode(image, pretty)): {e}"));
        let back = crit::decode(&from_pretty, true, false)
            .unwrap_or_else(|e| panic!("decode(encode(pretty)): {e}"));
        assert_eq!(back.to_python_string(Some(4)), t, "pretty JSON round trip");
    }
    Ok(())
}

/// `crit_decode`: an image file; [`crit::decode`] (plain, pretty, nopl) and [`crit::info`]
/// agree on whether it reads, and a decoded image encodes to one that decodes the same.
pub fn crit_decode(data: &[u8]) -> Outcome {
    crit_round_trip(data)
}

/// `crit_json`: any text through [`Json::parse`] (the printer must give back text that
/// parses to the same value) and [`crit::encode`]; an image encode gives is decoded again.
pub fn crit_json(data: &[u8]) -> Outcome {
    let t = std::str::from_utf8(data).map_err(|e| e.to_string())?;
    let j = Json::parse(t)?;
    for indent in [None, Some(4)] {
        let out = j.to_python_string(indent);
        let back = Json::parse(&out).unwrap_or_else(|e| panic!("own JSON does not parse: {e}"));
        assert_eq!(text(&back), text(&j), "JSON text round trip");
    }
    let image = crit::encode(&j).map_err(|e| e.to_string())?;
    // The JSON may be inconsistent (an extra longer than its entry says): then the image
    // does not read back, or reads as something else, which must round-trip in turn.
    let _ = crit_round_trip(&image);
    Ok(())
}

/// A reader over an image in memory.
type Rd<'a> = ImageReader<Cursor<&'a [u8]>>;

/// Reads the extra data after an entry.
type Extra<M> = fn(&M, &mut Rd<'_>) -> Result<(), ImageError>;

/// Reads every entry of `image` (a `kind` image) as `M`, each followed by its extra data, as
/// cryo's restore does; every entry must re-encode to the same message.
fn typed<M: Message + Default>(kind: ImageKind, image: &[u8], extra: Extra<M>) -> Outcome {
    let len = image.len();
    let mut r = ImageReader::with_len(Cursor::new(image), kind, NAME, len as u64)
        .map_err(|e| checked(e, len))?;
    while let Some(m) = r.read_entry::<M>().map_err(|e| checked(e, len))? {
        let bytes = m.encode_to_vec();
        let back = M::decode(bytes.as_slice()).unwrap_or_else(|e| panic!("re-decode: {e}"));
        assert_eq!(back.encode_to_vec(), bytes, "prost round trip");
        extra(&m, &mut r).map_err(|e| checked(e, len))?;
    }
    Ok(())
}

fn none<M>(_: &M, _: &mut Rd<'_>) -> Result<(), ImageError> {
    Ok(())
}

fn raw(r: &mut Rd<'_>, n: u64) -> Result<(), ImageError> {
    r.read_raw(n).map(|_| ())
}

/// `qnum` messages, each a framed `ipc_msg` and its data padded to 8 (fewer at the end).
fn ipc_msgs(m: &pb::IpcMsgEntry, r: &mut Rd<'_>) -> Result<(), ImageError> {
    for _ in 0..m.qnum {
        if r.remaining() == Some(0) {
            break;
        }
        let Some(msg) = r.read_entry::<pb::IpcMsg>()? else {
            break;
        };
        raw(r, u64::from(msg.msize).div_ceil(8) * 8)?;
    }
    Ok(())
}

/// A ghost file: its entry, then `ghost_chunk_entry`s each with `len` bytes, or the data.
fn ghost(kind: ImageKind, image: &[u8]) -> Outcome {
    let len = image.len();
    let mut r = ImageReader::with_len(Cursor::new(image), kind, NAME, len as u64)
        .map_err(|e| checked(e, len))?;
    let Some(g) = r
        .read_entry::<pb::GhostFileEntry>()
        .map_err(|e| checked(e, len))?
    else {
        return Err("no ghost file entry".into());
    };
    if g.chunks == Some(true) {
        while let Some(c) = r
            .read_entry::<pb::GhostChunkEntry>()
            .map_err(|e| checked(e, len))?
        {
            raw(&mut r, c.len).map_err(|e| checked(e, len))?;
        }
    } else {
        r.read_raw_to_end().map_err(|e| checked(e, len))?;
    }
    Ok(())
}

/// One message family: its kind and reader.
pub type Family = (ImageKind, fn(ImageKind, &[u8]) -> Outcome);

macro_rules! families {
    ($($kind:ident => $msg:ident $(, $extra:expr)?;)*) => {
        /// Every message family with its image kind, for [`message`].
        pub const FAMILIES: &[Family] = &[
            (ImageKind::GhostFile, ghost),
            $((ImageKind::$kind, |k, b| typed::<pb::$msg>(k, b, families!(@x $($extra)?)))),*
        ];
    };
    (@x) => { none };
    (@x $extra:expr) => { $extra };
}

families! {
    Inventory => InventoryEntry;
    Core => CoreEntry;
    Ids => TaskKobjIdsEntry;
    Mm => MmEntry;
    Pstree => PstreeEntry;
    Files => FileEntry;
    Fdinfo => FdinfoEntry;
    Pipes => PipeEntry;
    PipesData => PipeDataEntry, |m, r| raw(r, u64::from(m.bytes));
    Fifo => FifoEntry;
    FifoData => PipeDataEntry, |m, r| raw(r, u64::from(m.bytes));
    TtyFiles => TtyFileEntry;
    TtyInfo => TtyInfoEntry;
    TtyData => TtyDataEntry;
    Pagemap => PagemapEntry;
    ShmemPagemap => PagemapEntry;
    RegFiles => RegFileEntry;
    ExtFiles => ExtFileEntry;
    NsFiles => NsFileEntry;
    EventfdFile => EventfdFileEntry;
    EventpollFile => EventpollFileEntry;
    EventpollTfd => EventpollTfdEntry;
    Signalfd => SignalfdEntry;
    InotifyFile => InotifyFileEntry;
    InotifyWd => InotifyWdEntry;
    FanotifyFile => FanotifyFileEntry;
    FanotifyMark => FanotifyMarkEntry;
    Vmas => VmaEntry;
    Sigact => SaEntry;
    Unixsk => UnixSkEntry;
    Inetsk => InetSkEntry;
    Packetsk => PacketSockEntry;
    NetlinkSk => NetlinkSkEntry;
    SkQueues => SkPacketEntry, |m, r| raw(r, u64::from(m.length));
    Itimers => ItimerEntry;
    PosixTimers => PosixTimerEntry;
    Creds => CredsEntry;
    Utsns => UtsnsEntry;
    IpcVar => IpcVarEntry;
    IpcnsShm => IpcShmEntry, |m, r| raw(r, m.size.div_ceil(4).saturating_mul(4));
    IpcnsMsg => IpcMsgEntry, ipc_msgs;
    IpcnsSem => IpcSemEntry, |m, r| raw(r, (u64::from(m.nsems) * 2).div_ceil(8) * 8);
    Fs => FsEntry;
    RemapFpath => RemapFilePathEntry;
    MemfdInode => MemfdInodeEntry;
    TcpStream => TcpStreamEntry, |m, r| raw(r, u64::from(m.inq_len) + u64::from(m.outq_len));
    Mnts => MntEntry;
    Netdev => NetDeviceEntry;
    Netns => NetnsEntry;
    Autofs => AutofsEntry;
    BinfmtMisc => BinfmtMiscEntry;
    FileLocks => FileLockEntry;
    Rlimit => RlimitEntry;
    Signal => SignalQueueEntry;
    Psignal => SignalQueueEntry;
    Tunfile => TunfileEntry;
    Cgroup => CgroupEntry;
    Timerfd => TimerfdEntry;
    Cpuinfo => CpuinfoEntry;
    Seccomp => SeccompEntry;
    Userns => UsernsEntry;
    Timens => TimensEntry;
    Pidns => PidnsEntry;
    BpfmapFile => BpfmapFileEntry;
    BpfmapData => BpfmapDataEntry, |m, r| raw(r, u64::from(m.keys_bytes) + u64::from(m.values_bytes));
    Apparmor => ApparmorEntry;
    Pidfd => PidfdEntry;
    StatsDump => StatsEntry;
    IrmapCache => IrmapCacheEntry;
}

/// The header of a `kind` image (none for raw images).
fn header(kind: ImageKind) -> Vec<u8> {
    ImageWriter::new(Vec::new(), kind)
        .and_then(ImageWriter::finish)
        .unwrap_or_default()
}

/// `message`: one message family, picked by the first byte (index into [`FAMILIES`]); the rest
/// is the image after its header. Read with the family's prost type (and its raw blobs) and,
/// for kinds crit knows, with [`crit_round_trip`].
pub fn message(data: &[u8]) -> Outcome {
    let Some((&pick, body)) = data.split_first() else {
        return Err("short input".into());
    };
    let (kind, read) = FAMILIES[usize::from(pick) % FAMILIES.len()];
    let mut image = header(kind);
    image.extend_from_slice(body);
    let typed = read(kind, &image);
    let dynamic = match crit_round_trip(&image) {
        Err(e) if e.starts_with("no handler") => None,
        other => Some(other),
    };
    // cryo's restore (prost types) and crit (descriptors) read the same images: both read one
    // or both reject it. Not for pagemaps, whose head the typed reader reads as an entry.
    if let Some(dynamic) = &dynamic {
        if !matches!(kind, ImageKind::Pagemap | ImageKind::ShmemPagemap) {
            assert_eq!(
                typed.is_ok(),
                dynamic.is_ok(),
                "prost and crit disagree: {typed:?} / {dynamic:?}"
            );
        }
    }
    typed.and(dynamic.unwrap_or(Ok(())))
}

/// The files of a dump directory [`explore`] writes, by the selector byte of a record.
pub const EXPLORE_FILES: &[&str] = &[
    "pstree.img",
    "core-1.img",
    "core-2.img",
    "ids-1.img",
    "ids-2.img",
    "mm-1.img",
    "mm-2.img",
    "pagemap-1.img",
    "pagemap-2.img",
    "fs-1.img",
    "fs-2.img",
    "fdinfo-1.img",
    "fdinfo-2.img",
    "files.img",
    "reg-files.img",
    "pipes.img",
    "unixsk.img",
    "inventory.img",
];

/// Splits `data` into the files of a dump: records of a selector byte (index into
/// [`EXPLORE_FILES`]), a `u16` LE length and that many bytes (fewer at the end of the input).
fn dump_files(data: &[u8]) -> Vec<(&'static str, &[u8])> {
    let mut out: Vec<(&'static str, &[u8])> = Vec::new();
    let mut rest = data;
    while let [sel, a, b, tail @ ..] = rest {
        let n = usize::from(u16::from_le_bytes([*a, *b])).min(tail.len());
        let name = EXPLORE_FILES[usize::from(*sel) % EXPLORE_FILES.len()];
        out.retain(|(f, _)| *f != name);
        out.push((name, &tail[..n]));
        rest = &tail[n..];
    }
    out
}

/// Encodes files as [`explore`] reads them (the inverse of [`dump_files`]).
pub fn dump_input(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, bytes) in files {
        let sel = EXPLORE_FILES.iter().position(|f| f == name).unwrap_or(0);
        let n = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
        out.push(sel as u8);
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&bytes[..usize::from(n)]);
    }
    out
}

fn write_dump(data: &[u8]) -> Result<TempDir, String> {
    let dir = TempDir::new("dump")?;
    for (name, bytes) in dump_files(data) {
        std::fs::write(dir.0.join(name), bytes).map_err(|e| format!("write {name}: {e}"))?;
    }
    Ok(dir)
}

/// `explore`: a dump directory built from records (see [`EXPLORE_FILES`]), through
/// `crit x` `ps`, `fds`, `mems` and `rss`.
pub fn explore(data: &[u8]) -> Outcome {
    let dir = write_dump(data)?;
    let mut res = Ok(());
    for what in ["ps", "fds", "mems", "rss"] {
        if let Err(e) = crit::explore::explore(&dir.0, what) {
            res = Err(e.to_string());
        }
    }
    res
}

/// `validate`: the same directories as [`explore`], through `crit validate`. Not in
/// [`TARGETS`]: `crit/validate.rs` has an owner of its own; run it with
/// `cargo fuzz run validate`.
pub fn validate(data: &[u8]) -> Outcome {
    let dir = write_dump(data)?;
    crit::validate::validate(&dir.0)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

// ---- seeds ----

fn image_of<M: Message>(kind: ImageKind, entries: &[(M, &[u8])]) -> Vec<u8> {
    let mut w = match ImageWriter::new(Vec::new(), kind) {
        Ok(w) => w,
        Err(_) => return Vec::new(),
    };
    for (m, extra) in entries {
        let _ = w.write_entry(m);
        let _ = w.write_raw(extra);
    }
    w.finish().unwrap_or_default()
}

fn fown() -> pb::FownEntry {
    pb::FownEntry::default()
}

fn vma(start: u64, end: u64, status: u32, shmid: u64) -> pb::VmaEntry {
    pb::VmaEntry {
        start,
        end,
        pgoff: 0,
        shmid,
        prot: 3,
        flags: 0x22,
        status,
        fd: -1,
        madv: None,
        fdflags: None,
    }
}

fn ipc_desc() -> pb::IpcDescEntry {
    pb::IpcDescEntry {
        key: 0x1234,
        uid: 1000,
        gid: 1000,
        cuid: 1000,
        cgid: 1000,
        mode: 0o600,
        id: 7,
    }
}

/// Valid images of many kinds (and one image with every kind of extra), for seeds.
pub fn sample_images() -> Vec<(ImageKind, Vec<u8>)> {
    use ImageKind as K;
    let pstree = |pid, ppid| pb::PstreeEntry {
        pid,
        ppid,
        pgid: 1,
        sid: 1,
        threads: vec![pid],
    };
    let core = pb::CoreEntry {
        mtype: pb::core_entry::March::X8664 as i32,
        tc: Some(pb::TaskCoreEntry {
            task_state: 1,
            comm: "sleep".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mm = pb::MmEntry {
        mm_start_code: 0x40_0000,
        mm_end_code: 0x40_1000,
        exe_file_id: 1,
        mm_saved_auxv: vec![33, 0x7fff_0000],
        vmas: vec![
            vma(0x40_0000, 0x40_1000, 1 | (1 << 6), 1),
            vma(0x7fff_0000, 0x7fff_2000, 1 | (1 << 1), 0),
        ],
        ..Default::default()
    };
    let reg = pb::RegFileEntry {
        id: 1,
        flags: 0o2,
        pos: 0,
        fown: fown(),
        name: "/bin/sleep".into(),
        ..Default::default()
    };
    let pipe = pb::PipeEntry {
        id: 2,
        pipe_id: 77,
        flags: 0,
        fown: fown(),
    };
    let files = [
        pb::FileEntry {
            r#type: pb::FdTypes::Reg as i32,
            id: 1,
            reg: Some(reg.clone()),
            ..Default::default()
        },
        pb::FileEntry {
            r#type: pb::FdTypes::Pipe as i32,
            id: 2,
            pipe: Some(pipe),
            ..Default::default()
        },
    ];
    let fdinfo = |fd, id, t: pb::FdTypes| pb::FdinfoEntry {
        id,
        flags: 0,
        r#type: t as i32,
        fd,
        xattr_security_selinux: None,
    };
    let ids = pb::TaskKobjIdsEntry {
        vm_id: 1,
        files_id: 1,
        fs_id: 1,
        sighand_id: 1,
        ..Default::default()
    };
    let pipe_data = pb::PipeDataEntry {
        pipe_id: 77,
        bytes: 5,
        size: Some(4096),
    };
    let tty = pb::TtyFileEntry {
        id: 3,
        tty_info_id: 4,
        flags: 0o2,
        fown: fown(),
        regf_id: None,
    };
    let tty_info = pb::TtyInfoEntry {
        id: 4,
        r#type: 1,
        sid: 1,
        pgrp: 1,
        rdev: 0x8800,
        ..Default::default()
    };
    let inet = pb::InetSkEntry {
        id: 5,
        ino: 1234,
        family: 2,
        r#type: 1,
        proto: 6,
        state: 10,
        src_port: 80,
        dst_port: 0,
        flags: 0,
        backlog: 5,
        src_addr: vec![u32::from_ne_bytes([127, 0, 0, 1])],
        dst_addr: vec![0, 0, 0, 0],
        fown: fown(),
        opts: Default::default(),
        ..Default::default()
    };
    let ghost = pb::GhostFileEntry {
        uid: 0,
        gid: 0,
        mode: 0o100644,
        chunks: Some(true),
        size: Some(8),
        ..Default::default()
    };
    let ghost_plain = pb::GhostFileEntry {
        mode: 0o100600,
        ..Default::default()
    };
    let chunk = pb::GhostChunkEntry { len: 3, off: 0 };
    let shm = pb::IpcShmEntry {
        desc: ipc_desc(),
        size: 6,
        in_pagemaps: None,
        hugetlb_flag: None,
    };
    let sem = pb::IpcSemEntry {
        desc: ipc_desc(),
        nsems: 3,
    };
    let tcp = pb::TcpStreamEntry {
        inq_len: 2,
        outq_len: 3,
        ..Default::default()
    };
    let skq = pb::SkPacketEntry {
        id_for: 5,
        length: 4,
        scm: Vec::new(),
    };
    let bpf = pb::BpfmapDataEntry {
        map_id: 1,
        keys_bytes: 4,
        values_bytes: 8,
        count: 1,
    };
    let inventory = pb::InventoryEntry {
        img_version: 2,
        fdinfo_per_id: Some(true),
        root_ids: Some(ids),
        ns_per_id: Some(true),
        ..Default::default()
    };
    let mut ipc_msg = Vec::new();
    {
        // An ipc_msg_entry with two messages: framed ipc_msg, data padded to 8.
        let entry = pb::IpcMsgEntry {
            desc: ipc_desc(),
            qbytes: 16384,
            qnum: 2,
        };
        if let Ok(mut w) = ImageWriter::new(Vec::new(), K::IpcnsMsg) {
            let _ = w.write_entry(&entry);
            for (mtype, data) in [(1u64, &b"hello"[..]), (2, &b"0123456789"[..])] {
                let m = pb::IpcMsg {
                    mtype,
                    msize: data.len() as u32,
                };
                let _ = w.write_entry(&m);
                let _ = w.write_raw(data);
                let _ = w.write_raw(&vec![0u8; data.len().div_ceil(8) * 8 - data.len()]);
            }
            ipc_msg = w.finish().unwrap_or_default();
        }
    }
    vec![
        (K::Inventory, image_of(K::Inventory, &[(inventory, b"")])),
        (
            K::Pstree,
            image_of(K::Pstree, &[(pstree(1, 0), b""), (pstree(2, 1), b"")]),
        ),
        (K::Core, image_of(K::Core, &[(core, b"")])),
        (K::Ids, image_of(K::Ids, &[(ids, b"")])),
        (K::Mm, image_of(K::Mm, &[(mm, b"")])),
        (
            K::Fs,
            image_of(
                K::Fs,
                &[(
                    pb::FsEntry {
                        cwd_id: 1,
                        root_id: 1,
                        umask: Some(0o22),
                    },
                    b"",
                )],
            ),
        ),
        (
            K::Files,
            image_of(
                K::Files,
                &files
                    .iter()
                    .map(|f| (f.clone(), &b""[..]))
                    .collect::<Vec<_>>(),
            ),
        ),
        (
            K::Fdinfo,
            image_of(
                K::Fdinfo,
                &[
                    (fdinfo(0, 1, pb::FdTypes::Reg), b""),
                    (fdinfo(1, 2, pb::FdTypes::Pipe), b""),
                    (fdinfo(2, 3, pb::FdTypes::Tty), b""),
                ],
            ),
        ),
        (K::RegFiles, image_of(K::RegFiles, &[(reg, b"")])),
        (K::Pipes, image_of(K::Pipes, &[(pipe, b"")])),
        (
            K::PipesData,
            image_of(K::PipesData, &[(pipe_data, b"hello")]),
        ),
        (K::TtyFiles, image_of(K::TtyFiles, &[(tty, b"")])),
        (K::TtyInfo, image_of(K::TtyInfo, &[(tty_info, b"")])),
        (K::Inetsk, image_of(K::Inetsk, &[(inet, b"")])),
        (
            K::GhostFile,
            image_of(K::GhostFile, &[(ghost, &b""[..])])
                .into_iter()
                .chain(
                    image_of(K::GhostFile, &[(chunk, &b"abc"[..])])
                        .into_iter()
                        .skip(8),
                )
                .collect(),
        ),
        (
            K::GhostFile,
            image_of(K::GhostFile, &[(ghost_plain, b"data")]),
        ),
        (K::IpcnsShm, image_of(K::IpcnsShm, &[(shm, b"abcdef\0\0")])),
        (
            K::IpcnsSem,
            image_of(K::IpcnsSem, &[(sem, &[1, 0, 2, 0, 3, 0, 0, 0][..])]),
        ),
        (K::IpcnsMsg, ipc_msg),
        (K::TcpStream, image_of(K::TcpStream, &[(tcp, b"inout")])),
        (K::SkQueues, image_of(K::SkQueues, &[(skq, b"pkt!")])),
        (
            K::BpfmapData,
            image_of(K::BpfmapData, &[(bpf, b"keysvalues..")]),
        ),
        (K::Pagemap, sample_pagemap(K::Pagemap)),
        (K::ShmemPagemap, sample_pagemap(K::ShmemPagemap)),
    ]
}

fn sample_pagemap(kind: ImageKind) -> Vec<u8> {
    let Ok(w) = ImageWriter::new(Vec::new(), kind) else {
        return Vec::new();
    };
    let Ok(mut w) = PagemapWriter::new(w, 1) else {
        return Vec::new();
    };
    let _ = w.add(0x40_0000, 1, PE_PRESENT);
    let _ = w.add(0x7fff_0000, 2, PE_PRESENT | PE_LAZY);
    let _ = w.add(0x7fff_2000, 1, PE_PARENT);
    let _ = w.image().write_entry(&pagemap_entry(0x8000_0000, 1, 0));
    w.finish().unwrap_or_default()
}

/// A small dump directory (two tasks) for [`explore`], as records.
fn sample_dump() -> Vec<u8> {
    let mut files: Vec<(&str, Vec<u8>)> = Vec::new();
    for (kind, bytes) in sample_images() {
        let name = match kind {
            ImageKind::Pstree => "pstree.img",
            ImageKind::Core => "core-1.img",
            ImageKind::Ids => "ids-1.img",
            ImageKind::Mm => "mm-1.img",
            ImageKind::Pagemap => "pagemap-1.img",
            ImageKind::Fs => "fs-1.img",
            ImageKind::Fdinfo => "fdinfo-1.img",
            ImageKind::Files => "files.img",
            ImageKind::RegFiles => "reg-files.img",
            ImageKind::Pipes => "pipes.img",
            ImageKind::Inventory => "inventory.img",
            _ => continue,
        };
        files.push((name, bytes.clone()));
        if let Some(two) = match name {
            "core-1.img" => Some("core-2.img"),
            "ids-1.img" => Some("ids-2.img"),
            "mm-1.img" => Some("mm-2.img"),
            "pagemap-1.img" => Some("pagemap-2.img"),
            "fs-1.img" => Some("fs-2.img"),
            _ => None,
        } {
            files.push((two, bytes));
        }
    }
    dump_input(&files)
}

/// Seed inputs of fuzz target `target` (see [`TARGETS`]): valid inputs every harness must
/// read without error. Empty for an unknown target.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let images = sample_images();
    let name = |k: ImageKind, i: usize| format!("{}-{i}", k.name().to_ascii_lowercase());
    match target {
        "frame" => {
            // Images whose entries are all there is (no extra data after an entry).
            let plain = |k: &ImageKind| {
                !matches!(
                    k,
                    ImageKind::PipesData
                        | ImageKind::GhostFile
                        | ImageKind::IpcnsShm
                        | ImageKind::IpcnsSem
                        | ImageKind::IpcnsMsg
                        | ImageKind::TcpStream
                        | ImageKind::SkQueues
                        | ImageKind::BpfmapData
                )
            };
            let kind_index = |k: &ImageKind| ImageKind::ALL.iter().position(|x| x == k);
            let mut out: Vec<(String, Vec<u8>)> = images
                .iter()
                .enumerate()
                .filter(|(_, (k, _))| plain(k))
                .filter_map(|(i, (k, b))| {
                    let mut v = vec![kind_index(k)? as u8, (i % 2) as u8];
                    v.extend_from_slice(b);
                    Some((name(*k, i), v))
                })
                .collect();
            // A script: pipe data (an entry, its 5 bytes, the end), with the length known.
            if let (Some(idx), Some((_, b))) = (
                kind_index(&ImageKind::PipesData),
                images.iter().find(|(k, _)| *k == ImageKind::PipesData),
            ) {
                // kind, flags (known length, script), 3 operations: entry, raw 5, entry (the end).
                let mut v = vec![idx as u8, 1 | 2, 3];
                v.extend_from_slice(&[0, 0, 0, 0, 0, 2, 5, 0, 0, 0, 0, 0, 0, 0, 0]);
                v.extend_from_slice(b);
                out.push(("pipes_data-script".into(), v));
            }
            out
        }
        "pagemap" => images
            .iter()
            .enumerate()
            .filter(|(_, (k, _))| matches!(k, ImageKind::Pagemap | ImageKind::ShmemPagemap))
            .map(|(i, (k, b))| {
                let mut v = vec![u8::from(*k == ImageKind::ShmemPagemap) | 2];
                v.extend_from_slice(b.get(8..).unwrap_or_default());
                (name(*k, i), v)
            })
            .collect(),
        "crit_decode" => images
            .iter()
            .enumerate()
            .map(|(i, (k, b))| (name(*k, i), b.clone()))
            .collect(),
        "crit_json" => images
            .iter()
            .enumerate()
            .flat_map(|(i, (k, b))| {
                let mut out = Vec::new();
                for (pretty, indent, tag) in [(false, None, "plain"), (true, Some(4), "pretty")] {
                    if let Ok(j) = crit::decode(b, pretty, false) {
                        let t = j.to_python_string(indent);
                        out.push((format!("{}-{tag}", name(*k, i)), t.into_bytes()));
                    }
                }
                out
            })
            .collect(),
        "message" => images
            .iter()
            .enumerate()
            .filter_map(|(i, (k, b))| {
                let idx = FAMILIES.iter().position(|(f, _)| f == k)?;
                let head = header(*k).len();
                let mut v = vec![idx as u8];
                v.extend_from_slice(b.get(head..)?);
                Some((name(*k, i), v))
            })
            .collect(),
        "explore" | "validate" => vec![("dump".to_string(), sample_dump())],
        _ => Vec::new(),
    }
}
