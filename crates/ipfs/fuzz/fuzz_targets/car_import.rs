//! A hostile CAR file: import never panics, stores nothing unless every block
//! verifies, and reading the roots of what was stored never panics either
//! (hostile DAGs: wrong blocksizes, deep chains, non-file nodes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_ipfs::Repo;

fuzz_target!(|data: &[u8]| {
    let repo = Repo::in_memory();
    match repo.import_car(&mut &data[..], false) {
        Ok(imported) => {
            for root in imported.roots {
                let _ = repo.cat_bytes(&root, 0, Some(1 << 16));
                let _ = repo.cat_bytes(&root, 1000, Some(10));
            }
        }
        Err(_) => assert!(repo.store().keys().map(|k| k.is_empty()).unwrap_or(true)),
    }
});
