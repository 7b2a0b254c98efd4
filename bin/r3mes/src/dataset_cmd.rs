//! `r3mes dataset build`: text files to a dataset of fixed 2048-token
//! chunks (`r3mes-dataset`), tokenized byte-level or with a Hugging Face
//! `tokenizer.json` (`--tokenizer`), written under an output directory as
//! `shard_{k}/chunk_{i}` plus `manifest.json`, and with `--api` added to
//! IPFS under the seed's layout `/datasets/shards/{name}/shard_{k}/chunk_{i}`
//! (MFS), whose directory CID is the dataset hash.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use r3mes_dataset::{Tokenizer, encode_chunk, shards_of, split_into_chunks_with_pad};
use r3mes_ipfs::{AddOptions, AddSource};
use r3mes_kubo::KuboClient;

#[derive(Subcommand)]
pub enum DatasetCommand {
    /// Tokenize text files (byte-level or tokenizer.json), cut 2048-token chunks, group shards, write them (and add them to IPFS with --api).
    Build {
        /// Text files, concatenated in this order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// `byte` (token = byte value), or the path of a Hugging Face
        /// tokenizer.json (UTF-8 text only, ids below 65536, no special
        /// tokens added; write `./byte` for a file named byte).
        #[arg(long, default_value = "byte")]
        tokenizer: String,
        /// Dataset name (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        name: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Chunks per shard.
        #[arg(long, default_value_t = 8)]
        chunks_per_shard: usize,
        /// Add the chunks to this IPFS API and file them in its MFS.
        #[arg(long)]
        api: Option<String>,
        /// Print the manifest as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Propose a built dataset (its manifest.json, made with --api) for governance; the signer is its provider.
    Propose {
        /// The directory `dataset build` wrote.
        dir: PathBuf,
        /// Keyring key of the provider.
        #[arg(long)]
        from: String,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
        /// License.
        #[arg(long, default_value = "")]
        license: String,
        /// Tags.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// The node's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:9090")]
        node: String,
        /// Home whose keyring holds the key (default: $R3MES_HOME or ~/.r3mes).
        #[arg(long)]
        home: Option<PathBuf>,
    },
}

pub fn run(command: DatasetCommand) -> Result<()> {
    match command {
        DatasetCommand::Propose {
            dir,
            from,
            description,
            license,
            tags,
            node,
            home,
        } => {
            let path = dir.join("manifest.json");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let manifest: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            let field = |key: &str| {
                manifest[key]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| format!("{} has no {key}", path.display()))
            };
            let name = field("name")?;
            let dataset = field("dataset_hash")
                .context("the dataset was built without --api: add it to IPFS first")?;
            let size = manifest["size"]
                .as_u64()
                .with_context(|| format!("{} has no size", path.display()))?;
            let shards = manifest["shards"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|s| s["cid"].as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                })
                .unwrap_or_default()
                .with_context(|| format!("{} lists shards without CIDs", path.display()))?;
            let out = crate::tx_cmd::sign_and_send(&node, home, &from, |key| {
                crate::tx_cmd::propose_msg(
                    key,
                    &crate::tx_cmd::Proposal {
                        dataset: &dataset,
                        shards: &shards,
                        name: &name,
                        description: &description,
                        data_type: "text",
                        size,
                        license: &license,
                        tags: &tags,
                        schema: "r3mes-chunks-v1",
                    },
                )
            })?;
            println!("{out}");
            Ok(())
        }
        DatasetCommand::Build {
            files,
            tokenizer,
            name,
            out,
            chunks_per_shard,
            api,
            json,
        } => {
            r3mes_protocol::layout::DatasetName::new(name.clone())
                .with_context(|| format!("dataset name {name:?}"))?;
            // Everything is read and tokenized before the first file is
            // written: a bad tokenizer or text leaves no output behind.
            let tokenizer = if tokenizer == "byte" {
                Tokenizer::Byte
            } else {
                Tokenizer::load(Path::new(&tokenizer))?
            };
            let mut text = Vec::new();
            for f in &files {
                let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                if let (Tokenizer::Json(_), Err(e)) = (&tokenizer, std::str::from_utf8(&bytes)) {
                    bail!(
                        "{} is not UTF-8 text (invalid byte at offset {}); a tokenizer.json \
                         reads text, --tokenizer byte reads any bytes",
                        f.display(),
                        e.valid_up_to()
                    );
                }
                text.extend(bytes);
            }
            let size = text.len() as u64;
            let tokens = tokenizer.encode(&text)?;
            let token_count = tokens.len();
            let chunks = split_into_chunks_with_pad(&tokens, tokenizer.pad_token())?;
            drop(tokens);
            let shards = shards_of(chunks, chunks_per_shard)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let store = match &api {
                Some(api) => Some(KuboClient::new(api).with_context(|| format!("IPFS API {api}"))?),
                None => None,
            };
            let mut manifest_shards = Vec::new();
            for shard in &shards {
                let dir = out.join(format!("shard_{}", shard.id));
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let mfs_dir = format!("/datasets/shards/{name}/shard_{}", shard.id);
                let mut chunk_entries = Vec::new();
                for (i, chunk) in shard.chunks.iter().enumerate() {
                    let id = shard.first_chunk + i as u64;
                    let bytes = encode_chunk(chunk);
                    let file = dir.join(format!("chunk_{id}"));
                    write_new(&file, &bytes)?;
                    let cid = match &store {
                        Some(store) => Some(runtime.block_on(add_and_file(
                            store,
                            bytes,
                            &format!("{mfs_dir}/chunk_{id}"),
                        ))?),
                        None => None,
                    };
                    chunk_entries.push(serde_json::json!({
                        "chunk_id": id,
                        "counted_tokens": chunk.counted(),
                        "cid": cid,
                    }));
                }
                let shard_cid = match &store {
                    Some(store) => Some(runtime.block_on(store.files_flush(&mfs_dir))?.to_string()),
                    None => None,
                };
                manifest_shards.push(serde_json::json!({
                    "shard_id": shard.id,
                    "cid": shard_cid,
                    "chunks": chunk_entries,
                }));
            }
            let dataset_hash = match &store {
                Some(store) => Some(
                    runtime
                        .block_on(store.files_flush(&format!("/datasets/shards/{name}")))?
                        .to_string(),
                ),
                None => None,
            };
            let manifest = serde_json::json!({
                "format": "r3mes-dataset-v1",
                "name": name,
                "tokenizer": tokenizer_entry(&tokenizer),
                "chunk_tokens": r3mes_dataset::CHUNK_TOKENS,
                "pad_token": tokenizer.pad_token(),
                "token_count": token_count,
                "chunk_file": "R3CHUNK1 (r3mes-dataset::chunk)",
                "size": size,
                "shard_count": shards.len(),
                "dataset_hash": dataset_hash,
                "shards": manifest_shards,
            });
            let path = out.join("manifest.json");
            write_new(&path, serde_json::to_string_pretty(&manifest)?.as_bytes())?;
            if json {
                println!("{manifest}");
            } else {
                println!(
                    "{} bytes -> {} tokens -> {} chunks in {} shards under {}",
                    size,
                    token_count,
                    shards.iter().map(|s| s.chunks.len()).sum::<usize>(),
                    shards.len(),
                    out.display()
                );
                if let Some(hash) = manifest["dataset_hash"].as_str() {
                    println!("dataset hash: {hash} (/datasets/shards/{name})");
                }
            }
            Ok(())
        }
    }
}

/// The manifest's `tokenizer`: `"byte"`, or what identifies a
/// tokenizer.json (its SHA-256 and vocabulary size).
fn tokenizer_entry(tokenizer: &Tokenizer) -> serde_json::Value {
    match tokenizer {
        Tokenizer::Byte => "byte".into(),
        Tokenizer::Json(t) => serde_json::json!({
            "kind": "tokenizer.json",
            "sha256": t.sha256(),
            "vocab_size": t.vocab_size(),
        }),
    }
}

/// Writes `bytes` to `path`, refusing to overwrite.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.exists() {
        bail!(
            "{} exists; build into a new --out directory",
            path.display()
        );
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Adds a chunk file and files it at `mfs_path`; returns its CID.
async fn add_and_file(store: &KuboClient, bytes: Vec<u8>, mfs_path: &str) -> Result<String> {
    let added = store
        .add(AddSource::Bytes(bytes.into()), &AddOptions::default())
        .await
        .context("adding a chunk")?;
    store
        .files_cp(&format!("/ipfs/{}", added.cid), mfs_path, true)
        .await
        .with_context(|| format!("filing {mfs_path}"))?;
    Ok(added.cid.to_string())
}
