//! Range plans list exactly the blocks a range read fetches, in its order,
//! without hashing them: checked against a recording reader.
use r3mes_ipfs::reader::{PlannedBlock, RangeReader, plan_range};
use r3mes_ipfs::{AddOptions, Cid, Error, Repo, cids};

fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// The plan must list exactly what a recording range reader fetched.
fn check(repo: &Repo, cid: &Cid, offset: u64, length: Option<u64>) {
    let plan = plan_range(repo.store(), cid, offset, length).expect("plan");
    let mut reader = RangeReader::recording(repo.store());
    let mut out = Vec::new();
    let result = reader.read(cid, offset, length, &mut out);
    let recorded: Vec<PlannedBlock> = reader
        .take_recorded()
        .into_iter()
        .map(|(cid, block)| PlannedBlock {
            cid,
            size: block.len() as u64,
        })
        .collect();
    match result {
        Ok(n) => {
            assert_eq!(plan.len(), n, "offset {offset} length {length:?}");
            assert_eq!(plan.blocks, recorded, "offset {offset} length {length:?}");
            assert_eq!(plan.stats(), reader.stats());
        }
        Err(Error::OffsetPastEnd { .. }) => {
            assert!(plan.is_empty());
            assert_eq!(plan.blocks.len(), 1);
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn plans_match_the_recording_reader() {
    let repo = Repo::in_memory();
    let chunk = 1024;
    let cases = [
        (
            AddOptions {
                chunk_size: chunk,
                ..AddOptions::default()
            },
            0,
        ),
        (
            AddOptions {
                chunk_size: chunk,
                cid_version: 1,
                ..AddOptions::default()
            },
            1,
        ),
    ];
    for (options, seed) in cases {
        // 200 chunks: two levels (174 links per node), a partial last leaf.
        let bytes = data(200 * chunk + 123, seed);
        let root = repo.add_bytes(&bytes, &options).unwrap().root;
        let size = bytes.len() as u64;
        for (offset, length) in [
            (0, None),
            (0, Some(0)),
            (0, Some(1)),
            (1023, Some(2)),
            (1024, Some(1024)),
            (174 * 1024 - 10, Some(20)),
            (size - 1, None),
            (size, None),
            (size + 5, Some(3)),
            (5000, Some(u64::MAX)),
        ] {
            check(&repo, &root, offset, length);
        }
        // A one-leaf file and an empty one.
        let small = repo.add_bytes(b"hello", &options).unwrap().root;
        check(&repo, &small, 1, Some(3));
        let empty = repo.add_bytes(b"", &options).unwrap().root;
        check(&repo, &empty, 0, None);
    }
}

#[test]
fn repeated_leaves_are_listed_each_time() {
    let repo = Repo::in_memory();
    let options = AddOptions {
        chunk_size: 256,
        ..AddOptions::default()
    };
    let root = repo.add_bytes(&[0u8; 256 * 4], &options).unwrap().root;
    let plan = plan_range(repo.store(), &root, 0, None).unwrap();
    assert_eq!(plan.blocks.len(), 5);
    assert_eq!(plan.blocks[1], plan.blocks[4]);
    check(&repo, &root, 0, None);
}

#[test]
fn missing_blocks_and_bad_nodes_are_errors() {
    let repo = Repo::in_memory();
    let absent = cids::raw_cid(cids::sha256_multihash(b"absent"));
    assert!(matches!(
        plan_range(repo.store(), &absent, 0, None),
        Err(Error::BlockNotFound(c)) if c == absent
    ));
    // A dag-pb block that is not UnixFS.
    let cid = repo.block_put(&[], cids::DAG_PB, 1).unwrap();
    assert!(plan_range(repo.store(), &cid, 0, None).is_err());
    // An identity CID of empty data is an empty raw file.
    let probe: Cid = "bafkqaaa".parse().unwrap();
    let plan = plan_range(repo.store(), &probe, 0, None).unwrap();
    assert_eq!((plan.file_size, plan.blocks.len()), (0, 1));
}
