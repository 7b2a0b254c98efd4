//! Compiles the keeper's .proto files with protox and prost-build: no protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = ["r3mes/chain/v1/types.proto", "r3mes/chain/v1/tx.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    // Events serialize to JSON (`{"gradient_stored": {...}}`) so adapters
    // (ABCI, gRPC subscriptions) can name them and list their fields.
    prost_build::Config::new()
        .btree_map(["."])
        .type_attribute(".", "#[derive(serde::Serialize)]")
        .type_attribute(
            ".r3mes.chain.v1.Event.kind",
            "#[serde(rename_all = \"snake_case\")]",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
