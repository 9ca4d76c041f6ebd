//! crit's JSON form of an image (CRIU's `lib/pycriu/images/images.py` and `pb2dict.py`):
//! [`decode`] gives the JSON `crit decode` prints, [`encode`] the image `crit encode` writes,
//! [`info`] the object of `crit info`.
//!
//! ```text
//! { "magic": "CORE", "entries": [ { <fields of entry 1> }, ... ] }
//!
//! image:  [IMG_COMMON | IMG_SERVICE] MAGIC  { u32 size, message[size], [extra] }
//! ```
//! The first magic is not kept in the JSON (inventory has none, stats and irmap-cache
//! `IMG_SERVICE`). Extras, after their entry, by kind: pipe and fifo data (`bytes`), socket queues
//! (`length`), TCP queues (`{"inq", "outq"}`), bpf map data (`keys_bytes + values_bytes`), SysV
//! shm (`size`, padded to 4), semaphores (`nsems` u16 values, padded to 8), message queues
//! (`qnum` framed `ipc_msg` entries each with data padded to 8), all as base64 strings except
//! the semaphore list and the message objects. `pagemap` is a `pagemap_head` then
//! `pagemap_entry`s; `ghost-file` a `ghost_file_entry` with the file data as its extra, or with
//! `chunks` set, `ghost_chunk_entry`s each with `len` bytes as extra. Raw images (pages) have
//! no JSON form.

mod codec;
mod convert;
pub mod explore;
pub mod json;
pub mod validate;

pub use json::Json;

use crate::magic::{magic_by_name, magic_name, IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC};
use convert::Ctx;
use prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};

/// What went wrong converting an image.
#[derive(Debug, thiserror::Error)]
pub enum CritError {
    /// The image's magic is not one crit knows.
    #[error("unknown magic {0:#x}; maybe this is an image with raw data (i.e. pages.img)")]
    UnknownMagic(u32),
    /// The magic is known but crit has no JSON form for it.
    #[error("no handler found for image with magic {0}")]
    NoHandler(String),
    /// The image bytes are malformed.
    #[error("{0}")]
    Format(String),
    /// A message or JSON value could not be converted.
    #[error("{0}")]
    Convert(String),
}

/// The extra blob an entry carries.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Extra {
    None,
    PipeData,
    SkQueue,
    TcpStream,
    BpfMap,
    IpcShm,
    IpcSem,
    IpcMsg,
}

#[derive(Debug, Clone, Copy)]
enum Handler {
    Entries(&'static str, Extra),
    Pagemap,
    Ghost,
}

/// images.py's `handlers`: crit name of the magic to the entry message and extra.
fn handler(name: &str) -> Option<Handler> {
    use Extra as X;
    let e = |m| Some(Handler::Entries(m, X::None));
    let x = |m, x| Some(Handler::Entries(m, x));
    match name {
        "INVENTORY" => e("inventory_entry"),
        "CORE" => e("core_entry"),
        "IDS" => e("task_kobj_ids_entry"),
        "CREDS" => e("creds_entry"),
        "UTSNS" => e("utsns_entry"),
        "TIMENS" => e("timens_entry"),
        "PIDNS" => e("pidns_entry"),
        "IPC_VAR" => e("ipc_var_entry"),
        "FS" => e("fs_entry"),
        "GHOST_FILE" => Some(Handler::Ghost),
        "MM" => e("mm_entry"),
        "CGROUP" => e("cgroup_entry"),
        "TCP_STREAM" => x("tcp_stream_entry", X::TcpStream),
        "STATS" => e("stats_entry"),
        "PAGEMAP" => Some(Handler::Pagemap),
        "PSTREE" => e("pstree_entry"),
        "REG_FILES" => e("reg_file_entry"),
        "NS_FILES" => e("ns_file_entry"),
        "EVENTFD_FILE" => e("eventfd_file_entry"),
        "EVENTPOLL_FILE" => e("eventpoll_file_entry"),
        "EVENTPOLL_TFD" => e("eventpoll_tfd_entry"),
        "SIGNALFD" => e("signalfd_entry"),
        "TIMERFD" => e("timerfd_entry"),
        "INOTIFY_FILE" => e("inotify_file_entry"),
        "INOTIFY_WD" => e("inotify_wd_entry"),
        "FANOTIFY_FILE" => e("fanotify_file_entry"),
        "FANOTIFY_MARK" => e("fanotify_mark_entry"),
        "VMAS" => e("vma_entry"),
        "PIPES" => e("pipe_entry"),
        "FIFO" => e("fifo_entry"),
        "SIGACT" => e("sa_entry"),
        "NETLINK_SK" => e("netlink_sk_entry"),
        "REMAP_FPATH" => e("remap_file_path_entry"),
        "MNTS" => e("mnt_entry"),
        "TTY_FILES" => e("tty_file_entry"),
        "TTY_INFO" => e("tty_info_entry"),
        "TTY_DATA" => e("tty_data_entry"),
        "RLIMIT" => e("rlimit_entry"),
        "TUNFILE" => e("tunfile_entry"),
        "EXT_FILES" => e("ext_file_entry"),
        "IRMAP_CACHE" => e("irmap_cache_entry"),
        "FILE_LOCKS" => e("file_lock_entry"),
        "FDINFO" => e("fdinfo_entry"),
        "UNIXSK" => e("unix_sk_entry"),
        "INETSK" => e("inet_sk_entry"),
        "PACKETSK" => e("packet_sock_entry"),
        "ITIMERS" => e("itimer_entry"),
        "POSIX_TIMERS" => e("posix_timer_entry"),
        "NETDEV" => e("net_device_entry"),
        "PIPES_DATA" | "FIFO_DATA" => x("pipe_data_entry", X::PipeData),
        "SK_QUEUES" => x("sk_packet_entry", X::SkQueue),
        "IPCNS_SHM" => x("ipc_shm_entry", X::IpcShm),
        "IPCNS_SEM" => x("ipc_sem_entry", X::IpcSem),
        "IPCNS_MSG" => x("ipc_msg_entry", X::IpcMsg),
        "NETNS" => e("netns_entry"),
        "USERNS" => e("userns_entry"),
        "SECCOMP" => e("seccomp_entry"),
        "AUTOFS" => e("autofs_entry"),
        "FILES" => e("file_entry"),
        "CPUINFO" => e("cpuinfo_entry"),
        "MEMFD_FILE" => e("memfd_file_entry"),
        "MEMFD_INODE" => e("memfd_inode_entry"),
        "BPFMAP_FILE" => e("bpfmap_file_entry"),
        "BPFMAP_DATA" => x("bpfmap_data_entry", X::BpfMap),
        "APPARMOR" => e("apparmor_entry"),
        _ => None,
    }
}

fn fmt_err(msg: impl Into<String>) -> CritError {
    CritError::Format(msg.into())
}

/// A cursor over the image bytes.
struct Input<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], CritError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| {
                fmt_err(format!(
                    "truncated image: {what} of {n} bytes at offset {}, {} left",
                    self.pos,
                    self.b.len() - self.pos
                ))
            })?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self, what: &str) -> Result<u32, CritError> {
        let s = self.take(4, what)?;
        Ok(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// One size-prefixed message, `None` at the end of the image.
    fn entry(
        &mut self,
        ctx: &Ctx,
        desc: &MessageDescriptor,
    ) -> Result<Option<DynamicMessage>, CritError> {
        if self.at_end() {
            return Ok(None);
        }
        let offset = self.pos;
        let size = self.u32("entry size")? as usize;
        let body = self.take(size, "entry")?;
        ctx.decode_msg(desc, body, offset).map(Some)
    }

    fn rest(&mut self) -> &'a [u8] {
        let s = &self.b[self.pos..];
        self.pos = self.b.len();
        s
    }
}

/// Reads the header, returning crit's name of the magic.
fn read_magic(inp: &mut Input) -> Result<&'static str, CritError> {
    let mut m = inp.u32("magic")?;
    if m == IMG_COMMON_MAGIC || m == IMG_SERVICE_MAGIC {
        m = inp.u32("magic")?;
    }
    match magic_name(m) {
        Some(n) if m != IMG_COMMON_MAGIC && m != IMG_SERVICE_MAGIC => Ok(n),
        _ => Err(CritError::UnknownMagic(m)),
    }
}

fn uint_field(msg: &DynamicMessage, name: &str) -> u64 {
    match msg.get_field_by_name(name).as_deref() {
        Some(Value::U32(v)) => u64::from(*v),
        Some(Value::U64(v)) => *v,
        Some(Value::I32(v)) => u64::try_from(*v).unwrap_or(0),
        Some(Value::I64(v)) => u64::try_from(*v).unwrap_or(0),
        Some(Value::Bool(b)) => u64::from(*b),
        _ => 0,
    }
}

fn round_up(x: u64, y: u64) -> u64 {
    x.div_ceil(y) * y
}

fn len_usize(n: u64) -> Result<usize, CritError> {
    usize::try_from(n).map_err(|_| fmt_err(format!("length {n} too large")))
}

/// crit's `human_readable` (for `show --nopl`).
fn human_readable(n: u64) -> String {
    let mut num = n as f64;
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"] {
        if num < 1024.0 {
            return if num.fract() == 0.0 {
                format!("{num}{unit}B")
            } else {
                format!("{num:.1}{unit}B")
            };
        }
        num /= 1024.0;
    }
    format!("{num:.1}YB")
}

/// Reads the extra of `kind` after entry `msg`: its JSON and payload size.
fn load_extra(
    ctx: &mut Ctx,
    inp: &mut Input,
    kind: Extra,
    msg: &DynamicMessage,
) -> Result<(Json, u64), CritError> {
    let b64 = |d: &[u8]| Json::Str(codec::b64_encode(d));
    Ok(match kind {
        Extra::None => (Json::Null, 0),
        Extra::PipeData | Extra::SkQueue | Extra::BpfMap => {
            let n = match kind {
                Extra::PipeData => uint_field(msg, "bytes"),
                Extra::SkQueue => uint_field(msg, "length"),
                _ => uint_field(msg, "keys_bytes") + uint_field(msg, "values_bytes"),
            };
            (b64(inp.take(len_usize(n)?, "extra data")?), n)
        }
        Extra::TcpStream => {
            let inq_len = uint_field(msg, "inq_len");
            let outq_len = uint_field(msg, "outq_len");
            let inq = inp.take(len_usize(inq_len)?, "tcp inq")?;
            let outq = inp.take(len_usize(outq_len)?, "tcp outq")?;
            (
                Json::Object(vec![("inq".into(), b64(inq)), ("outq".into(), b64(outq))]),
                inq_len + outq_len,
            )
        }
        Extra::IpcShm => {
            let size = uint_field(msg, "size");
            let data = inp.take(len_usize(size)?, "shm data")?;
            inp.take(len_usize(round_up(size, 4) - size)?, "shm padding")?;
            (b64(data), size)
        }
        Extra::IpcSem => {
            let size = 2 * uint_field(msg, "nsems");
            let data = inp.take(len_usize(size)?, "semaphores")?;
            inp.take(len_usize(round_up(size, 8) - size)?, "semaphore padding")?;
            let vals = data
                .chunks(2)
                .map(|c| Json::Int(i128::from(u16::from_ne_bytes([c[0], c[1]]))))
                .collect();
            (Json::Array(vals), size)
        }
        Extra::IpcMsg => {
            let desc = ctx.message("ipc_msg")?;
            let mut out = Vec::new();
            let mut total = 0;
            for _ in 0..uint_field(msg, "qnum") {
                if inp.at_end() {
                    break;
                }
                let offset = inp.pos;
                let size = u64::from(inp.u32("ipc_msg size")?);
                let m = ctx.decode_msg(&desc, inp.take(len_usize(size)?, "ipc_msg")?, offset)?;
                let msize = uint_field(&m, "msize");
                let data = inp.take(len_usize(msize)?, "message data")?;
                inp.take(len_usize(round_up(msize, 8) - msize)?, "message padding")?;
                total += size + msize;
                out.push(ctx.pb2dict(&m, false, false));
                out.push(b64(data));
            }
            (Json::Array(out), total)
        }
    })
}

/// `crit decode` (`pretty`: `--pretty`, as `crit show`; `nopl`: `show --nopl`, extras replaced
/// by their size): the JSON of an image.
pub fn decode(image: &[u8], pretty: bool, nopl: bool) -> Result<Json, CritError> {
    let mut ctx = Ctx::new()?;
    let mut inp = Input { b: image, pos: 0 };
    let name = read_magic(&mut inp)?;
    let h = handler(name).ok_or_else(|| CritError::NoHandler(name.to_string()))?;
    let mut entries = Vec::new();
    match h {
        Handler::Entries(mname, extra) => {
            let desc = ctx.message(mname)?;
            while let Some(msg) = inp.entry(&ctx, &desc)? {
                let mut j = ctx.pb2dict(&msg, pretty, false);
                if extra != Extra::None {
                    let (x, size) = load_extra(&mut ctx, &mut inp, extra, &msg)?;
                    let x = if nopl {
                        Json::Str(format!("... <{}>", human_readable(size)))
                    } else {
                        x
                    };
                    if let Json::Object(kv) = &mut j {
                        kv.push(("extra".into(), x));
                    }
                }
                entries.push(j);
            }
        }
        Handler::Pagemap => {
            let mut desc = ctx.message("pagemap_head")?;
            let entry = ctx.message("pagemap_entry")?;
            while let Some(msg) = inp.entry(&ctx, &desc)? {
                entries.push(ctx.pb2dict(&msg, pretty, false));
                desc = entry.clone();
            }
        }
        Handler::Ghost => {
            let gdesc = ctx.message("ghost_file_entry")?;
            let gf = inp.entry(&ctx, &gdesc)?.ok_or_else(|| {
                fmt_err(format!(
                    "ghost file image without an entry at offset {}",
                    inp.pos
                ))
            })?;
            let mut g = ctx.pb2dict(&gf, pretty, false);
            if uint_field(&gf, "chunks") != 0 {
                entries.push(g);
                let cdesc = ctx.message("ghost_chunk_entry")?;
                while let Some(c) = inp.entry(&ctx, &cdesc)? {
                    let mut j = ctx.pb2dict(&c, pretty, false);
                    let data = inp.take(len_usize(uint_field(&c, "len"))?, "ghost chunk")?;
                    if !nopl {
                        if let Json::Object(kv) = &mut j {
                            kv.push(("extra".into(), Json::Str(codec::b64_encode(data))));
                        }
                    }
                    entries.push(j);
                }
            } else {
                let data = inp.rest();
                if !nopl {
                    if let Json::Object(kv) = &mut g {
                        kv.push(("extra".into(), Json::Str(codec::b64_encode(data))));
                    }
                }
                entries.push(g);
            }
        }
    }
    Ok(Json::Object(vec![
        ("magic".into(), Json::Str(name.to_string())),
        ("entries".into(), Json::Array(entries)),
    ]))
}

/// `crit info`: `{"magic": NAME, "count": entries}` (a pagemap's head is not counted).
/// crit counts size-prefixed words without skipping extras; cryo counts real entries.
pub fn info(image: &[u8]) -> Result<Json, CritError> {
    let img = decode(image, false, true)?;
    let name = img
        .get("magic")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_string();
    let mut count = match img.get("entries") {
        Some(Json::Array(e)) => e.len(),
        _ => 0,
    };
    if name == "PAGEMAP" {
        count = count.saturating_sub(1);
    }
    Ok(Json::Object(vec![
        ("magic".into(), Json::Str(name)),
        ("count".into(), Json::Int(count as i128)),
    ]))
}

fn put_entry(out: &mut Vec<u8>, msg: &DynamicMessage) -> Result<(), CritError> {
    let body = msg.encode_to_vec();
    let size = u32::try_from(body.len()).map_err(|_| fmt_err("entry too large"))?;
    out.extend_from_slice(&size.to_ne_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

fn b64_of(v: &Json, what: &str) -> Result<Vec<u8>, CritError> {
    let s = v
        .as_str()
        .ok_or_else(|| CritError::Convert(format!("{what}: expected a base64 string")))?;
    codec::b64_decode(s).map_err(CritError::Convert)
}

fn pad(out: &mut Vec<u8>, n: u64) {
    out.extend(std::iter::repeat_n(0u8, n as usize));
}

/// The first `size` bytes of an extra's `data`: the entry says how many there are, and a
/// shorter extra is an error (it would leave the image unreadable past it).
fn data_of_size<'a>(data: &'a [u8], size: u64, what: &str) -> Result<&'a [u8], CritError> {
    usize::try_from(size)
        .ok()
        .and_then(|n| data.get(..n))
        .ok_or_else(|| {
            CritError::Convert(format!(
                "extra: {what} of {size} bytes has {} bytes of data",
                data.len()
            ))
        })
}

fn dump_extra(
    ctx: &mut Ctx,
    out: &mut Vec<u8>,
    kind: Extra,
    x: &Json,
    msg: &DynamicMessage,
) -> Result<(), CritError> {
    let conv = |m: &str| CritError::Convert(m.to_string());
    match kind {
        Extra::None => {}
        Extra::PipeData | Extra::SkQueue | Extra::BpfMap => out.extend(b64_of(x, "extra")?),
        Extra::TcpStream => {
            out.extend(b64_of(
                x.get("inq").ok_or_else(|| conv("extra: no inq"))?,
                "inq",
            )?);
            out.extend(b64_of(
                x.get("outq").ok_or_else(|| conv("extra: no outq"))?,
                "outq",
            )?);
        }
        Extra::IpcShm => {
            let size = uint_field(msg, "size");
            let data = b64_of(x, "extra")?;
            // `size` comes from the JSON: zero-filling a segment larger than its data would
            // write (and allocate) whatever it says, up to 2^64 bytes.
            let data = data_of_size(&data, size, "shm segment")?;
            out.extend_from_slice(data);
            pad(out, round_up(size, 4) - size);
        }
        Extra::IpcSem => {
            let Json::Array(vals) = x else {
                return Err(conv("extra: expected a list of semaphore values"));
            };
            if vals.len() as u64 != uint_field(msg, "nsems") {
                return Err(conv("number of semaphores mismatch"));
            }
            for v in vals {
                let Json::Int(i) = v else {
                    return Err(conv("extra: semaphore value is not an integer"));
                };
                let v = u16::try_from(*i).map_err(|_| conv("semaphore value out of range"))?;
                out.extend_from_slice(&v.to_ne_bytes());
            }
            let size = 2 * vals.len() as u64;
            pad(out, round_up(size, 8) - size);
        }
        Extra::IpcMsg => {
            let Json::Array(items) = x else {
                return Err(conv("extra: expected a list of messages"));
            };
            let desc = ctx.message("ipc_msg")?;
            for pair in items.chunks(2) {
                let m = ctx.dict2pb(&pair[0], &desc)?;
                put_entry(out, &m)?;
                let msize = uint_field(&m, "msize");
                let data = b64_of(pair.get(1).unwrap_or(&Json::Str(String::new())), "message")?;
                out.extend_from_slice(data_of_size(&data, msize, "message")?);
                pad(out, round_up(msize, 8) - msize);
            }
        }
    }
    Ok(())
}

/// `crit encode`: the image of crit's JSON.
pub fn encode(img: &Json) -> Result<Vec<u8>, CritError> {
    let conv = |m: &str| CritError::Convert(m.to_string());
    let mut ctx = Ctx::new()?;
    let name = img
        .get("magic")
        .and_then(Json::as_str)
        .ok_or_else(|| conv("no \"magic\" string"))?;
    let magic = magic_by_name(name).ok_or_else(|| conv(&format!("unknown magic name {name}")))?;
    let h = handler(name).ok_or_else(|| CritError::NoHandler(name.to_string()))?;
    let Some(Json::Array(entries)) = img.get("entries") else {
        return Err(conv("no \"entries\" list"));
    };
    let mut out = Vec::new();
    match name {
        "INVENTORY" => {}
        "STATS" | "IRMAP_CACHE" => out.extend_from_slice(&IMG_SERVICE_MAGIC.to_ne_bytes()),
        _ => out.extend_from_slice(&IMG_COMMON_MAGIC.to_ne_bytes()),
    }
    out.extend_from_slice(&magic.to_ne_bytes());
    match h {
        Handler::Entries(mname, extra) => {
            let desc = ctx.message(mname)?;
            for e in entries {
                let msg = ctx.dict2pb(e, &desc)?;
                put_entry(&mut out, &msg)?;
                if let Some(x) = e.get("extra") {
                    dump_extra(&mut ctx, &mut out, extra, x, &msg)?;
                }
            }
        }
        Handler::Pagemap => {
            let mut desc = ctx.message("pagemap_head")?;
            let entry = ctx.message("pagemap_entry")?;
            for e in entries {
                put_entry(&mut out, &ctx.dict2pb(e, &desc)?)?;
                desc = entry.clone();
            }
        }
        Handler::Ghost => {
            let first = entries
                .first()
                .ok_or_else(|| conv("ghost file without entries"))?;
            let gf = ctx.dict2pb(first, &ctx.message("ghost_file_entry")?)?;
            put_entry(&mut out, &gf)?;
            if uint_field(&gf, "chunks") != 0 {
                let cdesc = ctx.message("ghost_chunk_entry")?;
                for e in &entries[1..] {
                    put_entry(&mut out, &ctx.dict2pb(e, &cdesc)?)?;
                    out.extend(b64_of(e.get("extra").unwrap_or(&Json::Null), "extra")?);
                }
            } else {
                out.extend(b64_of(first.get("extra").unwrap_or(&Json::Null), "extra")?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::magic::MAGIC_NAMES;

    #[test]
    fn every_handler_message_exists() {
        let ctx = Ctx::new().unwrap();
        for (_, name) in MAGIC_NAMES {
            if let Some(Handler::Entries(m, x)) = handler(name) {
                ctx.message(m).unwrap();
                if x == Extra::IpcMsg {
                    ctx.message("ipc_msg").unwrap();
                }
            }
        }
        for m in [
            "pagemap_head",
            "pagemap_entry",
            "ghost_file_entry",
            "ghost_chunk_entry",
        ] {
            ctx.message(m).unwrap();
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"", false, false).is_err());
        assert!(decode(&[0, 0, 0, 0], false, false).is_err());
        let mut img = IMG_COMMON_MAGIC.to_ne_bytes().to_vec();
        img.extend_from_slice(&crate::magic::CORE_MAGIC.to_ne_bytes());
        img.extend_from_slice(&1000u32.to_ne_bytes());
        assert!(decode(&img, false, false).is_err());
    }
}
