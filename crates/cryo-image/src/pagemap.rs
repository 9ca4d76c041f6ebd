//! Pagemap images (`pagemap-N.img`, `pagemap-shmem-N.img`): which virtual pages a task (or a
//! shared-memory segment) had, and where their contents are.
//!
//! ```text
//! +---------------+---------+--------------------------+---------+-----------------+----
//! | IMG_COMMON    | PAGEMAP | len | pagemap_head       | len     | pagemap_entry 0 | ...
//! | 0x54564319    | 56084025|     | { pages_id }       |         | { vaddr, ...}   |
//! +---------------+---------+--------------------------+---------+-----------------+----
//! ```
//!
//! `pages_id` names the raw `pages-<pages_id>.img` holding the contents: the entries with
//! [`PE_PRESENT`] in file order, `nr_pages * PAGE_SIZE` bytes each, back to back. [`PE_PARENT`]
//! pages are in the parent snapshot (pre-dump), [`PE_LAZY`] ones are served lazily.
//!
//! An entry's page count was a `uint32 compat_nr_pages` (field 2, still required) and is now
//! `uint64 nr_pages` (field 5). cryo writes both ([`pagemap_entry`]), splitting a run longer
//! than `u32::MAX` pages so the two always agree; on reading, [`entry_nr_pages`] and
//! [`entry_flags`] apply CRIU's rules for old images (`init_compat_pagemap_entry`).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use crate::error::ImageError;
use crate::frame::{create_image, open_image, ImageReader, ImageWriter};
use crate::kind::ImageKind;
use crate::pb::{PagemapEntry, PagemapHead};

/// Pages are in the parent snapshot, not in this dump's pages image (`criu/include/pagemap.h`).
pub const PE_PARENT: u32 = 1 << 0;
/// Pages may be restored lazily (post-copy).
pub const PE_LAZY: u32 = 1 << 1;
/// Pages are present in this dump's `pages-N.img`.
pub const PE_PRESENT: u32 = 1 << 2;

/// The page size of the images cryo writes (x86_64).
pub const PAGE_SIZE: u64 = 4096;

/// One pagemap entry of `nr_pages` pages (at most `u32::MAX`) at `vaddr`, with both
/// `nr_pages` and `compat_nr_pages` set.
pub fn pagemap_entry(vaddr: u64, nr_pages: u32, flags: u32) -> PagemapEntry {
    PagemapEntry {
        vaddr,
        compat_nr_pages: nr_pages,
        in_parent: None,
        flags: Some(flags),
        nr_pages: Some(u64::from(nr_pages)),
    }
}

/// The page count of an entry: `nr_pages`, or `compat_nr_pages` in images without it.
pub fn entry_nr_pages(pe: &PagemapEntry) -> u64 {
    pe.nr_pages.unwrap_or(u64::from(pe.compat_nr_pages))
}

/// The flags of an entry, with CRIU's rules for old images: `in_parent` means [`PE_PARENT`],
/// and no flags at all means [`PE_PRESENT`].
pub fn entry_flags(pe: &PagemapEntry) -> u32 {
    let mut flags = pe.flags.unwrap_or(0);
    if pe.in_parent == Some(true) {
        flags |= PE_PARENT;
    } else if pe.flags.is_none() {
        flags = PE_PRESENT;
    }
    flags
}

/// The byte length an entry covers (`nr_pages * PAGE_SIZE`), `None` on overflow.
pub fn entry_len_bytes(pe: &PagemapEntry) -> Option<u64> {
    entry_nr_pages(pe).checked_mul(PAGE_SIZE)
}

/// Writes a pagemap image: the head, then entries.
#[derive(Debug)]
pub struct PagemapWriter<W: Write> {
    inner: ImageWriter<W>,
}

impl<W: Write> PagemapWriter<W> {
    /// Writes the [`PagemapHead`] naming `pages-<pages_id>.img` into a freshly started
    /// pagemap (or shmem pagemap) image.
    pub fn new(mut inner: ImageWriter<W>, pages_id: u32) -> Result<Self, ImageError> {
        inner.write_entry(&PagemapHead { pages_id })?;
        Ok(PagemapWriter { inner })
    }

    /// Writes `nr_pages` pages at `vaddr` with `flags`, as one entry or, past `u32::MAX`
    /// pages, as several consecutive ones. Zero pages writes nothing.
    pub fn add(&mut self, vaddr: u64, nr_pages: u64, flags: u32) -> Result<(), ImageError> {
        let mut vaddr = vaddr;
        let mut left = nr_pages;
        while left > 0 {
            let n = u32::try_from(left).unwrap_or(u32::MAX);
            self.inner.write_entry(&pagemap_entry(vaddr, n, flags))?;
            left -= u64::from(n);
            vaddr = vaddr.wrapping_add(u64::from(n) * PAGE_SIZE);
        }
        Ok(())
    }

    /// The image writer underneath.
    pub fn image(&mut self) -> &mut ImageWriter<W> {
        &mut self.inner
    }

    /// Flushes and gives back the underlying writer.
    pub fn finish(self) -> Result<W, ImageError> {
        self.inner.finish()
    }

    /// Gives back the image writer (to `finish_sync` a file).
    pub fn into_inner(self) -> ImageWriter<W> {
        self.inner
    }
}

/// Creates `pagemap-<id>.img` (kind [`ImageKind::Pagemap`]) or `pagemap-shmem-<id>.img`
/// ([`ImageKind::ShmemPagemap`]) in `dir` and writes its head.
pub fn create_pagemap(
    dir: &Path,
    kind: ImageKind,
    id: u64,
    pages_id: u32,
) -> Result<PagemapWriter<BufWriter<File>>, ImageError> {
    PagemapWriter::new(create_image(dir, kind, Some(id))?, pages_id)
}

/// Reads a pagemap image: the head on creation, then entries.
#[derive(Debug)]
pub struct PagemapReader<R: Read> {
    head: PagemapHead,
    inner: ImageReader<R>,
}

impl<R: Read> PagemapReader<R> {
    /// Reads the head of a pagemap image whose header `inner` has checked. An image without a
    /// head is [`ImageError::Truncated`].
    pub fn new(mut inner: ImageReader<R>) -> Result<Self, ImageError> {
        let offset = inner.offset();
        let Some(head) = inner.read_entry::<PagemapHead>()? else {
            return Err(ImageError::Truncated {
                path: inner.path().to_path_buf(),
                what: "entry",
                offset,
                wanted: 4,
                got: 0,
            });
        };
        Ok(PagemapReader { head, inner })
    }

    /// The head: which `pages-N.img` holds the contents.
    pub fn head(&self) -> &PagemapHead {
        &self.head
    }

    /// The next entry, `None` at the end.
    pub fn next_entry(&mut self) -> Result<Option<PagemapEntry>, ImageError> {
        self.inner.read_entry()
    }

    /// The image reader underneath.
    pub fn into_inner(self) -> ImageReader<R> {
        self.inner
    }
}

/// Reads the whole pagemap (or shmem pagemap) image `id` in `dir`.
pub fn read_pagemap(
    dir: &Path,
    kind: ImageKind,
    id: u64,
) -> Result<(PagemapHead, Vec<PagemapEntry>), ImageError> {
    let mut reader = PagemapReader::new(open_image(dir, kind, Some(id))?)?;
    let mut entries = Vec::new();
    while let Some(pe) = reader.next_entry()? {
        entries.push(pe);
    }
    Ok((reader.head, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn writer_fills_both_counts_and_splits() {
        let mut w =
            PagemapWriter::new(ImageWriter::new(Vec::new(), ImageKind::Pagemap).unwrap(), 9)
                .unwrap();
        w.add(0x1000, 3, PE_PRESENT).unwrap();
        w.add(0x10_0000, 0, PE_PRESENT).unwrap();
        w.add(
            0x7000_0000_0000,
            u64::from(u32::MAX) + 2,
            PE_PARENT | PE_LAZY,
        )
        .unwrap();
        let bytes = w.finish().unwrap();

        let r = ImageReader::new(Cursor::new(&bytes), ImageKind::Pagemap, "pagemap-1.img").unwrap();
        let mut r = PagemapReader::new(r).unwrap();
        assert_eq!(r.head().pages_id, 9);
        let mut got = Vec::new();
        while let Some(pe) = r.next_entry().unwrap() {
            assert_eq!(pe.nr_pages, Some(u64::from(pe.compat_nr_pages)));
            got.push((pe.vaddr, entry_nr_pages(&pe), entry_flags(&pe)));
        }
        assert_eq!(
            got,
            vec![
                (0x1000, 3, PE_PRESENT),
                (0x7000_0000_0000, u64::from(u32::MAX), PE_PARENT | PE_LAZY),
                (
                    0x7000_0000_0000 + u64::from(u32::MAX) * PAGE_SIZE,
                    2,
                    PE_PARENT | PE_LAZY
                ),
            ]
        );
    }

    #[test]
    fn old_images() {
        let old = PagemapEntry {
            vaddr: 0x1000,
            compat_nr_pages: 4,
            in_parent: None,
            flags: None,
            nr_pages: None,
        };
        assert_eq!(entry_nr_pages(&old), 4);
        assert_eq!(entry_flags(&old), PE_PRESENT);
        assert_eq!(entry_len_bytes(&old), Some(4 * PAGE_SIZE));
        let parent = PagemapEntry {
            in_parent: Some(true),
            ..old
        };
        assert_eq!(entry_flags(&parent), PE_PARENT);
        let huge = PagemapEntry {
            nr_pages: Some(u64::MAX),
            ..old
        };
        assert_eq!(entry_len_bytes(&huge), None);
    }

    #[test]
    fn headless_image_is_truncated() {
        let bytes = ImageWriter::new(Vec::new(), ImageKind::Pagemap)
            .unwrap()
            .finish()
            .unwrap();
        let r = ImageReader::new(Cursor::new(&bytes), ImageKind::Pagemap, "pagemap-1.img").unwrap();
        assert!(matches!(
            PagemapReader::new(r),
            Err(ImageError::Truncated { offset: 8, .. })
        ));
    }

    #[test]
    fn files_round_trip() {
        let dir = std::env::temp_dir().join(format!(
            "cryo-image-pagemap-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = create_pagemap(&dir, ImageKind::ShmemPagemap, 77, 3).unwrap();
        w.add(0, 1, PE_PRESENT).unwrap();
        w.into_inner().finish_sync().unwrap();
        let (head, entries) = read_pagemap(&dir, ImageKind::ShmemPagemap, 77).unwrap();
        assert_eq!(head.pages_id, 3);
        assert_eq!(entries, vec![pagemap_entry(0, 1, PE_PRESENT)]);
        assert!(dir.join("pagemap-shmem-77.img").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
