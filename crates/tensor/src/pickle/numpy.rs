//! The only globals the reader knows — numpy's array and dtype constructors
//! and the codec numpy's protocol-2 pickles use for bytes — and what `REDUCE`
//! and `BUILD` do with them. These are pure functions of their arguments that
//! build inert data; nothing else can be called.
//!
//! Arrays arrive in two shapes:
//! - protocols 0 to 4: `_reconstruct(ndarray, (0,), b'b')`, then `BUILD` with
//!   `(version, shape, dtype, is_fortran, rawdata)`, where the dtype is
//!   `dtype('f4', False, True)` plus `BUILD` with
//!   `(3, '<', None, None, None, -1, -1, 0)` (the byte order is in that state);
//! - protocol 5: `_frombuffer(buffer, dtype, shape, order)` with an in-band
//!   `bytearray`/`bytes` buffer.
//!
//! Arrays keep a reference to their raw bytes; [`Array::to_tensor`] makes the
//! little-endian C-order copy only when a tensor is asked for.

use std::collections::HashMap;

use super::object::{FORMAT, Heap, ObjId, Object, Value};
use crate::{DType, Error, Result, Tensor, element_count};

/// numpy allows at most 64 dimensions (`NPY_MAXDIMS` of numpy 2).
const MAX_DIMS: usize = 64;

/// The globals a pickle may name. Anything else is [`Error::ForbiddenGlobal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Callable {
    /// `numpy.core.multiarray._reconstruct` (numpy 1) or `numpy._core.multiarray._reconstruct` (numpy 2).
    Reconstruct,
    /// `numpy.ndarray`, only as `_reconstruct`'s first argument.
    NdArray,
    /// `numpy.dtype`.
    Dtype,
    /// `numpy.core.numeric._frombuffer` / `numpy._core.numeric._frombuffer` (protocol 5).
    FromBuffer,
    /// `_codecs.encode(str, 'latin1')`: how protocols 0 to 2 write `bytes`.
    CodecsEncode,
    /// `builtins.bytes()` (`__builtin__` in protocols 0 to 2): how they write `b''`.
    Bytes,
}

/// Resolves `module.name` against the allow-list, refusing everything else.
pub(super) fn resolve_global(module: &str, name: &str) -> Result<Callable> {
    match (module, name) {
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
            Ok(Callable::Reconstruct)
        }
        ("numpy", "ndarray") => Ok(Callable::NdArray),
        ("numpy", "dtype") => Ok(Callable::Dtype),
        ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Ok(Callable::FromBuffer),
        ("_codecs", "encode") => Ok(Callable::CodecsEncode),
        ("builtins" | "__builtin__", "bytes") => Ok(Callable::Bytes),
        _ => Err(Error::ForbiddenGlobal {
            module: module.to_string(),
            name: name.to_string(),
        }),
    }
}

/// A `numpy.dtype` of a plain numeric or bool type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dtype {
    dtype: DType,
    big_endian: bool,
}

/// A `numpy.ndarray`; `layout` is `None` until its `BUILD` state arrives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Array {
    layout: Option<Layout>,
}

/// Where an array's elements are and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    dtype: Dtype,
    shape: Vec<u64>,
    fortran: bool,
    /// The `bytes`/`bytearray` object holding exactly the elements.
    data: ObjId,
}

impl Array {
    /// Number of dimensions (0 before the state arrives).
    pub(super) fn shape_len(&self) -> usize {
        self.layout.as_ref().map_or(0, |l| l.shape.len())
    }

    /// Shape and dtype, once known.
    pub(super) fn describe(&self) -> Result<(&[u64], DType)> {
        let layout = self.layout()?;
        Ok((&layout.shape, layout.dtype.dtype))
    }

    /// Number of elements, once known.
    pub(super) fn elements(&self) -> Result<u64> {
        let layout = self.layout()?;
        element_count(&layout.shape)
            .ok_or_else(|| Error::malformed(FORMAT, "array shape overflows"))
    }

    fn layout(&self) -> Result<&Layout> {
        self.layout.as_ref().ok_or_else(|| {
            Error::malformed(
                FORMAT,
                "numpy array made by _reconstruct never received its BUILD state",
            )
        })
    }

    /// The array as a tensor: elements copied in C order, little-endian,
    /// booleans as 0/1.
    pub(super) fn to_tensor(&self, heap: &Heap, name: String) -> Result<Tensor> {
        let layout = self.layout()?;
        let raw = bytes_of(heap, Value::Obj(layout.data), "array data")?;
        let dtype = layout.dtype.dtype;
        let size = dtype.size();
        let mut data = if layout.fortran && layout.shape.len() > 1 {
            fortran_to_c(raw, &layout.shape, size)?
        } else {
            raw.to_vec()
        };
        if layout.dtype.big_endian {
            data.chunks_exact_mut(size).for_each(<[u8]>::reverse);
        }
        if dtype == DType::Bool {
            data.iter_mut().for_each(|b| *b = u8::from(*b != 0));
        }
        Tensor::new(name, dtype, layout.shape.clone(), data)
    }
}

/// Applies an allowed callable to its arguments (`REDUCE`).
/// `encoded` caches `_codecs.encode` results per source string, so a string
/// fetched from the memo many times is converted once.
pub(super) fn call(
    heap: &mut Heap,
    callable: Callable,
    args: Value,
    encoded: &mut HashMap<ObjId, ObjId>,
) -> Result<Value> {
    let args = heap.items(args, "REDUCE arguments")?.to_vec();
    match callable {
        Callable::Reconstruct => reconstruct(heap, &args),
        Callable::Dtype => make_dtype(heap, &args),
        Callable::FromBuffer => from_buffer(heap, &args),
        Callable::CodecsEncode => codecs_encode(heap, &args, encoded),
        Callable::Bytes if args.is_empty() => heap.value(Object::Bytes(Vec::new())),
        Callable::Bytes => Err(Error::malformed(
            FORMAT,
            "builtins.bytes is read only as bytes() (the empty bytes)",
        )),
        Callable::NdArray => Err(Error::malformed(
            FORMAT,
            "numpy.ndarray is only read as _reconstruct's argument",
        )),
    }
}

/// Applies `BUILD`: `state` to the numpy object `target`.
pub(super) fn build(heap: &mut Heap, target: Value, state: Value) -> Result<()> {
    let Value::Obj(id) = target else {
        return Err(heap.expected(target, "a numpy array or dtype for BUILD"));
    };
    match heap.get(id)? {
        Object::Array(_) => {
            let layout = array_state(heap, state)?;
            if let Object::Array(array) = heap.get_mut(id)? {
                array.layout = Some(layout);
            }
            Ok(())
        }
        Object::Dtype(dtype) => {
            let updated = dtype_state(heap, *dtype, state)?;
            if let Object::Dtype(dtype) = heap.get_mut(id)? {
                *dtype = updated;
            }
            Ok(())
        }
        other => Err(Error::malformed(
            FORMAT,
            format!(
                "BUILD on a {}: only numpy arrays and dtypes take state",
                other.type_name()
            ),
        )),
    }
}

/// `_reconstruct(numpy.ndarray, shape, typecode)`: an array awaiting its state.
fn reconstruct(heap: &mut Heap, args: &[Value]) -> Result<Value> {
    let [class, _shape, _typecode] = args else {
        return Err(Error::malformed(
            FORMAT,
            format!("_reconstruct takes 3 arguments, got {}", args.len()),
        ));
    };
    match heap.object(*class)? {
        Some(Object::Callable(Callable::NdArray)) => heap.value(Object::Array(Array::default())),
        _ => Err(heap.expected(*class, "numpy.ndarray as _reconstruct's class")),
    }
}

/// `dtype(descr, align, copy)`: descr like `f4`, `<i8`, `b1`. Object,
/// string, void, complex and datetime dtypes are [`Error::UnknownDType`].
fn make_dtype(heap: &mut Heap, args: &[Value]) -> Result<Value> {
    let Some(descr) = args.first().filter(|_| args.len() <= 3) else {
        return Err(Error::malformed(
            FORMAT,
            format!("numpy.dtype takes 1 to 3 arguments, got {}", args.len()),
        ));
    };
    let (dtype, big_endian) = DType::from_numpy_descr(heap.str(*descr, "dtype descriptor")?)?;
    heap.value(Object::Dtype(Dtype { dtype, big_endian }))
}

/// `_frombuffer(buffer, dtype, shape, order)` (protocol 5).
fn from_buffer(heap: &mut Heap, args: &[Value]) -> Result<Value> {
    let [buffer, dtype, shape, order] = args else {
        return Err(Error::malformed(
            FORMAT,
            format!("_frombuffer takes 4 arguments, got {}", args.len()),
        ));
    };
    let dtype = dtype_of(heap, *dtype)?;
    let shape = shape_of(heap, *shape)?;
    let fortran = match heap.str(*order, "_frombuffer order")? {
        "C" => false,
        "F" => true,
        other => {
            return Err(Error::malformed(
                FORMAT,
                format!("_frombuffer order {other:?} (expected C or F)"),
            ));
        }
    };
    let layout = layout(heap, dtype, shape, fortran, *buffer)?;
    heap.value(Object::Array(Array {
        layout: Some(layout),
    }))
}

/// `_codecs.encode(text, 'latin1')`: every character below 256 becomes one byte.
fn codecs_encode(
    heap: &mut Heap,
    args: &[Value],
    encoded: &mut HashMap<ObjId, ObjId>,
) -> Result<Value> {
    let [text, encoding] = args else {
        return Err(Error::malformed(
            FORMAT,
            "_codecs.encode is read only as encode(str, 'latin1')",
        ));
    };
    let encoding = heap
        .str(*encoding, "_codecs.encode encoding")?
        .to_ascii_lowercase();
    if !matches!(
        encoding.as_str(),
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1"
    ) {
        return Err(Error::malformed(
            FORMAT,
            format!("_codecs.encode to {encoding:?}: only latin-1 is read"),
        ));
    }
    let Value::Obj(source) = *text else {
        return Err(heap.expected(*text, "a str for _codecs.encode"));
    };
    if let Some(done) = encoded.get(&source) {
        return Ok(Value::Obj(*done));
    }
    let bytes = heap
        .str(*text, "_codecs.encode text")?
        .chars()
        .map(|c| u8::try_from(u32::from(c)))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| Error::malformed(FORMAT, "_codecs.encode: character beyond latin-1"))?;
    let id = heap.alloc(Object::Bytes(bytes))?;
    encoded.insert(source, id);
    Ok(Value::Obj(id))
}

/// An ndarray's state: `(version, shape, dtype, is_fortran, rawdata)`, or the
/// same without the version (very old numpy).
fn array_state(heap: &Heap, state: Value) -> Result<Layout> {
    let items = heap.items(state, "ndarray state")?;
    let (shape, dtype, fortran, raw) = match items {
        [_, shape, dtype, fortran, raw] | [shape, dtype, fortran, raw] => {
            (shape, dtype, fortran, raw)
        }
        _ => {
            return Err(Error::malformed(
                FORMAT,
                format!("ndarray state has {} items, expected 5", items.len()),
            ));
        }
    };
    let fortran = match fortran {
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        other => return Err(heap.expected(*other, "a bool for is_fortran")),
    };
    if matches!(heap.object(*raw)?, Some(Object::List(_))) {
        return Err(Error::malformed(
            FORMAT,
            "object arrays (raw data as a list of Python objects) are refused",
        ));
    }
    let (dtype, shape) = (dtype_of(heap, *dtype)?, shape_of(heap, *shape)?);
    layout(heap, dtype, shape, fortran, *raw)
}

/// A dtype's state `(version, byte order, subarray, names, fields, elsize,
/// alignment, flags[, metadata])`: only plain types, so the byte order is what counts.
fn dtype_state(heap: &Heap, dtype: Dtype, state: Value) -> Result<Dtype> {
    let items = heap.items(state, "dtype state")?;
    let (Some(order), Some(structure)) = (items.get(1), items.get(2..5)) else {
        return Err(Error::malformed(
            FORMAT,
            format!("dtype state has {} items, expected 8", items.len()),
        ));
    };
    if structure.iter().any(|v| *v != Value::None) {
        return Err(Error::UnknownDType(
            "structured or sub-array numpy dtype".into(),
        ));
    }
    let big_endian = match heap.str(*order, "dtype byte order")? {
        ">" => true,
        "<" | "|" | "=" => false,
        other => {
            return Err(Error::malformed(
                FORMAT,
                format!("dtype byte order {other:?}"),
            ));
        }
    };
    Ok(Dtype {
        big_endian: big_endian && dtype.dtype.size() > 1,
        ..dtype
    })
}

/// Checks that `data` is a bytes object holding exactly `shape` elements of `dtype`.
fn layout(
    heap: &Heap,
    dtype: Dtype,
    shape: Vec<u64>,
    fortran: bool,
    data: Value,
) -> Result<Layout> {
    let raw = bytes_of(heap, data, "array data")?;
    let needed = element_count(&shape).and_then(|n| n.checked_mul(dtype.dtype.size() as u64));
    if needed != Some(raw.len() as u64) {
        return Err(Error::Shape {
            name: "<numpy array>".into(),
            detail: format!(
                "shape {shape:?} of {} needs {needed:?} bytes, found {}",
                dtype.dtype.name(),
                raw.len()
            ),
        });
    }
    let Value::Obj(data) = data else {
        return Err(heap.expected(data, "bytes for array data"));
    };
    Ok(Layout {
        dtype,
        shape,
        fortran,
        data,
    })
}

fn dtype_of(heap: &Heap, value: Value) -> Result<Dtype> {
    match heap.object(value)? {
        Some(Object::Dtype(d)) => Ok(*d),
        _ => Err(heap.expected(value, "a numpy.dtype")),
    }
}

/// A shape tuple: at most [`MAX_DIMS`] non-negative ints.
fn shape_of(heap: &Heap, value: Value) -> Result<Vec<u64>> {
    let items = heap.items(value, "array shape")?;
    if items.len() > MAX_DIMS {
        return Err(Error::malformed(
            FORMAT,
            format!(
                "array of {} dimensions (numpy allows {MAX_DIMS})",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .map(|v| match v {
            Value::Int(d) => u64::try_from(*d)
                .map_err(|_| Error::malformed(FORMAT, format!("negative dimension {d}"))),
            other => Err(heap.expected(*other, "an int dimension")),
        })
        .collect()
}

fn bytes_of<'h>(heap: &'h Heap, value: Value, what: &str) -> Result<&'h [u8]> {
    match heap.object(value)? {
        Some(Object::Bytes(b) | Object::ByteArray(b)) => Ok(b),
        _ => Err(heap.expected(value, &format!("bytes for {what}"))),
    }
}

/// Reorders elements stored in Fortran (column-major) order into C order.
fn fortran_to_c(raw: &[u8], shape: &[u64], size: usize) -> Result<Vec<u8>> {
    let overflow = || Error::malformed(FORMAT, "array too large for this machine");
    let dims: Vec<usize> = shape
        .iter()
        .map(|d| usize::try_from(*d))
        .collect::<Result<_, _>>()
        .map_err(|_| overflow())?;
    let mut out = Vec::with_capacity(raw.len());
    if raw.is_empty() {
        return Ok(out);
    }
    // Column-major strides, in elements: the first index moves fastest.
    let mut strides = Vec::with_capacity(dims.len());
    let mut stride = 1usize;
    for d in &dims {
        strides.push(stride);
        stride = stride.checked_mul(*d).ok_or_else(overflow)?;
    }
    // Walk the C-order multi-index like an odometer (last index fastest).
    let mut index = vec![0usize; dims.len()];
    let mut offset = 0usize;
    loop {
        let at = offset * size;
        out.extend_from_slice(raw.get(at..at + size).ok_or_else(overflow)?);
        let mut axis = dims.len();
        loop {
            let Some(a) = axis.checked_sub(1) else {
                return Ok(out);
            };
            axis = a;
            let (Some(i), Some(d), Some(s)) = (index.get_mut(a), dims.get(a), strides.get(a))
            else {
                return Err(overflow());
            };
            *i += 1;
            offset += s;
            if *i < *d {
                break;
            }
            offset -= s * *i;
            *i = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_becomes_c_order() {
        // a = [[0, 1, 2], [3, 4, 5]] stored column-major: 0 3 1 4 2 5.
        let raw = [0u8, 3, 1, 4, 2, 5];
        assert_eq!(
            fortran_to_c(&raw, &[2, 3], 1).unwrap(),
            vec![0, 1, 2, 3, 4, 5]
        );
        // 2x2x2, element i*4 + j*2 + k stored at k*4 + j*2 + i.
        let mut raw3 = [0u8; 8];
        for (i, j, k) in (0..8).map(|n| (n / 4, n / 2 % 2, n % 2)) {
            raw3[k * 4 + j * 2 + i] = (i * 4 + j * 2 + k) as u8;
        }
        assert_eq!(
            fortran_to_c(&raw3, &[2, 2, 2], 1).unwrap(),
            (0..8).collect::<Vec<u8>>()
        );
        let wide: Vec<u8> = [0u16, 2, 1, 3]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let c: Vec<u8> = [0u16, 1, 2, 3]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(fortran_to_c(&wide, &[2, 2], 2).unwrap(), c);
        assert!(fortran_to_c(&[], &[0, 3], 4).unwrap().is_empty());
    }

    #[test]
    fn only_numpy_constructors_resolve() {
        assert_eq!(
            resolve_global("numpy._core.numeric", "_frombuffer").unwrap(),
            Callable::FromBuffer
        );
        assert_eq!(
            resolve_global("__builtin__", "bytes").unwrap(),
            Callable::Bytes
        );
        for (module, name) in [
            ("os", "system"),
            ("builtins", "eval"),
            ("numpy", "load"),
            ("torch._utils", "_rebuild_tensor_v2"),
        ] {
            let err = resolve_global(module, name).unwrap_err();
            assert!(
                matches!(&err, Error::ForbiddenGlobal { module: m, name: n } if m == module && n == name)
            );
        }
    }
}
