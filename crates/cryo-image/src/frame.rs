//! Image framing: the header magics and the length-prefixed entries of an image file, and the
//! helpers that create and open image files in a dump directory.
//!
//! Every word is a native-endian `u32` (little-endian on x86_64), as CRIU writes them:
//!
//! ```text
//! ordinary image (core-42.img, mm-42.img, files.img, ...):
//!   offset 0      4                    8         12                  12+len0
//!   +-------------+--------------------+---------+-------------------+---------+----
//!   | IMG_COMMON  | kind magic         | len0    | entry 0 (protobuf)| len1    | ...
//!   | 0x54564319  | e.g. CORE 55053847 | u32     | len0 bytes        | u32     |
//!   +-------------+--------------------+---------+-------------------+---------+----
//!   an entry may be followed by a raw blob whose size its message gives:
//!   pipes-data / fifo-data (pipe_data_entry.bytes), sk-queues (sk_packet_entry.length),
//!   tcp-stream (inq_len + outq_len), bpfmap-data (keys_bytes + values_bytes),
//!   ghost-file (whole rest of file, or one chunk after each ghost_chunk_entry), ipcns-*.
//!
//! service file (stats-dump, irmap-cache): IMG_SERVICE 0x55105940 instead of IMG_COMMON
//!
//! inventory.img: no common magic
//!   +--------------------+---------+-----------------+
//!   | INVENTORY 58313116 | len     | inventory_entry |
//!   +--------------------+---------+-----------------+
//!
//! raw image (pages-N.img, ifaddr-N.img, tmpfs-dev-N.tar.gz.img): no header, no framing
//!   +--------------------------------------------------+
//!   | bytes (pages: nr_pages * 4096 per PE_PRESENT entry)|
//!   +--------------------------------------------------+
//! ```
//!
//! The file ends after a whole entry (clean EOF). A length field above [`MAX_ENTRY_LEN`] or
//! above the bytes left in the file is rejected before anything is allocated; a short file is
//! [`ImageError::Truncated`]. No input makes the reader panic.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::ImageError;
use crate::kind::ImageKind;

/// The largest entry (protobuf message) cryo writes or reads: 64 MiB. CRIU's entries are far
/// smaller; page contents never go through entries.
pub const MAX_ENTRY_LEN: u32 = 64 << 20;

/// The mode of every image file cryo creates.
pub const IMAGE_FILE_MODE: u32 = 0o600;

/// `O_NOFOLLOW` (the crate may not use libc). Values from the kernel's uapi `fcntl.h`:
/// arm, arm64 and powerpc define 0o100000; asm-generic (x86, x86_64, riscv, s390,
/// loongarch) and mips use 0o400000.
#[cfg(any(
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "powerpc",
    target_arch = "powerpc64"
))]
const O_NOFOLLOW: i32 = 0o100000;
#[cfg(not(any(
    target_arch = "arm",
    target_arch = "aarch64",
    target_arch = "powerpc",
    target_arch = "powerpc64"
)))]
const O_NOFOLLOW: i32 = 0o400000;

fn io_err(path: &Path, source: std::io::Error) -> ImageError {
    ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes one image: the header on creation, then entries and raw blobs.
#[derive(Debug)]
pub struct ImageWriter<W: Write> {
    w: W,
    kind: ImageKind,
    path: PathBuf,
    offset: u64,
}

impl<W: Write> ImageWriter<W> {
    /// Starts an image of `kind` on `w` and writes its header (none for raw images). Errors
    /// name the image by its kind; use [`ImageWriter::with_path`] to name the file.
    pub fn new(w: W, kind: ImageKind) -> Result<Self, ImageError> {
        Self::with_path(w, kind, format!("<{} image>", kind.name()))
    }

    /// Like [`ImageWriter::new`], naming the file `path` in errors.
    pub fn with_path(w: W, kind: ImageKind, path: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let mut this = ImageWriter {
            w,
            kind,
            path: path.into(),
            offset: 0,
        };
        if !kind.is_raw() {
            if let Some(head) = kind.head_magic() {
                this.put(&head.to_ne_bytes())?;
            }
            this.put(&kind.magic().to_ne_bytes())?;
        }
        Ok(this)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), ImageError> {
        self.w.write_all(bytes).map_err(|e| io_err(&self.path, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes one entry: its encoded length as a `u32`, then the protobuf encoding. Fails with
    /// [`ImageError::EntryTooLarge`] above [`MAX_ENTRY_LEN`] (nothing is written then).
    pub fn write_entry(&mut self, msg: &impl prost::Message) -> Result<(), ImageError> {
        let len = msg.encoded_len();
        if len > MAX_ENTRY_LEN as usize {
            return Err(ImageError::EntryTooLarge {
                path: self.path.clone(),
                offset: self.offset,
                len: len as u64,
            });
        }
        let body = msg.encode_to_vec();
        self.put(&(body.len() as u32).to_ne_bytes())?;
        self.put(&body)
    }

    /// Writes bytes with no framing: the blob after an entry (pipe data, ghost file contents,
    /// socket queues) or the contents of a raw image.
    pub fn write_raw(&mut self, data: &[u8]) -> Result<(), ImageError> {
        self.put(data)
    }

    /// Bytes written so far, header included.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The kind of image being written.
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// The file name used in errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes and gives back the underlying writer.
    pub fn finish(mut self) -> Result<W, ImageError> {
        self.w.flush().map_err(|e| io_err(&self.path, e))?;
        Ok(self.w)
    }
}

impl ImageWriter<BufWriter<File>> {
    /// Flushes, `fsync`s the file and gives it back.
    pub fn finish_sync(self) -> Result<File, ImageError> {
        let path = self.path.clone();
        let buffered = self.finish()?;
        let file = buffered
            .into_inner()
            .map_err(|e| io_err(&path, e.into_error()))?;
        file.sync_all().map_err(|e| io_err(&path, e))?;
        Ok(file)
    }
}

/// Reads one image: checks the header on creation, then gives entries and raw blobs.
#[derive(Debug)]
pub struct ImageReader<R: Read> {
    r: R,
    kind: ImageKind,
    path: PathBuf,
    offset: u64,
    len: Option<u64>,
}

impl<R: Read> ImageReader<R> {
    /// Starts reading an image of `kind` from `r`, checking its header (none for raw images).
    /// `name` is the file name used in errors.
    pub fn new(r: R, kind: ImageKind, name: impl Into<PathBuf>) -> Result<Self, ImageError> {
        Self::open(r, kind, name.into(), None)
    }

    /// Like [`ImageReader::new`] for a source of known total length (a file's size): length
    /// fields are then also checked against the bytes left.
    pub fn with_len(
        r: R,
        kind: ImageKind,
        name: impl Into<PathBuf>,
        len: u64,
    ) -> Result<Self, ImageError> {
        Self::open(r, kind, name.into(), Some(len))
    }

    fn open(r: R, kind: ImageKind, path: PathBuf, len: Option<u64>) -> Result<Self, ImageError> {
        let mut this = ImageReader {
            r,
            kind,
            path,
            offset: 0,
            len,
        };
        if !kind.is_raw() {
            if let Some(head) = kind.head_magic() {
                this.expect_magic(head)?;
            }
            this.expect_magic(kind.magic())?;
        }
        Ok(this)
    }

    fn expect_magic(&mut self, expected: u32) -> Result<(), ImageError> {
        let offset = self.offset;
        let mut word = [0u8; 4];
        let got = self.fill(&mut word)?;
        if got < word.len() {
            return Err(self.truncated("header", offset, 4, got));
        }
        let found = u32::from_ne_bytes(word);
        if found != expected {
            return Err(ImageError::BadMagic {
                path: self.path.clone(),
                offset,
                expected,
                found,
            });
        }
        Ok(())
    }

    fn truncated(&self, what: &'static str, offset: u64, wanted: u64, got: usize) -> ImageError {
        ImageError::Truncated {
            path: self.path.clone(),
            what,
            offset,
            wanted,
            got: got as u64,
        }
    }

    /// Reads until `buf` is full or EOF; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, ImageError> {
        let mut done = 0;
        while done < buf.len() {
            match self.r.read(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => {
                    done += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err(&self.path, e)),
            }
        }
        Ok(done)
    }

    /// Reads exactly `len` bytes, growing the buffer as data arrives (a lying length field
    /// cannot make it allocate more than the data actually there, plus one chunk).
    fn take_exact(
        &mut self,
        what: &'static str,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, ImageError> {
        const CHUNK: usize = 64 << 10;
        let mut out = Vec::new();
        while (out.len() as u64) < len {
            let want = (len - out.len() as u64).min(CHUNK as u64) as usize;
            let at = out.len();
            out.resize(at + want, 0);
            let got = self.fill(&mut out[at..])?;
            if got < want {
                out.truncate(at + got);
                return Err(self.truncated(what, start, len, out.len()));
            }
        }
        Ok(out)
    }

    /// Bytes left before the end of a source of known length.
    pub fn remaining(&self) -> Option<u64> {
        self.len.map(|l| l.saturating_sub(self.offset))
    }

    /// Reads the next entry, `None` at a clean end of file (right after a whole entry).
    ///
    /// Errors: [`ImageError::Truncated`] when the file ends inside the length field or the
    /// message, [`ImageError::EntryTooLarge`] for a length above [`MAX_ENTRY_LEN`],
    /// [`ImageError::Decode`] when the bytes are not an `M`. Offsets are the entry's start.
    pub fn read_entry<M: prost::Message + Default>(&mut self) -> Result<Option<M>, ImageError> {
        let start = self.offset;
        let mut word = [0u8; 4];
        let got = self.fill(&mut word)?;
        if got == 0 {
            return Ok(None);
        }
        if got < word.len() {
            return Err(self.truncated("entry", start, 4, got));
        }
        let len = u32::from_ne_bytes(word);
        if len > MAX_ENTRY_LEN {
            return Err(ImageError::EntryTooLarge {
                path: self.path.clone(),
                offset: start,
                len: u64::from(len),
            });
        }
        if let Some(left) = self.remaining() {
            if u64::from(len) > left {
                return Err(self.truncated("entry", start, u64::from(len), left as usize));
            }
        }
        let buf = self.take_exact("entry", start, u64::from(len))?;
        M::decode(buf.as_slice())
            .map(Some)
            .map_err(|source| ImageError::Decode {
                path: self.path.clone(),
                offset: start,
                source,
            })
    }

    /// Reads `len` bytes with no framing (the blob after an entry, or a raw image's contents).
    pub fn read_raw(&mut self, len: u64) -> Result<Vec<u8>, ImageError> {
        let start = self.offset;
        if let Some(left) = self.remaining() {
            if len > left {
                return Err(ImageError::Truncated {
                    path: self.path.clone(),
                    what: "raw data",
                    offset: start,
                    wanted: len,
                    got: left,
                });
            }
        }
        self.take_exact("raw data", start, len)
    }

    /// Fills `buf` with unframed bytes (e.g. pages into a caller's buffer).
    pub fn read_raw_into(&mut self, buf: &mut [u8]) -> Result<(), ImageError> {
        let start = self.offset;
        let got = self.fill(buf)?;
        if got < buf.len() {
            return Err(self.truncated("raw data", start, buf.len() as u64, got));
        }
        Ok(())
    }

    /// Reads every byte left (a ghost file without chunks keeps its contents there).
    pub fn read_raw_to_end(&mut self) -> Result<Vec<u8>, ImageError> {
        let mut out = Vec::new();
        loop {
            let at = out.len();
            out.resize(at + (64 << 10), 0);
            let got = self.fill(&mut out[at..])?;
            out.truncate(at + got);
            if got == 0 {
                return Ok(out);
            }
        }
    }

    /// Bytes consumed so far, header included.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The kind of image being read.
    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// The file name used in errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives back the underlying reader, positioned after what was read.
    pub fn into_inner(self) -> R {
        self.r
    }
}

/// The path of the image of `kind` and `id` in `dir` (see [`ImageKind::file_name`]).
pub fn image_path(dir: &Path, kind: ImageKind, id: Option<u64>) -> Result<PathBuf, ImageError> {
    Ok(dir.join(kind.file_name(id)?))
}

/// Creates the image of `kind` and `id` in `dir` and writes its header.
///
/// The file is created with `O_CREAT | O_EXCL` and mode 0600 (set again with `fchmod`, so the
/// umask cannot change it). An existing file of that name is unlinked first and replaced by a
/// new inode: a symlink or hard link planted at the name is never written through. `dir`
/// itself is resolved normally; the caller opens a directory it trusts.
pub fn create_image(
    dir: &Path,
    kind: ImageKind,
    id: Option<u64>,
) -> Result<ImageWriter<BufWriter<File>>, ImageError> {
    let path = image_path(dir, kind, id)?;
    let open = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(IMAGE_FILE_MODE)
            .custom_flags(O_NOFOLLOW)
            .open(&path)
    };
    let file = match open() {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            open().map_err(|e| io_err(&path, e))?
        }
        Err(e) => return Err(io_err(&path, e)),
    };
    file.set_permissions(std::fs::Permissions::from_mode(IMAGE_FILE_MODE))
        .map_err(|e| io_err(&path, e))?;
    ImageWriter::with_path(BufWriter::new(file), kind, path)
}

/// Opens the image of `kind` and `id` in `dir` and checks its header.
///
/// A missing file is [`ImageError::Missing`]. A symlink at the name is refused (`O_NOFOLLOW`)
/// and so is anything but a regular file. Length fields are checked against the file's size.
pub fn open_image(
    dir: &Path,
    kind: ImageKind,
    id: Option<u64>,
) -> Result<ImageReader<BufReader<File>>, ImageError> {
    let path = image_path(dir, kind, id)?;
    let not_found = |e: std::io::Error| {
        if e.kind() == ErrorKind::NotFound {
            ImageError::Missing { path: path.clone() }
        } else {
            io_err(&path, e)
        }
    };
    // Checked before open so a FIFO planted at the name cannot block the open.
    let meta = std::fs::symlink_metadata(&path).map_err(not_found)?;
    if !meta.file_type().is_file() {
        return Err(io_err(
            &path,
            std::io::Error::new(ErrorKind::InvalidInput, "not a regular file"),
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW)
        .open(&path)
        .map_err(not_found)?;
    let len = file.metadata().map_err(|e| io_err(&path, e))?.len();
    ImageReader::with_len(BufReader::new(file), kind, path, len)
}

/// Reads every entry of an image. A missing image of an optional kind
/// ([`ImageKind::is_optional`]) reads as empty, as in CRIU; of a required kind it is
/// [`ImageError::Missing`].
pub fn read_all_entries<M: prost::Message + Default>(
    dir: &Path,
    kind: ImageKind,
    id: Option<u64>,
) -> Result<Vec<M>, ImageError> {
    let mut reader = match open_image(dir, kind, id) {
        Ok(r) => r,
        Err(ImageError::Missing { .. }) if kind.is_optional() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    while let Some(m) = reader.read_entry()? {
        out.push(m);
    }
    Ok(out)
}

/// Reads the one entry of a one-entry image (inventory, core, mm, fs, ...). A missing file is
/// [`ImageError::Missing`]; an image with no entry is [`ImageError::Truncated`]. Anything after
/// the first entry is not read.
pub fn read_single<M: prost::Message + Default>(
    dir: &Path,
    kind: ImageKind,
    id: Option<u64>,
) -> Result<M, ImageError> {
    let mut reader = open_image(dir, kind, id)?;
    let offset = reader.offset();
    match reader.read_entry()? {
        Some(m) => Ok(m),
        None => Err(reader.truncated("entry", offset, 4, 0)),
    }
}

/// Creates the image of `kind` and `id` in `dir` (see [`create_image`]), writes `entries` and
/// `fsync`s it.
pub fn write_all_entries<'a, M: prost::Message + 'a>(
    dir: &Path,
    kind: ImageKind,
    id: Option<u64>,
    entries: impl IntoIterator<Item = &'a M>,
) -> Result<(), ImageError> {
    let mut writer = create_image(dir, kind, id)?;
    for m in entries {
        writer.write_entry(m)?;
    }
    writer.finish_sync()?;
    Ok(())
}

/// Writes a one-entry image (see [`write_all_entries`]).
pub fn write_single<M: prost::Message>(
    dir: &Path,
    kind: ImageKind,
    id: Option<u64>,
    msg: &M,
) -> Result<(), ImageError> {
    write_all_entries(dir, kind, id, std::iter::once(msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::magic::*;
    use crate::pb;
    use std::io::Cursor;

    fn tmpdir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cryo-image-frame-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn fs_entry(umask: u32) -> pb::FsEntry {
        pb::FsEntry {
            cwd_id: 3,
            root_id: 4,
            umask: Some(umask),
        }
    }

    fn words(bytes: &[u8], n: usize) -> Vec<u32> {
        (0..n)
            .map(|i| u32::from_ne_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap()))
            .collect()
    }

    #[test]
    fn headers_per_kind() {
        let w = ImageWriter::new(Vec::new(), ImageKind::Core).unwrap();
        assert_eq!(w.offset(), 8);
        let bytes = w.finish().unwrap();
        assert_eq!(words(&bytes, 2), vec![IMG_COMMON_MAGIC, CORE_MAGIC]);

        let bytes = ImageWriter::new(Vec::new(), ImageKind::Inventory)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(words(&bytes, 1), vec![INVENTORY_MAGIC]);
        assert_eq!(bytes.len(), 4);

        let bytes = ImageWriter::new(Vec::new(), ImageKind::StatsDump)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(words(&bytes, 2), vec![IMG_SERVICE_MAGIC, STATS_MAGIC]);

        let bytes = ImageWriter::new(Vec::new(), ImageKind::Pages)
            .unwrap()
            .finish()
            .unwrap();
        assert!(bytes.is_empty());
    }

    #[test]
    fn entries_and_raw_round_trip() {
        for &kind in ImageKind::ALL {
            let mut w = ImageWriter::new(Vec::new(), kind).unwrap();
            let header = w.offset();
            w.write_entry(&fs_entry(0o22)).unwrap();
            w.write_raw(b"blob").unwrap();
            w.write_entry(&pb::FsEntry::default()).unwrap();
            w.write_entry(&fs_entry(0o77)).unwrap();
            let total = w.offset();
            let bytes = w.finish().unwrap();
            assert_eq!(bytes.len() as u64, total);

            let mut r = ImageReader::with_len(Cursor::new(&bytes), kind, "x.img", total).unwrap();
            assert_eq!(r.offset(), header);
            assert_eq!(r.read_entry::<pb::FsEntry>().unwrap(), Some(fs_entry(0o22)));
            assert_eq!(r.read_raw(4).unwrap(), b"blob");
            // A message with only required zero fields still encodes them (proto2).
            assert_eq!(
                r.read_entry::<pb::FsEntry>().unwrap(),
                Some(pb::FsEntry::default())
            );
            assert_eq!(r.read_entry::<pb::FsEntry>().unwrap(), Some(fs_entry(0o77)));
            assert_eq!(r.read_entry::<pb::FsEntry>().unwrap(), None);
            assert_eq!(r.read_entry::<pb::FsEntry>().unwrap(), None);
            assert_eq!(r.remaining(), Some(0));
        }
    }

    #[test]
    fn raw_helpers() {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Pages).unwrap();
        w.write_raw(&[7u8; 5000]).unwrap();
        let bytes = w.finish().unwrap();
        let mut r = ImageReader::new(Cursor::new(&bytes), ImageKind::Pages, "pages-1.img").unwrap();
        let mut buf = [0u8; 100];
        r.read_raw_into(&mut buf).unwrap();
        assert_eq!(buf, [7u8; 100]);
        assert_eq!(r.read_raw_to_end().unwrap().len(), 4900);
        let e = r.read_raw_into(&mut buf).unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::Truncated {
                    offset: 5000,
                    got: 0,
                    ..
                }
            ),
            "{e}"
        );
        let e = r.read_raw(10).unwrap_err();
        assert!(
            matches!(
                e,
                ImageError::Truncated {
                    wanted: 10,
                    got: 0,
                    ..
                }
            ),
            "{e}"
        );
    }

    fn core_image() -> Vec<u8> {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Fs).unwrap();
        w.write_entry(&fs_entry(0o22)).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn bad_magic() {
        let bytes = core_image();
        let e = ImageReader::new(Cursor::new(&bytes), ImageKind::Core, "core-1.img").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "bad magic in core-1.img at offset 4: expected {CORE_MAGIC:#010x}, found {FS_MAGIC:#010x}"
            )
        );
        let e = ImageReader::new(Cursor::new(&bytes), ImageKind::Inventory, "inventory.img")
            .unwrap_err();
        assert!(matches!(e, ImageError::BadMagic { offset: 0, .. }));
        let e = ImageReader::new(Cursor::new(&bytes), ImageKind::StatsDump, "s.img").unwrap_err();
        assert!(matches!(
            e,
            ImageError::BadMagic {
                offset: 0,
                expected: IMG_SERVICE_MAGIC,
                ..
            }
        ));
    }

    #[test]
    fn truncation_at_every_length() {
        let bytes = core_image();
        for cut in 0..bytes.len() {
            let part = &bytes[..cut];
            let res = ImageReader::new(Cursor::new(part), ImageKind::Fs, "fs-1.img")
                .and_then(|mut r| r.read_entry::<pb::FsEntry>());
            match (cut, res) {
                (8, Ok(None)) => {}
                (0..=7, Err(ImageError::Truncated { what: "header", .. })) => {}
                (
                    9..=11,
                    Err(ImageError::Truncated {
                        what: "entry",
                        offset: 8,
                        wanted: 4,
                        ..
                    }),
                ) => {}
                (
                    _,
                    Err(ImageError::Truncated {
                        what: "entry",
                        offset: 8,
                        got,
                        ..
                    }),
                ) => {
                    assert_eq!(got as usize, cut - 12)
                }
                (_, other) => panic!("cut {cut}: {other:?}"),
            }
            // With the length known the reader refuses before reading the payload.
            let res =
                ImageReader::with_len(Cursor::new(part), ImageKind::Fs, "fs-1.img", cut as u64)
                    .and_then(|mut r| r.read_entry::<pb::FsEntry>());
            assert!(cut == 8 || res.is_err(), "cut {cut}");
        }
        let mut bytes = core_image();
        bytes.truncate(bytes.len() - 3);
        let e = ImageReader::new(Cursor::new(&bytes), ImageKind::Fs, "fs-42.img")
            .and_then(|mut r| r.read_entry::<pb::FsEntry>())
            .unwrap_err();
        let len = bytes.len() + 3 - 12;
        assert_eq!(
            e.to_string(),
            format!(
                "truncated entry in fs-42.img at offset 8: wanted {len} bytes, got {}",
                len - 3
            )
        );
    }

    #[test]
    fn oversized_and_garbage() {
        let mut bytes = ImageWriter::new(Vec::new(), ImageKind::Fs)
            .unwrap()
            .finish()
            .unwrap();
        bytes.extend_from_slice(&u32::MAX.to_ne_bytes());
        let e = ImageReader::new(Cursor::new(&bytes), ImageKind::Fs, "fs-1.img")
            .and_then(|mut r| r.read_entry::<pb::FsEntry>())
            .unwrap_err();
        assert!(matches!(
            e,
            ImageError::EntryTooLarge {
                offset: 8,
                len: 0xffff_ffff,
                ..
            }
        ));

        // Under the maximum but more than the file holds.
        let mut bytes = ImageWriter::new(Vec::new(), ImageKind::Fs)
            .unwrap()
            .finish()
            .unwrap();
        bytes.extend_from_slice(&(MAX_ENTRY_LEN).to_ne_bytes());
        let len = bytes.len() as u64;
        let e = ImageReader::with_len(Cursor::new(&bytes), ImageKind::Fs, "fs-1.img", len)
            .and_then(|mut r| r.read_entry::<pb::FsEntry>())
            .unwrap_err();
        assert!(matches!(e, ImageError::Truncated { got: 0, .. }), "{e}");

        // Garbage payload: a wrong wire type for field 1.
        let mut bytes = ImageWriter::new(Vec::new(), ImageKind::Fs)
            .unwrap()
            .finish()
            .unwrap();
        bytes.extend_from_slice(&3u32.to_ne_bytes());
        bytes.extend_from_slice(&[0x0f, 0xff, 0xff]);
        let e = ImageReader::new(Cursor::new(&bytes), ImageKind::Fs, "fs-1.img")
            .and_then(|mut r| r.read_entry::<pb::FsEntry>())
            .unwrap_err();
        assert!(matches!(e, ImageError::Decode { offset: 8, .. }), "{e}");

        // Pseudo-random garbage never panics.
        let mut seed = 0x1234_5678_u64;
        for n in 0..2000 {
            let mut junk = Vec::new();
            if n % 2 == 0 {
                junk.extend_from_slice(&IMG_COMMON_MAGIC.to_ne_bytes());
                junk.extend_from_slice(&CORE_MAGIC.to_ne_bytes());
            }
            for _ in 0..(n % 64) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                junk.push((seed >> 33) as u8);
            }
            if let Ok(mut r) = ImageReader::new(Cursor::new(&junk), ImageKind::Core, "core-1.img") {
                while let Ok(Some(_)) = r.read_entry::<pb::CoreEntry>() {}
            }
        }
    }

    #[test]
    fn files_in_a_directory() {
        let dir = tmpdir("files");
        let err = read_single::<pb::FsEntry>(&dir, ImageKind::Fs, Some(1)).unwrap_err();
        assert!(matches!(err, ImageError::Missing { .. }));
        assert!(
            read_all_entries::<pb::FsEntry>(&dir, ImageKind::Fdinfo, Some(1))
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            read_all_entries::<pb::PstreeEntry>(&dir, ImageKind::Pstree, None),
            Err(ImageError::Missing { .. })
        ));

        write_single(&dir, ImageKind::Fs, Some(1), &fs_entry(0o22)).unwrap();
        let path = dir.join("fs-1.img");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read_single::<pb::FsEntry>(&dir, ImageKind::Fs, Some(1)).unwrap(),
            fs_entry(0o22)
        );

        // Replacing keeps 0600 even when the old file had another mode.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let entries = [fs_entry(1), fs_entry(2)];
        write_all_entries(&dir, ImageKind::Fs, Some(1), &entries).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            read_all_entries::<pb::FsEntry>(&dir, ImageKind::Fs, Some(1)).unwrap(),
            entries.to_vec()
        );

        // An empty one-entry image.
        create_image(&dir, ImageKind::Mm, Some(1))
            .unwrap()
            .finish_sync()
            .unwrap();
        let e = read_single::<pb::MmEntry>(&dir, ImageKind::Mm, Some(1)).unwrap_err();
        assert!(matches!(e, ImageError::Truncated { offset: 8, .. }), "{e}");

        // A symlink at the name is neither followed on open nor written through on create.
        let target = dir.join("target");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("core-5.img")).unwrap();
        assert!(matches!(
            open_image(&dir, ImageKind::Core, Some(5)),
            Err(ImageError::Io { .. })
        ));
        write_single(&dir, ImageKind::Core, Some(5), &pb::CoreEntry::default()).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(dir.join("core-5.img"))
            .unwrap()
            .file_type()
            .is_file());
        assert!(matches!(
            create_image(&dir, ImageKind::Core, None),
            Err(ImageError::BadId {
                kind: "CORE",
                id: None
            })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
