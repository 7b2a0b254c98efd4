//! The interpreter's object model: immediate [`Value`]s and an arena of
//! [`Object`]s that charges every allocation against a memory budget.
//!
//! Python objects are references: a list is memoized while still empty and
//! filled afterwards, and every `GET` must see the filled list. So containers,
//! strings and numpy objects live in the [`Heap`] arena and values refer to
//! them by [`ObjId`]. Cycles are harmless (nothing is freed one by one and
//! every walk over the object graph is depth-limited).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::numpy::{Array, Callable, Dtype};
use crate::{Error, Limits, Result};

/// Format name in errors.
pub(super) const FORMAT: &str = "pickle";

/// Bytes charged per value slot (stack, containers, memo).
pub(super) const SLOT_BYTES: u64 = size_of::<Value>() as u64;

/// Handle of an object in the [`Heap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ObjId(usize);

/// A Python value: small ones inline, everything else in the heap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int that fits 64 bits (larger ones are [`Object::BigInt`]).
    Int(i64),
    /// A float.
    Float(f64),
    /// Anything else.
    Obj(ObjId),
}

/// A heap object.
#[derive(Debug)]
pub(super) enum Object {
    /// An int beyond 64 bits (up to 128).
    BigInt(i128),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
    /// A `bytearray` (unhashable, otherwise like bytes).
    ByteArray(Vec<u8>),
    /// A `tuple`.
    Tuple(Vec<Value>),
    /// A `list`.
    List(Vec<Value>),
    /// A `dict`, in insertion order.
    Dict(Dict),
    /// A `set` or `frozenset`, in pickle order.
    Set(Vec<Value>),
    /// One of the allowed numpy/codec globals.
    Callable(Callable),
    /// A `numpy.dtype`.
    Dtype(Dtype),
    /// A `numpy.ndarray`.
    Array(Array),
}

impl Object {
    /// Python's name of the object's type, for error messages.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Object::BigInt(_) => "int",
            Object::Str(_) => "str",
            Object::Bytes(_) => "bytes",
            Object::ByteArray(_) => "bytearray",
            Object::Tuple(_) => "tuple",
            Object::List(_) => "list",
            Object::Dict(_) => "dict",
            Object::Set(_) => "set",
            Object::Callable(_) => "global",
            Object::Dtype(_) => "numpy.dtype",
            Object::Array(_) => "numpy.ndarray",
        }
    }

    /// Bytes owned beyond the object itself.
    fn payload_bytes(&self) -> u64 {
        let len = match self {
            Object::Str(s) => s.len(),
            Object::Bytes(b) | Object::ByteArray(b) => b.len(),
            Object::Tuple(v) | Object::List(v) | Object::Set(v) => v.len() * size_of::<Value>(),
            Object::Array(a) => a.shape_len() * size_of::<u64>(),
            _ => 0,
        };
        len as u64
    }
}

/// The arena of objects, with the memory budget of the whole interpreter.
pub(super) struct Heap {
    objects: Vec<Object>,
    used: u64,
    budget: u64,
}

impl Heap {
    /// An empty heap that may hold `budget` bytes.
    pub(super) fn new(budget: u64) -> Self {
        Self {
            objects: Vec::new(),
            used: 0,
            budget,
        }
    }

    /// Charges `bytes` more against the budget, failing with [`Error::Limit`] past it.
    pub(super) fn charge(&mut self, bytes: u64) -> Result<()> {
        self.used = self.used.saturating_add(bytes);
        self.check(0)
    }

    /// Fails when what is charged plus `extra` exceeds the budget.
    pub(super) fn check(&self, extra: u64) -> Result<()> {
        Limits::check(
            "pickle interpreter memory",
            self.used.saturating_add(extra),
            self.budget,
        )
    }

    /// Stores an object, charging its size.
    pub(super) fn alloc(&mut self, object: Object) -> Result<ObjId> {
        self.charge(size_of::<Object>() as u64 + object.payload_bytes())?;
        self.objects.push(object);
        Ok(ObjId(self.objects.len() - 1))
    }

    /// Stores an object and returns a value referring to it.
    pub(super) fn value(&mut self, object: Object) -> Result<Value> {
        self.alloc(object).map(Value::Obj)
    }

    /// The object behind `id`.
    pub(super) fn get(&self, id: ObjId) -> Result<&Object> {
        self.objects.get(id.0).ok_or_else(dangling)
    }

    /// The object behind `id`, mutably.
    pub(super) fn get_mut(&mut self, id: ObjId) -> Result<&mut Object> {
        self.objects.get_mut(id.0).ok_or_else(dangling)
    }

    /// The object a value refers to, if it is a heap value.
    pub(super) fn object(&self, value: Value) -> Result<Option<&Object>> {
        match value {
            Value::Obj(id) => self.get(id).map(Some),
            _ => Ok(None),
        }
    }

    /// Python's type name of a value.
    pub(super) fn type_name(&self, value: Value) -> &'static str {
        match value {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Obj(id) => self.get(id).map_or("?", Object::type_name),
        }
    }

    /// The string a value is, or an error naming `what` was expected.
    pub(super) fn str(&self, value: Value, what: &str) -> Result<&str> {
        match self.object(value)? {
            Some(Object::Str(s)) => Ok(s),
            _ => Err(self.expected(value, &format!("{what} (a str)"))),
        }
    }

    /// The items of a tuple (or list) value.
    pub(super) fn items(&self, value: Value, what: &str) -> Result<&[Value]> {
        match self.object(value)? {
            Some(Object::Tuple(items) | Object::List(items)) => Ok(items),
            _ => Err(self.expected(value, &format!("{what} (a tuple)"))),
        }
    }

    /// A malformed-input error: `what` was expected, something else found.
    pub(super) fn expected(&self, found: Value, what: &str) -> Error {
        Error::malformed(
            FORMAT,
            format!("expected {what}, found {}", self.type_name(found)),
        )
    }

    /// Sets `dict[key] = value` as Python does: a new key goes last, an
    /// existing key keeps its place and gets the new value.
    pub(super) fn set_item(
        &mut self,
        dict: Value,
        key: Value,
        value: Value,
        limits: &Limits,
    ) -> Result<()> {
        let hashed = DictKey::of(self, key, 0, limits.max_depth)?;
        let cost = 2 * SLOT_BYTES + hashed.cost();
        let Value::Obj(id) = dict else {
            return Err(self.expected(dict, "a dict for SETITEM"));
        };
        let Object::Dict(target) = self.get_mut(id)? else {
            let found = self.get(id)?.type_name();
            return Err(Error::malformed(
                FORMAT,
                format!("SETITEM on a {found}, not a dict"),
            ));
        };
        let is_new = target.insert(hashed, key, value);
        if is_new { self.charge(cost) } else { Ok(()) }
    }
}

fn dangling() -> Error {
    Error::malformed(FORMAT, "internal error: dangling object reference")
}

/// A dict: entries in insertion order plus an index by key.
#[derive(Debug, Default)]
pub(super) struct Dict {
    entries: Vec<(Value, Value)>,
    index: HashMap<DictKey, usize>,
}

impl Dict {
    /// Entries in insertion order.
    pub(super) fn entries(&self) -> &[(Value, Value)] {
        &self.entries
    }

    /// Inserts or replaces; returns whether the key is new.
    fn insert(&mut self, hashed: DictKey, key: Value, value: Value) -> bool {
        match self.index.entry(hashed) {
            Entry::Occupied(slot) => {
                if let Some(entry) = self.entries.get_mut(*slot.get()) {
                    entry.1 = value;
                }
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(self.entries.len());
                self.entries.push((key, value));
                true
            }
        }
    }
}

/// A dict key reduced to what Python's `==` compares: `True == 1 == 1.0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum DictKey {
    None,
    Int(i128),
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<DictKey>),
    /// Hashable by identity (globals, dtypes).
    Identity(ObjId),
}

impl DictKey {
    /// The key of a value; unhashable values (lists, dicts, arrays, ...) are
    /// errors. Tuples nest at most `max_depth` deep.
    fn of(heap: &Heap, value: Value, depth: u32, max_depth: u32) -> Result<Self> {
        Ok(match value {
            Value::None => DictKey::None,
            Value::Bool(b) => DictKey::Int(i128::from(b)),
            Value::Int(i) => DictKey::Int(i128::from(i)),
            Value::Float(f) => float_key(f),
            Value::Obj(id) => match heap.get(id)? {
                Object::BigInt(i) => DictKey::Int(*i),
                Object::Str(s) => DictKey::Str(s.clone()),
                Object::Bytes(b) => DictKey::Bytes(b.clone()),
                Object::Tuple(items) => {
                    let depth = depth + 1;
                    Limits::check("nesting depth", depth.into(), max_depth.into())?;
                    let keys = items
                        .iter()
                        .map(|v| DictKey::of(heap, *v, depth, max_depth));
                    DictKey::Tuple(keys.collect::<Result<_>>()?)
                }
                Object::Callable(_) | Object::Dtype(_) => DictKey::Identity(id),
                other => {
                    let kind = other.type_name();
                    return Err(Error::malformed(
                        FORMAT,
                        format!("unhashable dict key of type {kind}"),
                    ));
                }
            },
        })
    }

    /// Approximate bytes the key copy holds.
    fn cost(&self) -> u64 {
        let own = size_of::<DictKey>() as u64;
        match self {
            DictKey::Str(s) => own + s.len() as u64,
            DictKey::Bytes(b) => own + b.len() as u64,
            DictKey::Tuple(items) => own + items.iter().map(DictKey::cost).sum::<u64>(),
            _ => own,
        }
    }
}

/// Floats equal to an integer share that integer's key, as in Python.
fn float_key(f: f64) -> DictKey {
    const I128_RANGE: f64 = 1.7e38;
    if f.fract() == 0.0 && f.abs() < I128_RANGE {
        DictKey::Int(f as i128)
    } else {
        DictKey::Float(f.to_bits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_python_keys_share_a_slot() {
        let limits = Limits::default();
        let mut heap = Heap::new(1 << 20);
        let dict = heap.value(Object::Dict(Dict::default())).unwrap();
        heap.set_item(dict, Value::Int(1), Value::Int(10), &limits)
            .unwrap();
        heap.set_item(dict, Value::Bool(true), Value::Int(11), &limits)
            .unwrap();
        heap.set_item(dict, Value::Float(1.0), Value::Int(12), &limits)
            .unwrap();
        let a = heap.value(Object::Str("a".into())).unwrap();
        heap.set_item(dict, a, Value::None, &limits).unwrap();
        let Value::Obj(id) = dict else { panic!() };
        let Object::Dict(d) = heap.get(id).unwrap() else {
            panic!()
        };
        assert_eq!(
            d.entries(),
            &[(Value::Int(1), Value::Int(12)), (a, Value::None)]
        );
    }

    #[test]
    fn unhashable_keys_and_budget_are_errors() {
        let limits = Limits::default();
        let mut heap = Heap::new(1 << 20);
        let dict = heap.value(Object::Dict(Dict::default())).unwrap();
        let list = heap.value(Object::List(vec![])).unwrap();
        assert!(heap.set_item(dict, list, Value::None, &limits).is_err());
        assert!(matches!(heap.charge(2 << 20), Err(Error::Limit { .. })));
    }
}
