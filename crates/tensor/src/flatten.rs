//! Canonical flattening: any gradient file to the one f64 vector that vault
//! indices refer to, identical whatever the format.
//!
//! Rule: tensors in bytewise order of their names (key paths joined with `.`,
//! list positions in decimal, as the pickle reader names them); each tensor's
//! elements in C order; a scalar is one element. `Order::File` keeps the
//! file's own order instead (dict insertion order, repeated-field order), which
//! is what the Python helper of the seed's Go keeper produced.

use crate::{Gradient, Limits, Result, Tensor};

/// Order of tensors in the flat vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Bytewise order of tensor names (the default; format-independent).
    #[default]
    Canonical,
    /// The order tensors appear in the file.
    File,
}

impl Order {
    /// Parses `canonical` or `file`.
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "canonical" => Ok(Order::Canonical),
            "file" => Ok(Order::File),
            other => Err(crate::Error::Unsupported(format!(
                "unknown order {other:?} (use canonical or file)"
            ))),
        }
    }
}

/// Tensors in the order `order` puts them.
pub fn ordered(gradient: &Gradient, order: Order) -> Vec<&Tensor> {
    let mut tensors: Vec<&Tensor> = gradient.tensors.iter().collect();
    if order == Order::Canonical {
        tensors.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    }
    tensors
}

/// The flat f64 vector of `gradient`.
///
/// Large gradients are converted on every core: each thread fills its own
/// run of whole tensors in the output.
pub fn flatten(gradient: &Gradient, order: Order) -> Vec<f64> {
    const PER_THREAD_MIN: u64 = 1 << 20;
    let tensors = ordered(gradient, order);
    let total = gradient.elements();
    let mut out = vec![0f64; usize::try_from(total).unwrap_or(0)];
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8) as u64;
    let threads = threads.min(total / PER_THREAD_MIN).max(1);
    // Cut the tensor list into runs of about total/threads elements each.
    let mut runs: Vec<(&[&Tensor], &mut [f64])> = Vec::new();
    let (mut rest_tensors, mut rest_out) = (tensors.as_slice(), out.as_mut_slice());
    for run in 0..threads {
        let goal = if run + 1 == threads {
            u64::MAX
        } else {
            total / threads
        };
        let (mut count, mut elements) = (0, 0u64);
        while count < rest_tensors.len() && elements < goal {
            elements += rest_tensors[count].elements();
            count += 1;
        }
        let (these, others) = rest_tensors.split_at(count);
        let take = usize::try_from(elements)
            .unwrap_or(usize::MAX)
            .min(rest_out.len());
        let (slots, more) = std::mem::take(&mut rest_out).split_at_mut(take);
        runs.push((these, slots));
        rest_tensors = others;
        rest_out = more;
    }
    let fill = |(tensors, slots): (&[&Tensor], &mut [f64])| {
        let mut at = 0;
        for tensor in tensors {
            let n = usize::try_from(tensor.elements()).unwrap_or(0);
            tensor.dtype.write_f64(&tensor.data, &mut slots[at..at + n]);
            at += n;
        }
    };
    if runs.len() <= 1 {
        runs.into_iter().for_each(fill);
    } else {
        std::thread::scope(|scope| {
            for run in runs {
                scope.spawn(move || fill(run));
            }
        });
    }
    out
}

/// The values at `indices` of the flat vector, without building all of it.
pub fn values_at(gradient: &Gradient, order: Order, indices: &[u64]) -> Result<Vec<f64>> {
    let tensors = ordered(gradient, order);
    let mut starts = Vec::with_capacity(tensors.len());
    let mut total = 0u64;
    for t in &tensors {
        starts.push(total);
        total += t.elements();
    }
    indices
        .iter()
        .map(|&index| {
            if index >= total {
                return Err(crate::Error::IndexOutOfRange { index, len: total });
            }
            let slot = starts.partition_point(|s| *s <= index) - 1;
            let tensor = tensors[slot];
            let size = tensor.dtype.size();
            let at = usize::try_from(index - starts[slot])
                .unwrap_or(usize::MAX)
                .saturating_mul(size);
            Ok(tensor.dtype.value_f64(&tensor.data[at..at + size]))
        })
        .collect()
}

/// Checks a gradient against the element limit.
pub fn check_elements(gradient: &Gradient, limits: &Limits) -> Result<()> {
    Limits::check("total elements", gradient.elements(), limits.max_elements)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, Metadata};

    fn sample() -> Gradient {
        let b = Tensor::from_f32("b", &[3.0, 4.0]);
        let a = Tensor::from_f32("a", &[1.0, 2.0]);
        let upper = Tensor::from_f32("B", &[9.0]);
        Gradient::new(Format::Pickle, Metadata::new(), vec![b, a, upper]).unwrap()
    }

    #[test]
    fn canonical_is_bytewise_name_order_and_file_keeps_order() {
        let g = sample();
        assert_eq!(flatten(&g, Order::Canonical), vec![9.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(flatten(&g, Order::File), vec![3.0, 4.0, 1.0, 2.0, 9.0]);
    }

    #[test]
    fn parallel_flatten_equals_serial() {
        let tensors: Vec<Tensor> = (0..40)
            .map(|i| Tensor::from_f32(format!("t{i:02}"), &vec![i as f32 + 0.5; 100_000 + i * 7]))
            .collect();
        let g = Gradient::new(Format::Protobuf, Metadata::new(), tensors).unwrap();
        for order in [Order::Canonical, Order::File] {
            let mut serial = Vec::new();
            for t in ordered(&g, order) {
                t.dtype.extend_f64(&t.data, &mut serial);
            }
            assert_eq!(flatten(&g, order), serial);
        }
    }

    #[test]
    fn values_at_matches_flatten() {
        let g = sample();
        let all = flatten(&g, Order::Canonical);
        let picked = values_at(&g, Order::Canonical, &[4, 0, 2]).unwrap();
        assert_eq!(picked, vec![all[4], all[0], all[2]]);
        assert!(values_at(&g, Order::Canonical, &[5]).is_err());
    }
}
