//! From the unpickled Python value to a [`Gradient`]: tensor naming, the
//! Python engine's packages, and metadata as JSON.
//!
//! Naming: dict key paths joined with `.`, list and tuple positions in
//! decimal (`layers.0.grad_a`). Leaves are numpy arrays, Python floats (0-d
//! f64), ints and bools (0-d i64; `True` is 1), and lists/tuples whose items
//! are all numbers (one 1-D tensor: f64 if any item is a float, else i64; an
//! empty list is an empty f64 tensor, as `numpy.array([])`). A value that is
//! itself a leaf at the top level is named [`TOP_LEVEL_NAME`]. Dict keys must
//! be str or int (rendered in decimal); anything else, and any other leaf
//! (None, str, bytes, sets, a lone int beyond 64 bits), is an error.

use super::object::{FORMAT, Heap, Object, Value};
use crate::{DType, Error, Format, Gradient, Limits, Metadata, Result, Tensor};

/// Name of a tensor that is the whole pickle (a bare array, number or list of numbers).
pub const TOP_LEVEL_NAME: &str = "tensor";

/// Keys of the Python engine's packages that hold tensors.
const PACKAGE_KEYS: [&str; 2] = ["gradients", "lora_params"];

/// Key of the packages' metadata.
const METADATA_KEY: &str = "metadata";

/// Turns the unpickled `root` into a gradient.
pub(super) fn to_gradient(heap: &Heap, root: Value, limits: &Limits) -> Result<Gradient> {
    let mut builder = Builder {
        heap,
        limits,
        tensors: Vec::new(),
        elements: 0,
    };
    let metadata = match package(heap, root)? {
        Some((entries, meta)) => {
            builder.package(entries)?;
            builder.metadata(meta)?
        }
        None => {
            builder.walk(root, None, 0)?;
            Metadata::new()
        }
    };
    Gradient::new(Format::Pickle, metadata, builder.tensors)
}

/// Recognises `{'gradients' | 'lora_params': {...}, 'metadata': ...}` (exactly
/// these two keys, the tensor dict being a dict) and returns its two values.
fn package(heap: &Heap, root: Value) -> Result<Option<(Value, Value)>> {
    let Some(Object::Dict(dict)) = heap.object(root)? else {
        return Ok(None);
    };
    let [(k1, v1), (k2, v2)] = dict.entries() else {
        return Ok(None);
    };
    let key = |k: &Value| match heap.object(*k) {
        Ok(Some(Object::Str(s))) => Some(s.as_str()),
        _ => None,
    };
    let (entries, meta) = match (key(k1), key(k2)) {
        (Some(a), Some(METADATA_KEY)) if PACKAGE_KEYS.contains(&a) => (*v1, *v2),
        (Some(METADATA_KEY), Some(b)) if PACKAGE_KEYS.contains(&b) => (*v2, *v1),
        _ => return Ok(None),
    };
    Ok(matches!(heap.object(entries)?, Some(Object::Dict(_))).then_some((entries, meta)))
}

struct Builder<'h> {
    heap: &'h Heap,
    limits: &'h Limits,
    tensors: Vec<Tensor>,
    elements: u64,
}

impl Builder<'_> {
    /// A package's tensor dict: `{name: {'data': array, 'shape': [..], 'dtype': 'torch.float32'}}`;
    /// other values (such as a LoRA alpha float) are walked like any value under their key.
    fn package(&mut self, entries: Value) -> Result<()> {
        let Some(Object::Dict(dict)) = self.heap.object(entries)? else {
            return Ok(());
        };
        for (key, value) in dict.entries() {
            let name = key_name(self.heap, *key)?;
            match self.record(*value)? {
                Some(record) => self.record_tensor(name, record)?,
                None => self.walk(*value, Some(name), 1)?,
            }
        }
        Ok(())
    }

    /// The `data`, `shape` and `dtype` of a record dict (one with a `data` key).
    fn record(&self, value: Value) -> Result<Option<[Option<Value>; 3]>> {
        let Some(Object::Dict(dict)) = self.heap.object(value)? else {
            return Ok(None);
        };
        let mut fields = [None; 3];
        for (key, v) in dict.entries() {
            if let Some(Object::Str(k)) = self.heap.object(*key)? {
                let slot = match k.as_str() {
                    "data" => fields.get_mut(0),
                    "shape" => fields.get_mut(1),
                    "dtype" => fields.get_mut(2),
                    _ => None,
                };
                if let Some(slot) = slot {
                    *slot = Some(*v);
                }
            }
        }
        Ok(fields[0].is_some().then_some(fields))
    }

    /// A record's array, checked against its declared shape and dtype.
    fn record_tensor(
        &mut self,
        name: String,
        [data, shape, dtype]: [Option<Value>; 3],
    ) -> Result<()> {
        let data = data.unwrap_or(Value::None);
        let Some(Object::Array(array)) = self.heap.object(data)? else {
            let found = self.heap.type_name(data);
            return Err(Error::Shape {
                name,
                detail: format!("'data' is a {found}, not a numpy array"),
            });
        };
        let (actual_shape, actual_dtype) = array.describe()?;
        if let Some(shape) = shape {
            let declared = self.int_list(shape, &name)?;
            if declared != actual_shape {
                return Err(Error::Shape {
                    name,
                    detail: format!("declared shape {declared:?}, array has {actual_shape:?}"),
                });
            }
        }
        if let Some(dtype) = dtype {
            let declared = self.heap.str(dtype, "a record's dtype")?;
            if DType::from_python_name(declared)? != actual_dtype {
                return Err(Error::Shape {
                    name,
                    detail: format!(
                        "declared dtype {declared}, array has {}",
                        actual_dtype.name()
                    ),
                });
            }
        }
        self.reserve(&name, array.elements()?)?;
        let tensor = array.to_tensor(self.heap, name)?;
        self.tensors.push(tensor);
        Ok(())
    }

    fn int_list(&self, value: Value, name: &str) -> Result<Vec<u64>> {
        let shape_error = || Error::Shape {
            name: name.to_string(),
            detail: "'shape' is not a list of ints".into(),
        };
        let items = self
            .heap
            .items(value, "a record's shape")
            .map_err(|_| shape_error())?;
        items
            .iter()
            .map(|v| match v {
                Value::Int(i) => u64::try_from(*i).map_err(|_| shape_error()),
                _ => Err(shape_error()),
            })
            .collect()
    }

    /// Walks any value, adding a tensor for every leaf.
    fn walk(&mut self, value: Value, path: Option<String>, depth: u32) -> Result<()> {
        Limits::check(
            "nesting depth",
            u64::from(depth),
            u64::from(self.limits.max_depth),
        )?;
        let name =
            |path: &Option<String>| path.clone().unwrap_or_else(|| TOP_LEVEL_NAME.to_string());
        match value {
            Value::Bool(b) => self.scalar(name(&path), Value::Int(i64::from(b))),
            Value::Int(_) | Value::Float(_) => self.scalar(name(&path), value),
            Value::None => Err(self.not_a_tensor(value, &path)),
            Value::Obj(id) => match self.heap.get(id)? {
                Object::Array(array) => {
                    let name = name(&path);
                    self.reserve(&name, array.elements()?)?;
                    let tensor = array.to_tensor(self.heap, name)?;
                    self.tensors.push(tensor);
                    Ok(())
                }
                Object::Dict(dict) => {
                    for (key, child) in dict.entries() {
                        let key = key_name(self.heap, *key)?;
                        self.walk(*child, Some(join(&path, &key)), depth + 1)?;
                    }
                    Ok(())
                }
                Object::List(items) | Object::Tuple(items) => {
                    if items.iter().all(|v| self.is_number(*v)) {
                        return self.numbers(name(&path), items);
                    }
                    for (i, child) in items.iter().enumerate() {
                        self.walk(*child, Some(join(&path, &i.to_string())), depth + 1)?;
                    }
                    Ok(())
                }
                Object::BigInt(i) => Err(Error::Shape {
                    name: name(&path),
                    detail: format!("integer {i} does not fit int64"),
                }),
                _ => Err(self.not_a_tensor(value, &path)),
            },
        }
    }

    fn is_number(&self, value: Value) -> bool {
        match value {
            Value::Bool(_) | Value::Int(_) | Value::Float(_) => true,
            Value::Obj(id) => matches!(self.heap.get(id), Ok(Object::BigInt(_))),
            Value::None => false,
        }
    }

    /// A Python int (i64) or float (f64) as a 0-d tensor.
    fn scalar(&mut self, name: String, value: Value) -> Result<()> {
        self.reserve(&name, 1)?;
        let (dtype, data) = match value {
            Value::Float(f) => (DType::F64, f.to_le_bytes().to_vec()),
            Value::Int(i) => (DType::I64, i.to_le_bytes().to_vec()),
            _ => return Err(self.not_a_tensor(value, &Some(name))),
        };
        self.tensors
            .push(Tensor::new(name, dtype, Vec::new(), data)?);
        Ok(())
    }

    /// A list of numbers as one 1-D tensor: f64 if any is a float, else i64.
    fn numbers(&mut self, name: String, items: &[Value]) -> Result<()> {
        self.reserve(&name, items.len() as u64)?;
        let any_float = items.is_empty() || items.iter().any(|v| matches!(v, Value::Float(_)));
        let mut data = Vec::with_capacity(items.len() * 8);
        for item in items {
            let int = match *item {
                Value::Float(f) => {
                    data.extend_from_slice(&f.to_le_bytes());
                    continue;
                }
                Value::Bool(b) => i128::from(b),
                Value::Int(i) => i128::from(i),
                Value::Obj(id) => match self.heap.get(id)? {
                    Object::BigInt(i) => *i,
                    _ => return Err(self.not_a_tensor(*item, &Some(name))),
                },
                Value::None => return Err(self.not_a_tensor(*item, &Some(name))),
            };
            if any_float {
                data.extend_from_slice(&(int as f64).to_le_bytes());
            } else {
                let int = i64::try_from(int).map_err(|_| Error::Shape {
                    name: name.clone(),
                    detail: format!("integer {int} does not fit int64"),
                })?;
                data.extend_from_slice(&int.to_le_bytes());
            }
        }
        let dtype = if any_float { DType::F64 } else { DType::I64 };
        self.tensors
            .push(Tensor::new(name, dtype, vec![items.len() as u64], data)?);
        Ok(())
    }

    /// Checks the tensor and element limits before a tensor is allocated.
    fn reserve(&mut self, name: &str, elements: u64) -> Result<()> {
        Limits::check(
            "tensors",
            self.tensors.len() as u64 + 1,
            self.limits.max_tensors,
        )?;
        self.elements = self
            .elements
            .checked_add(elements)
            .ok_or_else(|| Error::Shape {
                name: name.to_string(),
                detail: "element count overflows".into(),
            })?;
        Limits::check("total elements", self.elements, self.limits.max_elements)
    }

    fn not_a_tensor(&self, value: Value, path: &Option<String>) -> Error {
        let at = path.as_deref().unwrap_or("the top level");
        Error::malformed(
            FORMAT,
            format!(
                "a {} at {at:?} is not a tensor, number or container",
                self.heap.type_name(value)
            ),
        )
    }

    /// A package's metadata dict: str values as they are, others as JSON.
    fn metadata(&self, value: Value) -> Result<Metadata> {
        let mut metadata = Metadata::new();
        if value == Value::None {
            return Ok(metadata);
        }
        let Some(Object::Dict(dict)) = self.heap.object(value)? else {
            return Err(self.heap.expected(value, "a dict for 'metadata'"));
        };
        for (key, v) in dict.entries() {
            let key = key_name(self.heap, *key)?;
            let text = match self.heap.object(*v)? {
                Some(Object::Str(s)) => s.clone(),
                _ => {
                    let mut out = String::new();
                    super::json::write(self.heap, *v, &mut out, self.limits.max_depth)?;
                    out
                }
            };
            metadata.insert(key, text);
        }
        Ok(metadata)
    }
}

fn join(path: &Option<String>, segment: &str) -> String {
    match path {
        Some(p) => format!("{p}.{segment}"),
        None => segment.to_string(),
    }
}

/// A dict key as a name segment: str as is, int in decimal.
fn key_name(heap: &Heap, key: Value) -> Result<String> {
    match key {
        Value::Int(i) => Ok(i.to_string()),
        Value::Obj(id) => match heap.get(id)? {
            Object::Str(s) => Ok(s.clone()),
            Object::BigInt(i) => Ok(i.to_string()),
            other => Err(Error::malformed(
                FORMAT,
                format!(
                    "dict key of type {} (keys must be str or int)",
                    other.type_name()
                ),
            )),
        },
        other => Err(Error::malformed(
            FORMAT,
            format!(
                "dict key of type {} (keys must be str or int)",
                heap.type_name(other)
            ),
        )),
    }
}
