//! Availability-proof verification never panics on hostile answers, and a
//! genuine proof that is then altered never verifies with changed blocks.
//!
//! The first byte picks the mode. Mode "blocks": the rest is draws and
//! length-prefixed blocks, and the root is the CID of the first block (so the
//! verifier gets past the root into decoding). Mode "file": the rest is file
//! content imported with a fuzzer-chosen chunker, whose proof is built, must
//! verify, and is then mutated by fuzzer-chosen edits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use r3mes_ipfs::cids;
use r3mes_ipfs::importer::{ImportParams, VecSink, import_bytes};
use r3mes_ipfs::proof::{ProofLimits, build_proof, verify_proof};
use r3mes_ipfs::{BlockStore, Cid, MemoryBlockStore};

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (head, tail) = data.split_at(n);
    *data = tail;
    head
}

fn byte(data: &mut &[u8]) -> u8 {
    take(data, 1).first().copied().unwrap_or(0)
}

fn word(data: &mut &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let got = take(data, 8);
    b[..got.len()].copy_from_slice(got);
    u64::from_le_bytes(b)
}

fn limits() -> ProofLimits {
    ProofLimits {
        max_blocks: 512,
        max_total_bytes: 1 << 22,
        max_depth: 16,
        max_draws: 16,
    }
}

fn blocks_mode(mode: u8, mut data: &[u8]) {
    let draws: Vec<u64> = (0..byte(&mut data) % 20).map(|_| word(&mut data)).collect();
    let mut blocks = Vec::new();
    while !data.is_empty() {
        let len = u16::from_le_bytes([byte(&mut data), byte(&mut data)]) as usize;
        blocks.push(take(&mut data, len).to_vec());
    }
    let first = blocks.first().cloned().unwrap_or_default();
    let hash = cids::sha256_multihash(&first);
    let root = match mode % 3 {
        0 => cids::dag_pb_cid(0, hash),
        1 => cids::dag_pb_cid(1, hash),
        _ => cids::raw_cid(hash),
    };
    if let Ok(v) = verify_proof(&root, &draws, &blocks, &limits()) {
        assert_eq!(v.draws.len(), draws.len());
        for d in &v.draws {
            assert!(v.filesize == 0 || d.leaf_range.contains(&d.offset));
        }
    }
}

fn file_mode(mode: u8, mut data: &[u8]) {
    let params = ImportParams {
        chunk_size: 16 + usize::from(byte(&mut data)) * 4,
        max_links: 2 + usize::from(byte(&mut data) % 8),
        raw_leaves: mode & 1 == 1,
        cid_version: mode & 1,
    };
    let draws: Vec<u64> = (0..1 + byte(&mut data) % 8)
        .map(|_| word(&mut data))
        .collect();
    let edits = take(&mut data, 24).to_vec();
    let content = take(&mut data, 1 << 16);
    let mut sink = VecSink::default();
    let Ok(imported) = import_bytes(content, &params, &mut sink) else {
        return;
    };
    let store = MemoryBlockStore::new();
    let Ok(mut batch) = store.batch() else { return };
    for (cid, block) in &sink.0 {
        let _ = batch.put(cid, block);
    }
    let _ = batch.commit(false);
    let root: Cid = imported.root;
    let mut blocks = build_proof(&store, &root, &draws).expect("proof of a stored file");
    verify_proof(&root, &draws, &blocks, &limits()).expect("genuine proof verifies");
    let mut original = blocks.clone();
    original.sort();
    for edit in edits.chunks(3) {
        let n = blocks.len();
        let (op, a, b) = (edit[0] % 4, edit.get(1).copied(), edit.get(2).copied());
        let i = usize::from(a.unwrap_or(0)) % n.max(1);
        match op {
            0 if n > 0 && !blocks[i].is_empty() => {
                let at = usize::from(b.unwrap_or(0)) % blocks[i].len();
                blocks[i][at] ^= 1;
            }
            1 if n > 0 => {
                blocks.remove(i);
            }
            2 if n > 0 => blocks.push(blocks[i].clone()),
            3 if n > 0 => blocks.swap(i, usize::from(b.unwrap_or(0)) % n),
            _ => {}
        }
    }
    let result = verify_proof(&root, &draws, &blocks, &limits());
    let mut now = blocks.clone();
    now.sort();
    if now != original {
        assert!(result.is_err(), "changed blocks verified");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let mode = byte(&mut data);
    if mode & 0x80 == 0 {
        blocks_mode(mode, data);
    } else {
        file_mode(mode, data);
    }
});
