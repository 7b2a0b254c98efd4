//! Legacy `gradient.GradientPackage` files written by Python's protobuf
//! runtime (`fixtures/legacy/gen.py`) decode to the expected vectors, bit for bit.

use r3mes_tensor::{Format, Limits, Order, decode, flatten};

fn read_f64(path: &str) -> Vec<u64> {
    std::fs::read(path)
        .expect("expected vector")
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")).to_bits())
        .collect()
}

#[test]
fn python_written_packages_decode_exactly() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/legacy");
    for case in ["engine_package", "empty_package"] {
        let bytes = std::fs::read(format!("{dir}/{case}.pb")).unwrap();
        let gradient = decode(&bytes, None, &Limits::default()).unwrap();
        assert_eq!(gradient.format, Format::LegacyProtobuf, "{case}");
        for (order, suffix) in [(Order::Canonical, "f64"), (Order::File, "file.f64")] {
            let ours: Vec<u64> = flatten(&gradient, order)
                .iter()
                .map(|v| v.to_bits())
                .collect();
            assert_eq!(
                ours,
                read_f64(&format!("{dir}/{case}.{suffix}")),
                "{case} {suffix}"
            );
        }
    }
    let bytes = std::fs::read(format!("{dir}/engine_package.pb")).unwrap();
    let gradient = decode(&bytes, None, &Limits::default()).unwrap();
    assert_eq!(gradient.metadata["miner_id"], "remes1qxy");
    assert_eq!(gradient.metadata["window_id"], "42");
    assert_eq!(gradient.metadata["note"], "ç");
}
