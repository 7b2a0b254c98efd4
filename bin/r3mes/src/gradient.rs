//! `r3mes gradient ...`: inspect, decode and convert gradient files.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use r3mes_tensor::{Format, Limits, Order, flatten, pyjson};
use sha2::{Digest, Sha256};

#[derive(Subcommand)]
pub enum GradientCommand {
    /// Format, tensors (name, dtype, shape), element count, size, NaN/Inf counts, sha256.
    Inspect(InspectArgs),
    /// The flat f64 values (all, or only some indices).
    Decode(DecodeArgs),
    /// Rewrite a gradient as protobuf or safetensors (legacy pickles become range-readable).
    Convert(ConvertArgs),
}

#[derive(Args)]
pub struct InputArgs {
    /// The gradient file.
    file: PathBuf,
    /// Force a format instead of detecting it: protobuf, safetensors, pickle, pickle+gzip, legacy-protobuf.
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DecodeArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Only these flat indices, comma-separated (such as 5,100,999).
    #[arg(long, value_delimiter = ',')]
    indices: Option<Vec<u64>>,
    /// Tensor order: canonical (bytewise by name) or file (as stored; what the seed's helper printed).
    #[arg(long, default_value = "canonical")]
    order: String,
    /// Print a JSON array (exactly as Python's json.dumps prints it).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ConvertArgs {
    /// Input gradient file.
    input: PathBuf,
    /// Output file.
    output: PathBuf,
    /// Output format: protobuf or safetensors.
    #[arg(long)]
    to: String,
    /// Force the input format.
    #[arg(long)]
    format: Option<String>,
}

pub fn run(command: GradientCommand) -> Result<()> {
    match command {
        GradientCommand::Inspect(args) => inspect(args),
        GradientCommand::Decode(args) => decode(args),
        GradientCommand::Convert(args) => convert(args),
    }
}

fn read(input: &InputArgs) -> Result<(Vec<u8>, r3mes_tensor::Gradient)> {
    let bytes =
        std::fs::read(&input.file).with_context(|| format!("reading {}", input.file.display()))?;
    let format = input.format.as_deref().map(Format::from_name).transpose()?;
    let gradient = r3mes_tensor::decode(&bytes, format, &Limits::default())
        .with_context(|| format!("decoding {}", input.file.display()))?;
    Ok((bytes, gradient))
}

fn inspect(args: InspectArgs) -> Result<()> {
    let (bytes, gradient) = read(&args.input)?;
    let values = flatten(&gradient, Order::File);
    let nan = values.iter().filter(|v| v.is_nan()).count();
    let inf = values.iter().filter(|v| v.is_infinite()).count();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if args.json {
        let tensors: Vec<_> = gradient
            .tensors
            .iter()
            .map(|t| serde_json::json!({"name": t.name, "dtype": t.dtype.name(), "shape": t.shape, "elements": t.elements()}))
            .collect();
        let report = serde_json::json!({
            "file": args.input.file.display().to_string(),
            "format": gradient.format.name(),
            "bytes": bytes.len(),
            "sha256": sha256,
            "elements": gradient.elements(),
            "tensor_bytes": gradient.tensor_bytes(),
            "nan": nan,
            "inf": inf,
            "metadata": gradient.metadata,
            "tensors": tensors,
        });
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&report)?
        )?;
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "format:   {}", gradient.format.name())?;
    writeln!(out, "bytes:    {}", bytes.len())?;
    writeln!(out, "sha256:   {sha256}")?;
    writeln!(
        out,
        "elements: {} ({} NaN, {} Inf)",
        gradient.elements(),
        nan,
        inf
    )?;
    for (key, value) in &gradient.metadata {
        writeln!(out, "meta:     {key} = {value}")?;
    }
    writeln!(out, "tensors:  {}", gradient.tensors.len())?;
    for t in &gradient.tensors {
        writeln!(out, "  {:<40} {:<5} {:?}", t.name, t.dtype.name(), t.shape)?;
    }
    Ok(())
}

fn decode(args: DecodeArgs) -> Result<()> {
    let (_, gradient) = read(&args.input)?;
    let order = Order::from_name(&args.order)?;
    let values = match &args.indices {
        Some(indices) => r3mes_tensor::flatten::values_at(&gradient, order, indices)?,
        None => flatten(&gradient, order),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        pyjson::dump_floats_to(&values, &mut out)?;
        writeln!(out)?;
    } else {
        for v in &values {
            writeln!(out, "{}", pyjson::float_repr(*v))?;
        }
    }
    out.flush()?;
    Ok(())
}

fn convert(args: ConvertArgs) -> Result<()> {
    let input = InputArgs {
        file: args.input.clone(),
        format: args.format,
    };
    let (_, gradient) = read(&input)?;
    let to = Format::from_name(&args.to)?;
    let encoded = r3mes_tensor::encode(&gradient, to)?;
    let tmp = args.output.with_extension("tmp");
    std::fs::write(&tmp, &encoded).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!(
        "{} ({}) -> {} ({}, {} bytes)",
        args.input.display(),
        gradient.format.name(),
        args.output.display(),
        to.name(),
        encoded.len()
    );
    Ok(())
}
