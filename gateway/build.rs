//! Generates the tonic server (and a test client) of `headwater.v1.Ingest`; the messages come
//! from headwater-schemas through `extern_path`. protoc is the vendored one, never the system's.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../schemas/proto";
    let proto = "../schemas/proto/headwater/v1/ingest.proto";
    println!("cargo:rerun-if-changed={proto}");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .extern_path(".headwater.v1", "::headwater_schemas::proto::v1")
        .compile_with_config(config, &[proto], &[proto_root])?;
    Ok(())
}
