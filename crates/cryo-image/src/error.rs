//! The error type of every image operation: [`ImageError`].
//!
//! Each variant names the image file and, where it applies, the byte offset in it, so a message
//! reads like `truncated entry in core-42.img at offset 8: wanted 312 bytes, got 20`.

use std::path::PathBuf;

/// Everything that can go wrong while reading or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// An I/O call on the image file failed.
    #[error("i/o error on {}", path.display())]
    Io {
        /// The image file (or the name given to the reader/writer).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A magic word in the image header is not the expected one.
    #[error(
        "bad magic in {} at offset {offset}: expected {expected:#010x}, found {found:#010x}",
        path.display()
    )]
    BadMagic {
        /// The image file.
        path: PathBuf,
        /// Byte offset of the magic word.
        offset: u64,
        /// The magic cryo expected there.
        expected: u32,
        /// The magic found in the file.
        found: u32,
    },
    /// The file ended inside a header, a length field, an entry or a raw blob.
    #[error(
        "truncated {what} in {} at offset {offset}: wanted {wanted} bytes, got {got}",
        path.display()
    )]
    Truncated {
        /// The image file.
        path: PathBuf,
        /// What was being read: `"header"`, `"entry"` or `"raw data"`.
        what: &'static str,
        /// Byte offset where the item starts (for an entry: its length field).
        offset: u64,
        /// How many bytes were needed.
        wanted: u64,
        /// How many bytes were there.
        got: u64,
    },
    /// An entry's length field is above [`MAX_ENTRY_LEN`](crate::frame::MAX_ENTRY_LEN) or above
    /// what is left in the file (reading), or the message is too large to frame (writing).
    #[error("entry too large in {} at offset {offset}: {len} bytes", path.display())]
    EntryTooLarge {
        /// The image file.
        path: PathBuf,
        /// Byte offset of the entry's length field.
        offset: u64,
        /// The length found (reading) or the encoded length (writing).
        len: u64,
    },
    /// An entry is not a valid protobuf encoding of the expected message.
    #[error("cannot decode entry in {} at offset {offset}", path.display())]
    Decode {
        /// The image file.
        path: PathBuf,
        /// Byte offset of the entry's length field.
        offset: u64,
        /// prost's reason.
        #[source]
        source: prost::DecodeError,
    },
    /// A required image file does not exist.
    #[error("missing image {}", path.display())]
    Missing {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// The id given for an image file name does not fit the kind's template (an id is missing,
    /// given to a kind without one, or out of the template's range).
    #[error("bad image id {id:?} for {kind} image")]
    BadId {
        /// CRIU's name of the kind (`"CORE"`, `"PAGEMAP"`, ...).
        kind: &'static str,
        /// The id that was given.
        id: Option<u64>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_and_offset() {
        let e = ImageError::Truncated {
            path: "core-42.img".into(),
            what: "entry",
            offset: 8,
            wanted: 312,
            got: 20,
        };
        assert_eq!(
            e.to_string(),
            "truncated entry in core-42.img at offset 8: wanted 312 bytes, got 20"
        );
        let e = ImageError::BadMagic {
            path: "mm-1.img".into(),
            offset: 4,
            expected: 0x5749_2820,
            found: 0,
        };
        assert_eq!(
            e.to_string(),
            "bad magic in mm-1.img at offset 4: expected 0x57492820, found 0x00000000"
        );
        let e = ImageError::Missing {
            path: "/d/pstree.img".into(),
        };
        assert_eq!(e.to_string(), "missing image /d/pstree.img");
        let e = ImageError::BadId {
            kind: "CORE",
            id: None,
        };
        assert_eq!(e.to_string(), "bad image id None for CORE image");
    }
}
