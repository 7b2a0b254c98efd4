//! Fuzzes the adapters and training-state decoders: any bytes give a file
//! or an error, never a panic; whatever decodes re-encodes and decodes to
//! the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_aggregate::{AdapterFile, TrainingState};

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = AdapterFile::parse(data) {
        let bytes = file.to_safetensors().expect("a parsed file encodes");
        assert_eq!(AdapterFile::parse(&bytes).expect("re-parses"), file);
    }
    if let Ok(state) = TrainingState::parse(data) {
        let bytes = state.to_safetensors().expect("a parsed state encodes");
        assert_eq!(TrainingState::parse(&bytes).expect("re-parses"), state);
    }
});
