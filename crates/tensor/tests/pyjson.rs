//! `pyjson::dumps_floats` prints exactly what CPython's `json.dumps` printed for
//! the same floats (`fixtures/pyjson/gen.py`: any bit patterns, f32 values with
//! exact decimal ties, NaN, infinities, signed zeros).

#[test]
fn dumps_matches_cpython_byte_for_byte() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pyjson");
    let bytes = std::fs::read(format!("{dir}/floats.bin")).unwrap();
    let expected = std::fs::read_to_string(format!("{dir}/floats.json")).unwrap();
    let values: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), 6000);
    let ours = r3mes_tensor::pyjson::dumps_floats(&values);
    if ours != expected {
        let (a, b): (Vec<&str>, Vec<&str>) =
            (ours.split(", ").collect(), expected.split(", ").collect());
        let first = a.iter().zip(&b).position(|(x, y)| x != y);
        panic!(
            "differs at item {first:?}: ours {:?} python {:?}",
            first.map(|i| a[i]),
            first.map(|i| b[i])
        );
    }
}
