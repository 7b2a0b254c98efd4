//! `r3mes-miner`: the miner's model and chunk processor.
//!
//! What it is: a BitNet b1.58 style backbone (ternary BitLinear weights with
//! an absmean scale, 8-bit absmax activations, frozen) with LoRA adapters on
//! every attention and MLP projection, running on candle on the CPU; its
//! deterministic seeded initialisation and its safetensors files
//! ([`Backbone`], [`LoraAdapters`], [`Model`]); the import of Hugging Face
//! style BitNet checkpoints whose shapes it supports ([`hf`]); and the seed's
//! `ChunkProcessor` ([`ChunkProcessor`]), which takes a fixed 2048-token
//! chunk, runs it in local micro-batches and returns the LoRA gradient of the
//! whole chunk as the seed's `LoRAGradientUpdate`, whatever the micro-batch
//! size.
//!
//! What it is not: no networking, no IPFS, no signing, no dataset handling;
//! the gradient file format is `r3mes-tensor`'s. The node never links this
//! crate (candle stays out of its build).
//!
//! ```no_run
//! use r3mes_miner::{BackboneConfig, ChunkProcessor, LoraConfig, Model, UpdateInfo};
//! use r3mes_tensor::{Format, encode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = Model::init(&BackboneConfig::default(), &LoraConfig::default(), 42)?;
//! let chunk: Vec<u32> = b"some text ".iter().cycle().take(2048).map(|b| u32::from(*b)).collect();
//! let processor = ChunkProcessor::new(128, 4)?;
//! let result = processor.process_chunk(&model, &chunk, None)?;
//! let update = result.to_update(model.backbone().hash(), &UpdateInfo::default());
//! let file = encode(&update.to_gradient(Format::Protobuf)?, Format::Protobuf)?;
//! # let _ = file;
//! # Ok(())
//! # }
//! ```

pub mod backbone;
pub mod chunk;
pub mod config;
pub mod error;
pub mod hf;
pub mod lora;
pub mod model;
pub mod quant;
pub mod rng;
mod st;

pub use backbone::{Backbone, BitLinear};
pub use chunk::{
    ChunkGradient, ChunkProcessor, DEFAULT_SEQ_LEN, FIXED_CHUNK_SIZE, UpdateInfo, activation_bytes,
};
pub use config::{BackboneConfig, LoraConfig, Precision};
pub use error::{Error, Result};
pub use hf::{HfConfig, HfImport};
pub use lora::{LoRAAdapter, LoraAdapter, LoraAdapters};
pub use model::Model;
pub use st::{MAX_HEADER_BYTES, MAX_TENSORS};
