//! Floats as Python's `json.dumps` writes them: `repr(float)` digits
//! (shortest round-trip, ties to even), `NaN`/`Infinity`/`-Infinity`, and
//! `", "` between list items. `r3mes gradient decode --json` prints exactly
//! what the seed's Python helper printed for the Go keeper.
//!
//! Digits come from Ryū (the `ryu` crate), which picks the same shortest
//! digits as CPython's `repr` (David Gay's algorithm), including rounding an
//! exact tie to even; only the layout differs, and that is redone here.

/// `json.dumps(list_of_floats)`. Large lists are formatted on every core.
pub fn dumps_floats(values: &[f64]) -> String {
    const PER_THREAD_MIN: usize = 1 << 18;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let parts: Vec<String> = if values.len() < 2 * PER_THREAD_MIN || threads == 1 {
        vec![join(values)]
    } else {
        let per = values.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = values
                .chunks(per)
                .map(|chunk| scope.spawn(move || join(chunk)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    };
    let mut out =
        String::with_capacity(parts.iter().map(String::len).sum::<usize>() + 2 * parts.len() + 2);
    out.push('[');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(part);
    }
    out.push(']');
    out
}

/// The items of a list, `", "`-separated, without brackets.
fn join(values: &[f64]) -> String {
    let mut out = Vec::with_capacity(values.len() * 22);
    let mut buffer = ryu::Buffer::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        write_repr(&mut out, &mut buffer, *v);
    }
    ascii(out)
}

/// The output is ASCII by construction; the check costs one pass.
fn ascii(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `json.dumps(x)` of one float: Python's `float.__repr__` for finite values.
pub fn float_repr(v: f64) -> String {
    let mut out = Vec::with_capacity(24);
    write_repr(&mut out, &mut ryu::Buffer::new(), v);
    ascii(out)
}

/// Appends the repr of `v` to `out`, without allocating.
///
/// Ryū's layout already is Python's for most values: fixed notation when the
/// first digit's exponent is in -5..=15 (`123.45`, `1000.0`, `0.000123`),
/// scientific otherwise (`1.5e-7`). Python switches to scientific one decade
/// earlier (below 1e-4) and writes exponents with a sign and two digits
/// (`1.5e-07`, `1e+16`); only those cases are rewritten.
fn write_repr(out: &mut Vec<u8>, buffer: &mut ryu::Buffer, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"Infinity" } else { b"-Infinity" });
        return;
    }
    let text = buffer.format_finite(v).as_bytes();
    let (sign, body) = match text.split_first() {
        Some((b'-', rest)) => (&text[..1], rest),
        _ => (&text[..0], text),
    };
    out.extend_from_slice(sign);
    if let Some(at) = body.iter().position(|b| *b == b'e') {
        out.extend_from_slice(&body[..at]);
        push_exponent(out, parse_exponent(&body[at + 1..]));
    } else if let Some((first, rest)) = body.strip_prefix(b"0.0000").and_then(<[u8]>::split_first) {
        // 1e-5 <= |v| < 1e-4: d.ddd e-05 in Python.
        out.push(*first);
        if !rest.is_empty() {
            out.push(b'.');
            out.extend_from_slice(rest);
        }
        push_exponent(out, -5);
    } else {
        out.extend_from_slice(body);
    }
}

fn parse_exponent(text: &[u8]) -> i32 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    let value = digits.iter().fold(0i32, |acc, d| {
        acc.saturating_mul(10).saturating_add(i32::from(d - b'0'))
    });
    if negative { -value } else { value }
}

/// `e-07`, `e+16`, `e-324`: a sign and at least two digits, as Python writes them.
fn push_exponent(out: &mut Vec<u8>, exponent: i32) {
    out.push(b'e');
    out.push(if exponent < 0 { b'-' } else { b'+' });
    let magnitude = exponent.unsigned_abs();
    if magnitude >= 100 {
        out.push(b'0' + (magnitude / 100) as u8);
    }
    out.push(b'0' + (magnitude / 10 % 10) as u8);
    out.push(b'0' + (magnitude % 10) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings are what CPython 3.11's `repr(float)` prints.
    #[test]
    fn matches_python_repr() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123.456, "123.456"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (f64::from(0.1f32), "0.10000000149011612"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (123456789.0, "123456789.0"),
            (0.000123, "0.000123"),
            (-1e100, "-1e+100"),
            (100.0, "100.0"),
        ];
        for (v, want) in cases {
            assert_eq!(float_repr(*v), *want, "{v:e}");
        }
        // Exact ties between two shortest candidates: Python rounds half to even.
        for (exact, want) in [
            ("180.995513916015625", "180.99551391601562"),
            ("-16.6704254150390625", "-16.670425415039062"),
        ] {
            assert_eq!(float_repr(exact.parse().unwrap()), want);
        }
        assert_eq!(dumps_floats(&[1.0, f64::NAN, 0.5]), "[1.0, NaN, 0.5]");
        assert_eq!(dumps_floats(&[]), "[]");
    }

    #[test]
    fn parallel_join_equals_serial() {
        let values: Vec<f64> = (0..600_000).map(|i| f64::from(i) * 0.37 - 1e5).collect();
        let serial = format!("[{}]", join(&values));
        assert_eq!(dumps_floats(&values), serial);
    }
}
