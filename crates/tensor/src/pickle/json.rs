//! Metadata values as JSON text, exactly as Python's `json.dumps(value)`
//! writes them with its defaults (`", "` and `": "` separators, ASCII output,
//! floats as [`crate::pyjson::float_repr`], tuples and sets as arrays).

use std::fmt::Write;

use super::object::{FORMAT, Heap, Object, Value};
use crate::pyjson::float_repr;
use crate::{Error, Limits, Result};

/// Appends `json.dumps(value)` to `out`, nesting at most `max_depth` containers.
pub(super) fn write(heap: &Heap, value: Value, out: &mut String, max_depth: u32) -> Result<()> {
    Writer { heap, max_depth }.value(value, out, 0)
}

struct Writer<'h> {
    heap: &'h Heap,
    max_depth: u32,
}

impl Writer<'_> {
    fn value(&self, value: Value, out: &mut String, depth: u32) -> Result<()> {
        let heap = self.heap;
        match value {
            Value::None => out.push_str("null"),
            Value::Bool(b) => out.push_str(if b { "true" } else { "false" }),
            Value::Int(i) => push_display(out, i),
            Value::Float(f) => out.push_str(&float_repr(f)),
            Value::Obj(id) => match heap.get(id)? {
                Object::BigInt(i) => push_display(out, i),
                Object::Str(s) => string(s, out),
                Object::List(items) | Object::Tuple(items) | Object::Set(items) => {
                    let depth = self.deeper(depth)?;
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        self.value(*item, out, depth)?;
                    }
                    out.push(']');
                }
                Object::Dict(dict) => {
                    let depth = self.deeper(depth)?;
                    out.push('{');
                    for (i, (key, item)) in dict.entries().iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        key_string(heap, *key, out)?;
                        out.push_str(": ");
                        self.value(*item, out, depth)?;
                    }
                    out.push('}');
                }
                other => return Err(not_serializable(other.type_name())),
            },
        }
        Ok(())
    }

    fn deeper(&self, depth: u32) -> Result<u32> {
        let depth = depth + 1;
        Limits::check("nesting depth", depth.into(), self.max_depth.into())?;
        Ok(depth)
    }
}

/// A dict key: str as is; int, float, bool and None as their JSON text, quoted.
fn key_string(heap: &Heap, key: Value, out: &mut String) -> Result<()> {
    let text = match key {
        Value::Obj(id) => match heap.get(id)? {
            Object::Str(s) => {
                string(s, out);
                return Ok(());
            }
            Object::BigInt(i) => i.to_string(),
            other => return Err(not_serializable(&format!("{} as a key", other.type_name()))),
        },
        Value::None => "null".into(),
        Value::Bool(b) => if b { "true" } else { "false" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => float_repr(f),
    };
    string(&text, out);
    Ok(())
}

fn not_serializable(kind: &str) -> Error {
    Error::malformed(
        FORMAT,
        format!("metadata value of type {kind} is not JSON serializable"),
    )
}

fn push_display(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

/// A JSON string with Python's `ensure_ascii` escaping.
fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::super::object::Dict;
    use super::*;

    #[test]
    fn containers_and_strings_like_json_dumps() {
        let limits = Limits::default();
        let mut heap = Heap::new(1 << 20);
        let s = heap.value(Object::Str("é\"\n\u{1F600}".into())).unwrap();
        let list = heap
            .value(Object::Tuple(vec![
                Value::Int(1),
                Value::None,
                Value::Bool(true),
                s,
            ]))
            .unwrap();
        let dict = heap.value(Object::Dict(Dict::default())).unwrap();
        heap.set_item(dict, Value::Int(3), list, &limits).unwrap();
        heap.set_item(dict, Value::Float(0.5), Value::Float(2.5), &limits)
            .unwrap();
        let mut out = String::new();
        write(&heap, dict, &mut out, 4).unwrap();
        assert_eq!(
            out,
            r#"{"3": [1, null, true, "\u00e9\"\n\ud83d\ude00"], "0.5": 2.5}"#
        );
        let bytes = heap.value(Object::Bytes(vec![1])).unwrap();
        assert!(write(&heap, bytes, &mut String::new(), 4).is_err());
        assert!(write(&heap, dict, &mut String::new(), 1).is_err());
    }
}
