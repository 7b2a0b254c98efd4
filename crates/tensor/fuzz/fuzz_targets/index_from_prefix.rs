//! Fuzzes `GradientIndex::from_prefix`: the first input byte picks how much of
//! the rest is the prefix of a file made of the rest. It must ask for more
//! bytes (within the file), fail, or give an index whose every element lies in
//! the data; an index built from a prefix promises that the whole file
//! decodes, to the values the index points at.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_tensor::index::IndexOrNeedMore;
use r3mes_tensor::{Format, GradientIndex, Limits, Order, flatten, protobuf, safetensors_io};


fuzz_target!(|data: &[u8]| {
    let Some((&fraction, file)) = data.split_first() else {
        return;
    };
    let len = file.len() as u64;
    let cut = file.len() * usize::from(fraction) / 255;
    let index = match GradientIndex::from_prefix(&file[..cut], len, &Limits::tight()) {
        Ok(IndexOrNeedMore::Index(index)) => index,
        Ok(IndexOrNeedMore::NeedMore(n)) => {
            assert!(
                n > cut as u64 && n <= len,
                "asked for {n} bytes with {cut} of {len}"
            );
            return;
        }
        Err(_) => return,
    };
    assert!(index.header_len() <= cut as u64);
    assert_eq!(index.file_len(), len);
    let gradient = match index.format() {
        Format::Protobuf => protobuf::decode(file, &Limits::tight()),
        Format::Safetensors => safetensors_io::decode(file, &Limits::tight()),
        other => panic!("index of a {other:?} file"),
    }
    .expect("a file whose header indexes decodes");
    for order in [Order::Canonical, Order::File] {
        let flat = flatten(&gradient, order);
        assert_eq!(flat.len() as u64, index.elements());
        for (i, want) in flat.iter().enumerate().take(4096) {
            let location = index.locate(i as u64, order).expect("index in range");
            let range = location.range();
            assert!(range.start >= index.header_len() && range.end <= len);
            let got = location
                .value(&file[range.start as usize..range.end as usize])
                .expect("element bytes");
            assert_eq!(got.to_bits(), want.to_bits());
        }
    }
});
