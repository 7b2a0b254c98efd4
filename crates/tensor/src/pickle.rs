//! Safe reader of legacy pickle gradients (protocols 0 to 5), as the seed's
//! Python miner writes them with `pickle.dumps`.
//!
//! A small pickle interpreter of its own: it interprets data opcodes only and
//! knows builtin containers and numpy arrays. Any global other than numpy's
//! array and dtype constructors (and `_codecs.encode` / `bytes()`, which
//! protocols 0 to 2 use to write bytes) is refused with
//! [`Error::ForbiddenGlobal`](crate::Error::ForbiddenGlobal) the moment the
//! `GLOBAL`/`STACK_GLOBAL` opcode is read; `REDUCE` and `BUILD` only apply
//! those constructors to build inert data. Nothing is ever executed.
//!
//! Decisions, beyond what the issue fixes:
//! - **Sets** (`EMPTY_SET`, `ADDITEMS`, `FROZENSET`) are read; in metadata they
//!   become JSON arrays in pickle order, as gradient values they are an error
//!   (a set has no order to flatten in).
//! - **Big ints**: `LONG1`/`LONG4`/`LONG`/`INT` up to 128 bits are read; one
//!   beyond 64 bits is fine in metadata (decimal JSON) and in a list that also
//!   holds floats (converted to f64), and an error as an int tensor.
//! - **Bools** count as ints: `True` is a 0-d i64 tensor of value 1, and in a
//!   list of numbers they are 0 and 1.
//! - **Naming**: see [`convert`]; a bare array, number or list of numbers at
//!   the top level is named [`TOP_LEVEL_NAME`] (`tensor`), a top-level list of
//!   arrays gives `0`, `1`, ...
//! - **Out-of-band buffers** (`NEXT_BUFFER`) are refused: none are supplied.
//!   `READONLY_BUFFER` on an in-band buffer changes nothing.
//! - **Object arrays** and structured, string, complex or datetime dtypes are
//!   errors; numpy scalars (`numpy.core.multiarray.scalar`) are refused globals.
//! - Bytes after `STOP` are ignored, as `pickle.loads` ignores them.
//!
//! Limits ([`Limits`]): every string or bytes length is checked against
//! `max_string_bytes` before it is read (a `BINBYTES8` claiming 2^60 bytes
//! fails on its length); the memo holds at most `max_memo_entries`; tensors
//! and their total elements are checked before each tensor is allocated;
//! walks over nested values stop at `max_depth`; and the interpreter's whole
//! working memory (objects, stack, memo) is bounded by
//! `max_decompressed_bytes`. Arrays share their bytes with the pickle's
//! bytes objects until the final copy into tensors.

mod convert;
mod json;
mod machine;
mod numpy;
mod object;
mod text;

pub use convert::TOP_LEVEL_NAME;

use crate::{Gradient, Limits, Result};

/// Decodes an uncompressed pickle into a [`Gradient`] (format [`crate::Format::Pickle`]).
///
/// The Python engine's packages — `{'gradients': {name: {'data': array,
/// 'shape': [...], 'dtype': 'torch.float32'}}, 'metadata': {...}}` and the
/// same under `'lora_params'` — give one tensor per record, named by its key,
/// with shape and dtype checked, and their `metadata` as the gradient's
/// metadata (strings as they are, other values as Python's `json.dumps`
/// writes them). Any other value is flattened into tensors by key path.
/// Tensors keep the pickle's order (dict insertion order).
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Gradient> {
    let (heap, root) = machine::run(bytes, limits)?;
    convert::to_gradient(&heap, root, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Error, Format};

    /// `SHORT_BINUNICODE` of `text`.
    fn s(text: &str) -> Vec<u8> {
        let mut out = vec![0x8c, text.len() as u8];
        out.extend_from_slice(text.as_bytes());
        out
    }

    /// A protocol-4 pickle of the opcodes in `parts`, then `STOP`.
    fn pickle(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![0x80, 4];
        parts.iter().for_each(|p| out.extend_from_slice(p));
        out.push(b'.');
        out
    }

    fn names(g: &Gradient) -> Vec<&str> {
        g.tensors.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn memoized_list_is_shared_after_it_is_filled() {
        // d = {}; l = []; memo[0] = l; l += [1, 2]; d['a'] = l; d['b'] = memo[0]
        let p = pickle(&[b"}(", &s("a"), b"]q\x00(K\x01K\x02e", &s("b"), b"h\x00u"]);
        let g = decode(&p, &Limits::default()).unwrap();
        assert_eq!(g.format, Format::Pickle);
        assert_eq!(names(&g), ["a", "b"]);
        assert_eq!(g.tensors[1].dtype, DType::I64);
        assert_eq!(g.tensors[1].to_f64(), [1.0, 2.0]);
    }

    #[test]
    fn top_level_values_and_bools() {
        let g = decode(&pickle(&[b"G\x3f\xf8\0\0\0\0\0\0"]), &Limits::default()).unwrap();
        assert_eq!(
            (names(&g), g.tensors[0].shape.len()),
            (vec![TOP_LEVEL_NAME], 0)
        );
        let g = decode(&pickle(&[b"\x88"]), &Limits::default()).unwrap();
        assert_eq!(
            (g.tensors[0].dtype, g.tensors[0].to_f64()),
            (DType::I64, vec![1.0])
        );
        // [[1], {'k': 2.5}] -> "0" and "1.k"
        let g = decode(
            &pickle(&[b"(K\x01\x85}", &s("k"), b"G\x40\x04\0\0\0\0\0\0sl"]),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(names(&g), ["0", "1.k"]);
        // [] -> one empty f64 tensor
        let g = decode(&pickle(&[b"]"]), &Limits::default()).unwrap();
        assert_eq!(
            (g.tensors[0].dtype, g.tensors[0].shape.clone()),
            (DType::F64, vec![0])
        );
    }

    #[test]
    fn big_ints_are_floats_in_float_lists_and_errors_alone() {
        let two_pow_70 = b"\x8a\x09\0\0\0\0\0\0\0\0\x40";
        let g = decode(
            &pickle(&[b"(", two_pow_70, b"G\x3f\xe0\0\0\0\0\0\0l"]),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(g.tensors[0].to_f64(), [2f64.powi(70), 0.5]);
        let err = decode(&pickle(&[b"(", two_pow_70, b"K\x01l"]), &Limits::default()).unwrap_err();
        assert!(matches!(err, Error::Shape { .. }), "{err}");
        let err = decode(&pickle(&[b"\x8a\x11", &[1; 17]]), &Limits::default()).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
    }

    #[test]
    fn packages_carry_metadata_as_json_and_sets_only_there() {
        // {'lora_params': {'alpha': 16.0}, 'metadata': {'tags': frozenset({1, 2}), 'who': 'me'}}
        let p = pickle(&[
            b"}(",
            &s("lora_params"),
            b"}",
            &s("alpha"),
            b"G\x40\x30\0\0\0\0\0\0s",
            &s("metadata"),
            b"}(",
            &s("tags"),
            b"(K\x01K\x02\x91",
            &s("who"),
            &s("me"),
            b"uu",
        ]);
        let g = decode(&p, &Limits::default()).unwrap();
        assert_eq!(names(&g), ["alpha"]);
        assert_eq!(g.metadata["tags"], "[1, 2]");
        assert_eq!(g.metadata["who"], "me");
        let err = decode(&pickle(&[b"\x8f(K\x01\x90"]), &Limits::default()).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
    }

    #[test]
    fn forbidden_globals_fail_when_read() {
        let mut p = b"\x80\x02cos\nsystem\n".to_vec();
        p.extend_from_slice(b"\xff\xff truncated garbage");
        let err = decode(&p, &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, Error::ForbiddenGlobal { module, name } if module == "os" && name == "system")
        );
        let err = decode(
            &pickle(&[&s("builtins"), &s("eval"), b"\x93"]),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, Error::ForbiddenGlobal { .. }));
        // An allowed global is still no general callable.
        let err = decode(&pickle(&[b"cnumpy\nndarray\n)R"]), &Limits::default()).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err}");
        let err = decode(
            &pickle(&[b"c_codecs\nencode\n", &s("x"), &s("utf-8"), b"\x86R"]),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("latin-1"), "{err}");
    }

    #[test]
    fn refused_opcodes_name_themselves() {
        for (opcode, body) in [
            (0x97u8, &b"\x97"[..]),
            (0x81, b"cnumpy\ndtype\n)\x81"),
            (0x82, b"\x82\x01"),
        ] {
            let err = decode(&pickle(&[body]), &Limits::default()).unwrap_err();
            assert!(
                matches!(err, Error::UnsupportedOpcode { opcode: o, .. } if o == opcode),
                "{err}"
            );
        }
    }

    #[test]
    fn stack_opcodes() {
        // 3 MARK 4 TUPLE2: the open mark hides 3 from TUPLE2.
        let g = decode(&pickle(&[b"K\x03(K\x04\x86"]), &Limits::default());
        assert!(
            matches!(g, Err(Error::Malformed { .. })),
            "a mark is still open: TUPLE2 may not cross it"
        );
        // MARK 1 2 POP_MARK; 3 DUP TUPLE2; MARK POP (nothing above the mark: pops the mark).
        let g = decode(
            &pickle(&[b"(K\x01K\x021K\x03\x32\x86(0"]),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(g.tensors[0].to_f64(), [3.0, 3.0]);
        assert!(decode(&pickle(&[b"0"]), &Limits::default()).is_err());
        assert!(decode(b"\x80\x04", &Limits::default()).is_err());
    }

    #[test]
    fn limits_hold() {
        let small = |f: fn(&mut Limits)| {
            let mut limits = Limits::default();
            f(&mut limits);
            limits
        };
        let limit_of = |p: &[u8], limits: &Limits| match decode(p, limits) {
            Err(Error::Limit { what, .. }) => what,
            other => panic!("expected a limit error, got {other:?}"),
        };
        let memo = pickle(&[b"(K\x01\x94K\x02\x94K\x03\x94l"]);
        assert_eq!(
            limit_of(&memo, &small(|l| l.max_memo_entries = 2)),
            "pickle memo entries"
        );
        let text = pickle(&[&s("hello")]);
        assert_eq!(
            limit_of(&text, &small(|l| l.max_string_bytes = 4)),
            "pickle string bytes"
        );
        let three = pickle(&[b"(K\x01K\x02K\x03l"]);
        assert_eq!(
            limit_of(&three, &small(|l| l.max_elements = 2)),
            "total elements"
        );
        let pair = pickle(&[b"(K\x01\x85K\x02\x85l"]);
        assert_eq!(limit_of(&pair, &small(|l| l.max_tensors = 1)), "tensors");
        let nested = pickle(&[b"K\x01\x85\x85\x85\x85"]);
        assert_eq!(
            limit_of(&nested, &small(|l| l.max_depth = 2)),
            "nesting depth"
        );
        let lists = pickle(&[&b"]".repeat(1000)]);
        assert_eq!(
            limit_of(&lists, &small(|l| l.max_decompressed_bytes = 4096)),
            "pickle interpreter memory"
        );
    }
}
