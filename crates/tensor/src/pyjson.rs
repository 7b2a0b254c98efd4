//! Floats as Python's `json.dumps` writes them: `repr(float)` digits
//! (shortest round-trip, ties to even), `NaN`/`Infinity`/`-Infinity`, and
//! `", "` between list items. `r3mes gradient decode --json` prints exactly
//! what the seed's Python helper printed for the Go keeper.
//!
//! Digits come from Ryū (the `ryu` crate), which picks the same shortest
//! digits as CPython's `repr` (David Gay's algorithm), including rounding an
//! exact tie to even; only the layout differs, and that is redone here.

/// `json.dumps(list_of_floats)`.
pub fn dumps_floats(values: &[f64]) -> String {
    let parts = format_parts(values);
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

/// Writes `json.dumps(list_of_floats)` to `out` without building the whole
/// string (what `decode --json` prints).
pub fn dump_floats_to(values: &[f64], out: &mut impl std::io::Write) -> std::io::Result<()> {
    out.write_all(b"[")?;
    for (i, part) in format_parts(values).iter().enumerate() {
        if i > 0 {
            out.write_all(b", ")?;
        }
        out.write_all(part.as_bytes())?;
    }
    out.write_all(b"]")
}

/// The items, `", "`-separated, in consecutive parts formatted on every core.
fn format_parts(values: &[f64]) -> Vec<String> {
    const PER_THREAD_MIN: usize = 1 << 18;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    if values.len() < 2 * PER_THREAD_MIN || threads == 1 {
        return vec![join(values)];
    }
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
}

/// The items of a list, `", "`-separated, without brackets.
fn join(values: &[f64]) -> String {
    let mut out = String::with_capacity(values.len() * 22);
    let mut buffer = ryu::Buffer::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_repr(&mut out, &mut buffer, *v);
    }
    out
}

/// `json.dumps(x)` of one float: Python's `float.__repr__` for finite values.
pub fn float_repr(v: f64) -> String {
    let mut out = String::with_capacity(24);
    write_repr(&mut out, &mut ryu::Buffer::new(), v);
    out
}

/// Appends the repr of `v` to `out`, without allocating.
///
/// Ryū's layout already is Python's for most values: fixed notation when the
/// first digit's exponent is in -5..=15 (`123.45`, `1000.0`, `0.000123`),
/// scientific otherwise (`1.5e-7`). Python switches to scientific one decade
/// earlier (below 1e-4) and writes exponents with a sign and two digits
/// (`1.5e-07`, `1e+16`); only those cases are rewritten.
fn write_repr(out: &mut String, buffer: &mut ryu::Buffer, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let text = buffer.format_finite(v);
    let (sign, body) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    out.push_str(sign);
    if let Some((mantissa, exponent)) = body.split_once('e') {
        out.push_str(mantissa);
        push_exponent(out, parse_exponent(exponent.as_bytes()));
    } else if let Some(digits) = body.strip_prefix("0.0000").filter(|d| !d.is_empty()) {
        // 1e-5 <= |v| < 1e-4: d.ddd e-05 in Python.
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        push_exponent(out, -5);
    } else {
        out.push_str(body);
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
fn push_exponent(out: &mut String, exponent: i32) {
    out.push('e');
    out.push(if exponent < 0 { '-' } else { '+' });
    let magnitude = exponent.unsigned_abs();
    if magnitude < 10 {
        out.push('0');
    }
    // At most 3 digits: |exponent| <= 324.
    let mut digits = [0u8; 3];
    let mut n = 0;
    let mut rest = magnitude;
    loop {
        digits[n] = b'0' + (rest % 10) as u8;
        n += 1;
        rest /= 10;
        if rest == 0 || n == digits.len() {
            break;
        }
    }
    for d in digits[..n].iter().rev() {
        out.push(char::from(*d));
    }
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
        let mut streamed = Vec::new();
        dump_floats_to(&values, &mut streamed).unwrap();
        assert_eq!(streamed, serial.as_bytes());
    }
}
