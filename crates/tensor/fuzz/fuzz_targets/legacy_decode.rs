//! Fuzzes the legacy `gradient.GradientPackage` decoder: any bytes give a
//! gradient or an error, never a panic or an allocation past the (small)
//! limits; whatever decodes converts to r3mes' protobuf with the same
//! file-order flat vector.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_tensor::{Limits, Order, flatten, legacy, protobuf};


fuzz_target!(|data: &[u8]| {
    if let Ok(gradient) = legacy::decode(data, &Limits::tight()) {
        let converted = protobuf::encode(&gradient).expect("a decoded gradient encodes");
        let again =
            protobuf::decode(&converted, &Limits::default()).expect("a converted gradient decodes");
        let bits = |g: &r3mes_tensor::Gradient| {
            flatten(g, Order::File)
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(&again), bits(&gradient));
        assert_eq!(again.metadata, gradient.metadata);
    }
});
