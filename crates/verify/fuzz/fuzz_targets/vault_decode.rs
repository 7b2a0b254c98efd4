//! Arbitrary bytes through `Vault::from_slice`: never panics, and whatever
//! decodes is a valid vault that re-encodes and decodes to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_verify::Vault;

fuzz_target!(|data: &[u8]| {
    if let Ok(vault) = Vault::from_slice(data) {
        let bytes = vault.to_vec().expect("a decoded vault is valid");
        let again = Vault::from_slice(&bytes).expect("an encoded vault decodes");
        assert_eq!(again, vault);
        for entry in &vault.entries {
            let _ = entry.commitment();
        }
    }
});
