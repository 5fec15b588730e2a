//! Compiles the wire protos with prost-build and protoc from protoc-bin-vendored.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/headwater/v1/ingest.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    prost_build::Config::new()
        .protoc_executable(protoc_bin_vendored::protoc_bin_path()?)
        .file_descriptor_set_path(out_dir.join("headwater_v1_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
