//! r3mes-tensor: gradient files, read and written natively (no Python helper).
//!
//! Three formats, detected automatically:
//! - **protobuf** (preferred, `proto/r3mes/gradient/v1/gradient.proto`): a small
//!   header (the `LoRAGradientUpdate` metadata and, per tensor, name, dtype,
//!   shape, byte offset and length) followed by the raw little-endian tensor
//!   bytes, so a reader knows where every element is from the first few KiB;
//! - **safetensors**, the ML world's standard, metadata in `__metadata__`;
//! - **legacy pickle** (optionally gzip-compressed) as the seed's Python miner
//!   writes it, read by a small pickle interpreter that knows only containers
//!   and numpy arrays and never executes anything; and the legacy
//!   `gradient.GradientPackage` protobuf of the Python engine.
//!
//! Every format decodes to a [`Gradient`]: named tensors plus metadata.
//! [`flatten`] turns it into the one f64 vector vault indices refer to, the
//! same for every format. Every decoder obeys [`Limits`] and returns errors,
//! never panics.

mod detect;
mod dtype;
mod error;
pub mod flatten;
mod gradient;
pub mod gzip;
pub mod index;
pub mod legacy;
mod limits;
pub mod pickle;
pub mod protobuf;
pub mod pyjson;
pub mod safetensors_io;

pub use detect::{Format, detect};
pub use dtype::DType;
pub use error::{Error, Result};
pub use flatten::{Order, flatten};
pub use gradient::{
    Gradient, LoRAAdapterGradient, LoRAGradientUpdate, Metadata, Tensor, element_count,
    metadata_keys,
};
pub use index::GradientIndex;
pub use limits::Limits;

/// Decodes a whole gradient file, detecting its format unless `format` forces one.
pub fn decode(bytes: &[u8], format: Option<Format>, limits: &Limits) -> Result<Gradient> {
    let format = match format {
        Some(f) => f,
        None => detect(bytes)?,
    };
    let gradient = match format {
        Format::Protobuf => protobuf::decode(bytes, limits)?,
        Format::Safetensors => safetensors_io::decode(bytes, limits)?,
        Format::Pickle => pickle::decode(bytes, limits)?,
        Format::PickleGzip => {
            let raw = gzip::decompress(bytes, limits)?;
            let mut gradient = pickle::decode(&raw, limits)?;
            gradient.format = Format::PickleGzip;
            gradient
        }
        Format::LegacyProtobuf => legacy::decode(bytes, limits)?,
    };
    flatten::check_elements(&gradient, limits)?;
    Ok(gradient)
}

/// Encodes a gradient as r3mes' protobuf or safetensors (the range-readable formats).
pub fn encode(gradient: &Gradient, format: Format) -> Result<Vec<u8>> {
    match format {
        Format::Protobuf => protobuf::encode(gradient),
        Format::Safetensors => safetensors_io::encode(gradient),
        other => Err(Error::Unsupported(format!(
            "r3mes writes protobuf or safetensors, not {} (legacy formats are read-only)",
            other.name()
        ))),
    }
}
