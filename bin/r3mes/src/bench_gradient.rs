//! `r3mes bench gradient`: the gradient formats' performance figures, in one run
//! on one synthetic LoRA gradient.
//!
//! - `flatten` (decode + canonical flatten) of protobuf and safetensors, MB/s of file;
//! - pickle+gzip decode + flatten + `json.dumps`, ours against the seed's Python
//!   path (`pickle.loads(gzip.decompress(...))`, flatten, `json.dumps`, in a
//!   `python3` that has numpy), side by side, both printing the JSON to /dev/null;
//! - an element lookup through the header index: bytes read.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use r3mes_tensor::{DType, Format, Gradient, Limits, Metadata, Order, Tensor, flatten, pyjson};

#[derive(Args)]
pub struct GradientBench {
    /// Size of the f32 gradient in MiB.
    #[arg(long, default_value_t = 64)]
    size_mib: u64,
    /// Runs of each step; the fastest counts.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Python interpreter with numpy, for the seed's path (skipped when it has none).
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Scratch directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// A LoRA-shaped f32 gradient of about `bytes` bytes: rank-16 adapters on 1024-wide layers.
fn synthetic(bytes: u64) -> Result<Gradient> {
    let (rank, dim) = (16u64, 1024u64);
    let per_layer = (rank * dim * 2 + 1) * 4;
    let layers = (bytes / per_layer).max(1);
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut values = |n: u64| -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 1e-3).to_le_bytes()
            })
            .collect()
    };
    let mut tensors = Vec::new();
    for layer in 0..layers {
        let id = format!("blocks.{layer}.attn.q_proj");
        tensors.push(Tensor::new(
            format!("{id}.grad_a"),
            DType::F32,
            vec![rank, dim],
            values(rank * dim),
        )?);
        tensors.push(Tensor::new(
            format!("{id}.grad_b"),
            DType::F32,
            vec![dim, rank],
            values(rank * dim),
        )?);
        tensors.push(Tensor::new(
            format!("{id}.grad_alpha"),
            DType::F32,
            vec![],
            values(1),
        )?);
    }
    Ok(Gradient::new(Format::Protobuf, Metadata::new(), tensors)?)
}

fn best(runs: u32, mut step: impl FnMut() -> Result<()>) -> Result<f64> {
    crate::bench::best_time(runs, || {
        let start = Instant::now();
        step()?;
        Ok(start.elapsed().as_secs_f64())
    })
}

pub fn run(args: GradientBench) -> Result<()> {
    let scratch = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("r3mes-gradient-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let result = measure(&args, &scratch);
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    result
}

fn measure(args: &GradientBench, scratch: &Path) -> Result<()> {
    let gradient = synthetic(args.size_mib << 20)?;
    let limits = Limits::default();
    println!(
        "gradient: {} tensors, {} elements, {:.1} MiB of f32",
        gradient.tensors.len(),
        gradient.elements(),
        gradient.tensor_bytes() as f64 / (1 << 20) as f64
    );
    println!("{:<58} {:>9} {:>10}", "step", "seconds", "MB/s");
    let mut expected = None;
    for format in [Format::Protobuf, Format::Safetensors] {
        let bytes = r3mes_tensor::encode(&gradient, format)?;
        let mut flat = Vec::new();
        let secs = best(args.runs, || {
            let decoded = r3mes_tensor::decode(&bytes, None, &limits)?;
            flat = flatten(&decoded, Order::Canonical);
            Ok(())
        })?;
        let name = format!("{} decode + flatten ({} bytes)", format.name(), bytes.len());
        println!(
            "{name:<58} {secs:>9.3} {:>10.0}",
            bytes.len() as f64 / secs / 1e6
        );
        match &expected {
            None => expected = Some(flat),
            Some(e) => anyhow::ensure!(e == &flat, "protobuf and safetensors flatten differently"),
        }
    }
    indexed_lookup(&gradient, &limits, expected.as_deref().unwrap_or_default())?;
    pickle_side_by_side(args, scratch, &gradient, &limits)
}

/// Reads 3 elements of the protobuf file through `GradientIndex`, as a
/// validator would with range reads: header prefix first, then only the
/// elements' bytes. Counts every byte taken from the file.
fn indexed_lookup(gradient: &Gradient, limits: &Limits, flat: &[f64]) -> Result<()> {
    use r3mes_tensor::index::IndexOrNeedMore;
    let file = r3mes_tensor::encode(gradient, Format::Protobuf)?;
    let len = file.len() as u64;
    let mut read = 0u64;
    let mut prefix = 4096u64.min(len);
    let index = loop {
        let bytes = &file[..prefix as usize];
        match r3mes_tensor::GradientIndex::from_prefix(bytes, len, limits)? {
            IndexOrNeedMore::Index(index) => {
                read += prefix;
                break index;
            }
            IndexOrNeedMore::NeedMore(n) => prefix = n,
        }
    };
    let last = index.elements() - 1;
    let wanted = [5, last / 2, last];
    let values = index.read_values(&wanted, Order::Canonical, |range| {
        read += range.end - range.start;
        Ok(file[range.start as usize..range.end as usize].to_vec())
    })?;
    for (i, v) in wanted.iter().zip(&values) {
        anyhow::ensure!(
            flat[*i as usize].to_bits() == v.to_bits(),
            "index {i}: lookup disagrees with flatten"
        );
    }
    println!(
        "indexed lookup of 3 elements in a {len}-byte protobuf file: {read} bytes read (header {} + 3 x 4), {:.5}% of the file",
        index.header_len(),
        read as f64 * 100.0 / len as f64
    );
    Ok(())
}

/// Python that writes the seed's pickle+gzip of the tensors in `raw`/`names`.
const PY_WRITE: &str = r#"
import gzip, json, pickle, sys
import numpy as np
raw = open(sys.argv[1], 'rb').read()
layout = json.load(open(sys.argv[2]))
gradient_data, at = {}, 0
for name, shape in layout:
    n = 1
    for d in shape:
        n *= d
    gradient_data[name] = np.frombuffer(raw, dtype='<f4', count=n, offset=at).reshape(shape).copy()
    at += 4 * n
# The seed's IPFSClient.serialize_gradients:
serialized = pickle.dumps(gradient_data)
compressed = gzip.compress(serialized)
open(sys.argv[3], 'wb').write(compressed)
"#;

/// The seed's Go keeper helper: load, flatten in file order, json.dumps.
const PY_DECODE: &str = r#"
import gzip, json, pickle, sys, time
import numpy as np
start = time.perf_counter()
data = pickle.loads(gzip.decompress(open(sys.argv[1], 'rb').read()))
def walk(x, out):
    if isinstance(x, dict):
        for v in x.values():
            walk(v, out)
    elif isinstance(x, (list, tuple)):
        for v in x:
            walk(v, out)
    elif isinstance(x, np.ndarray):
        out.extend(x.astype(np.float64).ravel().tolist())
    else:
        out.append(float(x))
flat = []
walk(data, flat)
text = json.dumps(flat)
with open('/dev/null', 'w') as sink:
    sink.write(text)
print(time.perf_counter() - start, len(text))
"#;

/// A writer that counts what passes through to the one it wraps.
struct CountingSink<W>(usize, W);

impl<W: std::io::Write> std::io::Write for CountingSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.1.write(buf)?;
        self.0 += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.1.flush()
    }
}

fn pickle_side_by_side(
    args: &GradientBench,
    scratch: &Path,
    gradient: &Gradient,
    limits: &Limits,
) -> Result<()> {
    let has_numpy = Command::new(&args.python)
        .args(["-c", "import numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_numpy {
        println!(
            "pickle+gzip: skipped ({} has no numpy; pass --python with a venv that has it)",
            args.python.display()
        );
        return Ok(());
    }
    let raw = scratch.join("tensors.f32");
    let layout = scratch.join("layout.json");
    let pickled = scratch.join("gradient.pkl.gz");
    let bytes: Vec<u8> = gradient
        .tensors
        .iter()
        .flat_map(|t| t.data.iter().copied())
        .collect();
    std::fs::write(&raw, bytes)?;
    let shapes: Vec<(String, Vec<u64>)> = gradient
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    std::fs::write(&layout, serde_json::to_vec(&shapes)?)?;
    let status = Command::new(&args.python)
        .args(["-c", PY_WRITE])
        .arg(&raw)
        .arg(&layout)
        .arg(&pickled)
        .status()?;
    anyhow::ensure!(status.success(), "python could not write the pickle");
    let file = std::fs::read(&pickled)?;

    // Both sides print the JSON (the seed's helper printed it for the Go keeper), here to /dev/null.
    let mut ours_len = 0;
    let ours = best(args.runs, || {
        let decoded = r3mes_tensor::decode(&file, None, limits)?;
        let mut counter = CountingSink(
            0,
            std::fs::OpenOptions::new().write(true).open("/dev/null")?,
        );
        pyjson::dump_floats_to(&flatten(&decoded, Order::File), &mut counter)?;
        ours_len = counter.0;
        Ok(())
    })?;
    let mut inside = f64::INFINITY;
    let mut python_len = 0;
    let whole = crate::bench::best_time(args.runs, || {
        let start = Instant::now();
        let out = Command::new(&args.python)
            .args(["-c", PY_DECODE])
            .arg(&pickled)
            .output()?;
        let elapsed = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        inside = inside.min(
            parts
                .next()
                .and_then(|t| t.parse().ok())
                .unwrap_or(f64::NAN),
        );
        python_len = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        Ok(elapsed)
    })?;
    anyhow::ensure!(
        ours_len == python_len,
        "our JSON ({ours_len} bytes) and Python's ({python_len}) differ in length"
    );
    let mb = file.len() as f64 / 1e6;
    println!(
        "{:<58} {ours:>9.3} {:>10.0}",
        format!(
            "pickle+gzip decode + flatten + json.dumps, r3mes ({} bytes)",
            file.len()
        ),
        mb / ours
    );
    println!(
        "{:<58} {whole:>9.3} {:>10.0}",
        "  the seed's path: python3 subprocess, whole",
        mb / whole
    );
    println!(
        "{:<58} {inside:>9.3} {:>10.0}",
        "  the seed's path: inside python (no start-up)",
        mb / inside
    );
    println!();
    println!(
        "pickle+gzip vs the seed's path: {:.1}x (subprocess), {:.1}x (in-process); target 10x",
        whole / ours,
        inside / ours
    );
    Ok(())
}
