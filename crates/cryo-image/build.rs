//! Compiles cryo's own proto2 definitions (`proto/*.proto`) with protox (pure Rust, no protoc)
//! and generates prost code for them.
//!
//! Outputs in `OUT_DIR`:
//! - `images/_.rs`: every image message (all files except `rpc.proto`), included as `pb`;
//! - `rpc/_.rs`: the RPC messages of `rpc.proto`, included as `rpc`;
//! - `cryo-images.fds`: the encoded `FileDescriptorSet` of every file (rpc.proto and
//!   google/protobuf/descriptor.proto included), for crit.

use std::path::{Path, PathBuf};

const DESCRIPTOR_PROTO: &str = "google/protobuf/descriptor.proto";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let proto_dir = manifest.join("proto");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=proto");

    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&proto_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".proto") {
            println!("cargo:rerun-if-changed={}", entry.path().display());
            names.push(name);
        }
    }
    names.sort();

    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_imports(true).include_source_info(false);
    compiler.open_files(&names)?;
    let fds = compiler.file_descriptor_set();
    std::fs::write(
        out.join("cryo-images.fds"),
        compiler.encode_file_descriptor_set(),
    )?;

    // prost cannot express the `(criu)` field-option extension; leave descriptor.proto out of
    // code generation (the extension is still in the descriptor set for crit).
    let mut images = fds.clone();
    images
        .file
        .retain(|f| f.name() != DESCRIPTOR_PROTO && f.name() != "rpc.proto");
    let mut rpc = fds;
    rpc.file.retain(|f| f.name() == "rpc.proto");

    generate(&out.join("images"), images)?;
    generate(&out.join("rpc"), rpc)?;
    Ok(())
}

fn generate(
    dir: &Path,
    fds: prost_types::FileDescriptorSet,
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    prost_build::Config::new().out_dir(dir).compile_fds(fds)?;
    Ok(())
}
