//! Compiles the node's gRPC API (`proto/r3mes/node/v1/node.proto`) with
//! protox and tonic-prost-build: no protoc. The keeper's messages are not
//! generated again but refer to `r3mes_chain::proto`. The encoded file
//! descriptor set is kept for the reflection service.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let files = ["r3mes/node/v1/node.proto"];
    for file in [
        "r3mes/node/v1/node.proto",
        "r3mes/chain/v1/types.proto",
        "r3mes/chain/v1/tx.proto",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    std::fs::write(out.join("node_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .extern_path(".r3mes.chain.v1", "::r3mes_chain::proto")
        .compile_fds(descriptors)?;
    Ok(())
}
