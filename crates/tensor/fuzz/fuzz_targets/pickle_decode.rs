//! Fuzzes the safe pickle reader: any bytes give a gradient or an error,
//! never a panic or an allocation past the (small) limits; whatever decodes
//! keeps those limits and flattens to exactly its element count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_tensor::{Limits, Order, flatten, pickle};


fuzz_target!(|data: &[u8]| {
    let limits = Limits::tight();
    if let Ok(gradient) = pickle::decode(data, &limits) {
        assert!(gradient.tensors.len() as u64 <= limits.max_tensors);
        assert!(gradient.elements() <= limits.max_elements);
        assert_eq!(
            flatten(&gradient, Order::Canonical).len() as u64,
            gradient.elements()
        );
    }
});
