//! The pickle virtual machine: reads opcodes of protocols 0 to 5 as CPython
//! writes them and builds inert values. It knows data opcodes only; globals
//! go through [`numpy::resolve_global`], calls through [`numpy::call`].
//!
//! Refused opcodes ([`Error::UnsupportedOpcode`]): `PERSID`/`BINPERSID`
//! (persistent ids, as torch uses), `EXT1/2/4` (the extension registry),
//! `INST`/`OBJ`/`NEWOBJ`/`NEWOBJ_EX` (instance creation; numpy does not need
//! them) and `NEXT_BUFFER` (out-of-band buffers: none are supplied). `INST`
//! names a class inline, so a disallowed one is reported as
//! [`Error::ForbiddenGlobal`] first.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::numpy::{self, Callable};
use super::object::{Dict, FORMAT, Heap, ObjId, Object, SLOT_BYTES, Value};
use super::text;
use crate::{Error, Limits, Result};

/// Highest protocol read (CPython's `pickle.HIGHEST_PROTOCOL`).
const HIGHEST_PROTOCOL: u8 = 5;

/// Ints encoded by `LONG1`/`LONG4` may have at most this many bytes (128 bits).
const MAX_LONG_BYTES: u64 = 16;

/// Bytes charged per memo entry (key, value, table overhead).
const MEMO_ENTRY_BYTES: u64 = 48;

/// Opcode bytes, named as in CPython's `pickle.py`.
mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const FLOAT: u8 = b'F';
    pub const INT: u8 = b'I';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const LONG: u8 = b'L';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const PERSID: u8 = b'P';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const STRING: u8 = b'S';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const UNICODE: u8 = b'V';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const GET: u8 = b'g';
    pub const BINGET: u8 = b'h';
    pub const INST: u8 = b'i';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const OBJ: u8 = b'o';
    pub const PUT: u8 = b'p';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    // Protocol 2.
    pub const PROTO: u8 = 0x80;
    pub const NEWOBJ: u8 = 0x81;
    pub const EXT1: u8 = 0x82;
    pub const EXT2: u8 = 0x83;
    pub const EXT4: u8 = 0x84;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    // Protocol 3.
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    // Protocol 4.
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const NEWOBJ_EX: u8 = 0x92;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    // Protocol 5.
    pub const BYTEARRAY8: u8 = 0x96;
    pub const NEXT_BUFFER: u8 = 0x97;
    pub const READONLY_BUFFER: u8 = 0x98;
}

/// Runs a pickle to its `STOP` and returns the heap with the unpickled value.
/// Bytes after `STOP` are ignored, as `pickle.loads` ignores them.
pub(super) fn run(input: &[u8], limits: &Limits) -> Result<(Heap, Value)> {
    let mut machine = Machine {
        input,
        pos: 0,
        limits,
        heap: Heap::new(limits.max_decompressed_bytes),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        encoded: HashMap::new(),
    };
    let value = machine.execute()?;
    Ok((machine.heap, value))
}

/// How a string-like opcode's bytes become a value.
#[derive(Clone, Copy)]
enum Text {
    /// Python 2 `str`: ASCII, read as `str` (pickle's default `encoding='ASCII'`).
    Ascii,
    /// UTF-8 `str`.
    Utf8,
    /// `bytes`.
    Bytes,
    /// `bytearray`.
    ByteArray,
}

struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    limits: &'a Limits,
    heap: Heap,
    stack: Vec<Value>,
    /// Stack lengths at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    /// `_codecs.encode` results per source string.
    encoded: HashMap<ObjId, ObjId>,
}

impl<'a> Machine<'a> {
    fn execute(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let opcode = self.byte()?;
            match opcode {
                op::STOP => return self.pop(),
                op::PROTO => self.proto()?,
                op::FRAME => self.frame()?,
                op::MARK => self.mark()?,
                op::POP => self.pop_any()?,
                op::POP_MARK => self.pop_mark().map(drop)?,
                op::DUP => self.push(self.top()?)?,

                op::NONE => self.push(Value::None)?,
                op::NEWTRUE => self.push(Value::Bool(true))?,
                op::NEWFALSE => self.push(Value::Bool(false))?,
                op::INT => self.int_line()?,
                op::LONG => self.long_line()?,
                op::BININT => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(v)))?
                }
                op::BININT1 => {
                    let v = self.byte()?;
                    self.push(Value::Int(i64::from(v)))?
                }
                op::BININT2 => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.push(Value::Int(i64::from(v)))?
                }
                op::LONG1 => {
                    let n = self.byte()?;
                    self.long_bytes(u64::from(n))?
                }
                op::LONG4 => {
                    let n = self.signed_len()?;
                    self.long_bytes(n)?
                }
                op::FLOAT => {
                    let v = text::float(self.line()?)?;
                    self.push(Value::Float(v))?
                }
                op::BINFLOAT => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(v))?
                }

                op::STRING => {
                    let bytes = text::quoted(self.line()?)?;
                    self.push_text(&bytes, Text::Ascii)?
                }
                op::BINSTRING => self.counted(|m| m.signed_len(), Text::Ascii)?,
                op::SHORT_BINSTRING => self.counted(|m| m.byte().map(u64::from), Text::Ascii)?,
                op::UNICODE => {
                    let s = text::raw_unicode_escape(self.line()?)?;
                    self.push_object(Object::Str(s))?
                }
                op::BINUNICODE => self.counted(|m| m.u32().map(u64::from), Text::Utf8)?,
                op::SHORT_BINUNICODE => self.counted(|m| m.byte().map(u64::from), Text::Utf8)?,
                op::BINUNICODE8 => self.counted(Self::u64, Text::Utf8)?,
                op::BINBYTES => self.counted(|m| m.u32().map(u64::from), Text::Bytes)?,
                op::SHORT_BINBYTES => self.counted(|m| m.byte().map(u64::from), Text::Bytes)?,
                op::BINBYTES8 => self.counted(Self::u64, Text::Bytes)?,
                op::BYTEARRAY8 => self.counted(Self::u64, Text::ByteArray)?,
                op::READONLY_BUFFER => self.readonly_buffer()?,

                op::EMPTY_TUPLE => self.push_object(Object::Tuple(Vec::new()))?,
                op::TUPLE1 => self.tuple_of(1)?,
                op::TUPLE2 => self.tuple_of(2)?,
                op::TUPLE3 => self.tuple_of(3)?,
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push_object(Object::Tuple(items))?
                }
                op::EMPTY_LIST => self.push_object(Object::List(Vec::new()))?,
                op::LIST => {
                    let items = self.pop_mark()?;
                    self.push_object(Object::List(items))?
                }
                op::APPEND => {
                    let item = self.pop()?;
                    self.extend_top(vec![item], "APPEND")?
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.extend_top(items, "APPENDS")?
                }
                op::EMPTY_DICT => self.push_object(Object::Dict(Dict::default()))?,
                op::DICT => {
                    let items = self.pop_mark()?;
                    let dict = self.heap.value(Object::Dict(Dict::default()))?;
                    self.set_items(dict, &items)?;
                    self.push(dict)?
                }
                op::SETITEM => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(self.top()?, &[key, value])?
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    self.set_items(self.top()?, &items)?
                }
                op::EMPTY_SET => self.push_object(Object::Set(Vec::new()))?,
                op::ADDITEMS => {
                    let items = self.pop_mark()?;
                    self.extend_top(items, "ADDITEMS")?
                }
                op::FROZENSET => {
                    let items = self.pop_mark()?;
                    self.push_object(Object::Set(items))?
                }

                op::PUT => {
                    let index = self.line_index()?;
                    self.memo_put(index)?
                }
                op::BINPUT => {
                    let index = self.byte()?;
                    self.memo_put(u64::from(index))?
                }
                op::LONG_BINPUT => {
                    let index = self.u32()?;
                    self.memo_put(u64::from(index))?
                }
                op::MEMOIZE => self.memo_put(self.memo.len() as u64)?,
                op::GET => {
                    let index = self.line_index()?;
                    self.memo_get(index)?
                }
                op::BINGET => {
                    let index = self.byte()?;
                    self.memo_get(u64::from(index))?
                }
                op::LONG_BINGET => {
                    let index = self.u32()?;
                    self.memo_get(u64::from(index))?
                }

                op::GLOBAL => {
                    let module = self.utf8_line("GLOBAL module")?;
                    let name = self.utf8_line("GLOBAL name")?;
                    self.push_global(module, name)?
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let module = self.heap.str(module, "STACK_GLOBAL module")?.to_string();
                    let name = self.heap.str(name, "STACK_GLOBAL name")?.to_string();
                    self.push_global(&module, &name)?
                }
                op::INST => {
                    let module = self.utf8_line("INST module")?;
                    let name = self.utf8_line("INST name")?;
                    numpy::resolve_global(module, name)?;
                    return Err(unsupported(opcode, at));
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let function = match self.heap.object(callable)? {
                        Some(Object::Callable(function)) => *function,
                        _ => {
                            return Err(self
                                .heap
                                .expected(callable, "an allowed global for REDUCE"));
                        }
                    };
                    let result = numpy::call(&mut self.heap, function, args, &mut self.encoded)?;
                    self.push(result)?
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    numpy::build(&mut self.heap, target, state)?
                }

                // Refused: persistent ids, the extension registry, instance
                // creation and out-of-band buffers; and any unknown byte.
                op::PERSID
                | op::BINPERSID
                | op::EXT1
                | op::EXT2
                | op::EXT4
                | op::OBJ
                | op::NEWOBJ
                | op::NEWOBJ_EX
                | op::NEXT_BUFFER => return Err(unsupported(opcode, at)),
                _ => return Err(unsupported(opcode, at)),
            }
        }
    }

    // ---- reading the input ----

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let input = self.input;
        let remaining = self.input.len() - self.pos.min(self.input.len());
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= remaining)
            .ok_or_else(|| {
                Error::truncated(
                    FORMAT,
                    format!(
                        "{what} needs {n} bytes, {remaining} left at byte {}",
                        self.pos
                    ),
                )
            })?;
        let bytes = input
            .get(self.pos..self.pos + n)
            .ok_or_else(|| Error::truncated(FORMAT, what.to_string()))?;
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N as u64, "opcode argument")?;
        bytes
            .try_into()
            .map_err(|_| Error::truncated(FORMAT, "opcode argument"))
    }

    fn byte(&mut self) -> Result<u8> {
        let [b] = self.array()?;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A 4-byte signed length (`BINSTRING`, `LONG4`); negative is an error.
    fn signed_len(&mut self) -> Result<u64> {
        let n = i32::from_le_bytes(self.array()?);
        u64::try_from(n).map_err(|_| Error::malformed(FORMAT, format!("negative length {n}")))
    }

    /// A text argument up to (not including) `\n`.
    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let Some(len) = rest.iter().position(|b| *b == b'\n') else {
            return Err(Error::truncated(
                FORMAT,
                "text argument without its newline",
            ));
        };
        Limits::check(
            "pickle string bytes",
            len as u64,
            self.limits.max_string_bytes,
        )?;
        let line = self.take(len as u64 + 1, "text argument")?;
        Ok(line.get(..len).unwrap_or_default())
    }

    fn utf8_line(&mut self, what: &str) -> Result<&'a str> {
        let line = self.line()?;
        std::str::from_utf8(line)
            .map_err(|_| Error::malformed(FORMAT, format!("{what} is not UTF-8")))
    }

    fn line_index(&mut self) -> Result<u64> {
        let index = text::int(self.line()?)?;
        u64::try_from(index)
            .map_err(|_| Error::malformed(FORMAT, format!("negative memo index {index}")))
    }

    // ---- opcodes ----

    fn proto(&mut self) -> Result<()> {
        let version = self.byte()?;
        if version > HIGHEST_PROTOCOL {
            return Err(Error::malformed(
                FORMAT,
                format!("unsupported pickle protocol {version}"),
            ));
        }
        Ok(())
    }

    /// `FRAME` only announces how many bytes follow; they must be there.
    fn frame(&mut self) -> Result<()> {
        let len = self.u64()?;
        let remaining = (self.input.len() - self.pos.min(self.input.len())) as u64;
        if len > remaining {
            return Err(Error::truncated(
                FORMAT,
                format!("frame of {len} bytes, {remaining} left"),
            ));
        }
        Ok(())
    }

    fn int_line(&mut self) -> Result<()> {
        let line = self.line()?;
        let value = match line {
            b"00" => Value::Bool(false),
            b"01" => Value::Bool(true),
            _ => {
                let i = text::int(line)?;
                self.int(i)?
            }
        };
        self.push(value)
    }

    fn long_line(&mut self) -> Result<()> {
        let line = self.line()?;
        let digits = line.strip_suffix(b"L").unwrap_or(line);
        let i = text::int(digits)?;
        let value = self.int(i)?;
        self.push(value)
    }

    /// `LONG1`/`LONG4`: a little-endian two's-complement int of `n` bytes.
    fn long_bytes(&mut self, n: u64) -> Result<()> {
        if n > MAX_LONG_BYTES {
            return Err(Error::malformed(
                FORMAT,
                format!("integer of {n} bytes is beyond 128 bits"),
            ));
        }
        let bytes = self.take(n, "LONG argument")?;
        let fill = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut wide = [fill; 16];
        wide.get_mut(..bytes.len())
            .unwrap_or_default()
            .copy_from_slice(bytes);
        let value = self.int(i128::from_le_bytes(wide))?;
        self.push(value)
    }

    fn int(&mut self, i: i128) -> Result<Value> {
        match i64::try_from(i) {
            Ok(small) => Ok(Value::Int(small)),
            Err(_) => self.heap.value(Object::BigInt(i)),
        }
    }

    /// A length-prefixed string/bytes opcode: the length is checked against
    /// the limit before anything is read or allocated.
    fn counted(&mut self, length: impl FnOnce(&mut Self) -> Result<u64>, kind: Text) -> Result<()> {
        let n = length(self)?;
        Limits::check("pickle string bytes", n, self.limits.max_string_bytes)?;
        self.heap.check(n)?;
        let bytes = self.take(n, "string or bytes argument")?;
        self.push_text(bytes, kind)
    }

    fn push_text(&mut self, bytes: &[u8], kind: Text) -> Result<()> {
        let object = match kind {
            Text::Ascii => Object::Str(text::ascii(bytes, "Python 2 str")?.to_string()),
            Text::Utf8 => Object::Str(
                std::str::from_utf8(bytes)
                    .map_err(|_| {
                        Error::malformed(FORMAT, "str is not UTF-8 (lone surrogates are refused)")
                    })?
                    .to_string(),
            ),
            Text::Bytes => Object::Bytes(bytes.to_vec()),
            Text::ByteArray => Object::ByteArray(bytes.to_vec()),
        };
        self.push_object(object)
    }

    /// `READONLY_BUFFER` turns a buffer read-only; for in-band bytes that changes nothing.
    fn readonly_buffer(&mut self) -> Result<()> {
        let top = self.top()?;
        match self.heap.object(top)? {
            Some(Object::Bytes(_) | Object::ByteArray(_)) => Ok(()),
            _ => Err(self.heap.expected(top, "a buffer for READONLY_BUFFER")),
        }
    }

    fn tuple_of(&mut self, n: usize) -> Result<()> {
        let floor = self.floor();
        if self.stack.len() < floor + n {
            return Err(underflow());
        }
        let items = self.stack.split_off(self.stack.len() - n);
        self.push_object(Object::Tuple(items))
    }

    /// Appends to the list (or set) on top of the stack.
    fn extend_top(&mut self, items: Vec<Value>, what: &str) -> Result<()> {
        let target = self.top()?;
        self.heap.charge(items.len() as u64 * SLOT_BYTES)?;
        let Value::Obj(id) = target else {
            return Err(self.heap.expected(target, &format!("a list for {what}")));
        };
        match (self.heap.get_mut(id)?, what) {
            (Object::List(list), "APPEND" | "APPENDS") | (Object::Set(list), "ADDITEMS") => {
                list.extend(items);
                Ok(())
            }
            (other, _) => Err(Error::malformed(
                FORMAT,
                format!("{what} on a {}", other.type_name()),
            )),
        }
    }

    /// Sets key/value pairs (`items` alternates them) on a dict.
    fn set_items(&mut self, dict: Value, items: &[Value]) -> Result<()> {
        let pairs = items.chunks_exact(2);
        if !pairs.remainder().is_empty() {
            return Err(Error::malformed(FORMAT, "odd number of items for a dict"));
        }
        for pair in pairs {
            if let [key, value] = pair {
                self.heap.set_item(dict, *key, *value, self.limits)?;
            }
        }
        Ok(())
    }

    fn push_global(&mut self, module: &str, name: &str) -> Result<()> {
        let callable: Callable = numpy::resolve_global(module, name)?;
        self.push_object(Object::Callable(callable))
    }

    fn memo_put(&mut self, index: u64) -> Result<()> {
        let value = self.top()?;
        let entries = self.memo.len() as u64;
        match self.memo.entry(index) {
            Entry::Occupied(mut slot) => {
                slot.insert(value);
            }
            Entry::Vacant(slot) => {
                Limits::check(
                    "pickle memo entries",
                    entries + 1,
                    self.limits.max_memo_entries,
                )?;
                self.heap.charge(MEMO_ENTRY_BYTES)?;
                slot.insert(value);
            }
        }
        Ok(())
    }

    fn memo_get(&mut self, index: u64) -> Result<()> {
        let value = *self.memo.get(&index).ok_or_else(|| {
            Error::malformed(
                FORMAT,
                format!("memo entry {index} read before it was written"),
            )
        })?;
        self.push(value)
    }

    // ---- the stack ----

    fn push(&mut self, value: Value) -> Result<()> {
        let slots = (self.stack.len() + self.marks.len() + 1) as u64;
        self.heap.check(slots * SLOT_BYTES)?;
        self.stack.push(value);
        Ok(())
    }

    fn push_object(&mut self, object: Object) -> Result<()> {
        let value = self.heap.value(object)?;
        self.push(value)
    }

    fn mark(&mut self) -> Result<()> {
        let slots = (self.stack.len() + self.marks.len() + 1) as u64;
        self.heap.check(slots * SLOT_BYTES)?;
        self.marks.push(self.stack.len());
        Ok(())
    }

    /// Lowest stack position ops may pop to: the innermost open mark.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return Err(underflow());
        }
        self.stack.pop().ok_or_else(underflow)
    }

    /// `POP`: the top item, or the innermost mark when nothing is above it.
    fn pop_any(&mut self) -> Result<()> {
        if self.stack.len() > self.floor() {
            self.pop().map(drop)
        } else {
            self.pop_mark().map(drop)
        }
    }

    fn top(&self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return Err(underflow());
        }
        self.stack.last().copied().ok_or_else(underflow)
    }

    /// Removes the innermost mark and returns the items above it.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| Error::malformed(FORMAT, "no MARK to pop to"))?;
        if mark > self.stack.len() {
            return Err(underflow());
        }
        Ok(self.stack.split_off(mark))
    }
}

fn underflow() -> Error {
    Error::malformed(FORMAT, "stack underflow")
}

fn unsupported(opcode: u8, at: usize) -> Error {
    Error::UnsupportedOpcode {
        opcode,
        offset: at as u64,
    }
}
