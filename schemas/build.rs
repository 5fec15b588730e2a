//! Generates the `headwater.v1` wire code without protoc: protox compiles the protos to a
//! `FileDescriptorSet` (also written to `OUT_DIR` for reflection); prost-build generates the
//! messages from it and, with the `grpc` feature, tonic-prost-build the `Ingest` client and server.

use std::path::PathBuf;

const PROTO_ROOT: &str = "proto";
const PROTOS: [&str; 1] = ["headwater/v1/ingest.proto"];
/// An event's payload as `bytes::Bytes`, not `Vec<u8>`: decoded from a `Bytes` body it is a
/// slice of the body, where a `Vec` was a copy of every payload.
const PAYLOAD: &str = ".headwater.v1.Event.payload";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new([PROTO_ROOT])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(PROTOS)?;
    std::fs::write(
        out_dir.join("headwater_v1_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    generate(compiler.file_descriptor_set())?;
    Ok(())
}

/// Messages, plus the tonic client and server of every service.
#[cfg(feature = "grpc")]
fn generate(fds: prost_types::FileDescriptorSet) -> std::io::Result<()> {
    tonic_prost_build::configure()
        .bytes(PAYLOAD)
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
}

/// Messages only.
#[cfg(not(feature = "grpc"))]
fn generate(fds: prost_types::FileDescriptorSet) -> std::io::Result<()> {
    prost_build::Config::new().bytes([PAYLOAD]).compile_fds(fds)
}
