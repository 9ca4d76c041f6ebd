//! The CRIU image format: framing, magics, image kinds and protobuf messages.
//!
//! - [`pb`]: prost messages of every CRIU image (`proto/*.proto`, CRIU v4.2 wire format);
//!   [`rpc`]: the criu RPC protocol; [`FILE_DESCRIPTOR_SET`]: their descriptors, for crit.
//! - [`magic`] holds the magic numbers of `magic.h` and crit's names for them.
//! - [`kind`]: [`ImageKind`], one per image file CRIU writes, with file-name templates.
//! - [`frame`]: reading and writing framed images ([`ImageReader`], [`ImageWriter`]).
//! - [`pagemap`]: pagemap images.
//! - [`error`]: the error type, [`ImageError`].
//!
//! No syscalls beyond file I/O through std, no libc, no unsafe: any byte string fed to a
//! reader gives an entry or an error, never a panic.
#![forbid(unsafe_code)]

pub mod coredump;
pub mod crit;
pub mod error;
pub mod frame;
pub mod fuzzing;
pub mod kind;
pub mod magic;
pub mod pagemap;

pub use error::ImageError;
pub use frame::{
    create_image, image_path, open_image, read_all_entries, read_single, write_all_entries,
    write_single, ImageReader, ImageWriter, MAX_ENTRY_LEN,
};
pub use kind::ImageKind;

/// Generated prost messages of every CRIU image (`proto/*.proto` except `rpc.proto`):
/// `core_entry` is [`pb::CoreEntry`], `task_kobj_ids_entry` is [`pb::TaskKobjIdsEntry`].
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/images/_.rs"));
}

/// Generated prost messages of the criu RPC protocol (`proto/rpc.proto`): [`rpc::CriuReq`],
/// [`rpc::CriuResp`], [`rpc::CriuOpts`], ...
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod rpc {
    include!(concat!(env!("OUT_DIR"), "/rpc/_.rs"));
}

/// Encoded `google.protobuf.FileDescriptorSet` of every cryo proto file, rpc.proto and
/// google/protobuf/descriptor.proto included, with the `(criu)` field options (hex, dict,
/// flags, dev, odev, conv, ipadd) kept, for crit's JSON conversion.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cryo-images.fds"));

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Just enough of descriptor.proto to count files and read names.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Fds {
        #[prost(message, repeated, tag = "1")]
        file: Vec<Fdp>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Fdp {
        #[prost(string, optional, tag = "1")]
        name: Option<String>,
        #[prost(string, optional, tag = "2")]
        package: Option<String>,
    }

    #[test]
    fn descriptor_set_has_every_file() {
        let fds = Fds::decode(FILE_DESCRIPTOR_SET).unwrap();
        let names: Vec<_> = fds.file.iter().filter_map(|f| f.name.as_deref()).collect();
        for want in [
            "core.proto",
            "core-x86.proto",
            "opts.proto",
            "rpc.proto",
            "pagemap.proto",
            "google/protobuf/descriptor.proto",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
        assert_eq!(names.len(), 77);
        // CRIU's messages have no package.
        assert!(fds
            .file
            .iter()
            .filter(|f| f.name.as_deref() != Some("google/protobuf/descriptor.proto"))
            .all(|f| f.package.is_none()));
        // The (criu) options survive: "pmap.flags" is pagemap_entry.flags' option.
        let raw = FILE_DESCRIPTOR_SET;
        assert!(raw.windows(10).any(|w| w == b"pmap.flags"));
    }

    #[test]
    fn generated_names() {
        let _ = pb::CoreEntry::default();
        let _ = pb::TaskKobjIdsEntry::default();
        let _ = pb::InventoryEntry::default();
        let _ = rpc::CriuReq::default();
        assert_eq!(pb::core_entry::March::X8664 as i32, 1);
    }
}
