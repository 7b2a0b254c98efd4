//! State-transition properties of the MFS: a random sequence of `mkdir`,
//! `cp` and `rm` (with and without `parents`/`recursive`) must succeed or fail
//! exactly as a plain in-memory model of the tree says, and leave the root CID
//! that building the model's final tree directly gives. Also: persistence of
//! the root across reopening, and GC keeping exactly what the MFS reaches.

use std::collections::BTreeMap;

use proptest::prelude::*;
use r3mes_ipfs::{AddOptions, Cid, Directory, Repo, WriteOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(usize),
    Dir(BTreeMap<String, Node>),
}

#[derive(Debug, Clone)]
enum Op {
    Mkdir(Vec<String>, bool),
    Cp(usize, Vec<String>),
    Rm(Vec<String>, bool),
}

fn path_text(parts: &[String]) -> String {
    parts.iter().map(|p| format!("/{p}")).collect()
}

/// The directory at `parts` in the model, if there is one.
fn dir_mut<'a>(
    root: &'a mut BTreeMap<String, Node>,
    parts: &[String],
) -> Option<&'a mut BTreeMap<String, Node>> {
    let mut cur = root;
    for part in parts {
        match cur.get_mut(part) {
            Some(Node::Dir(children)) => cur = children,
            _ => return None,
        }
    }
    Some(cur)
}

/// Applies `op` to the model; `false` when the MFS must refuse it.
fn apply(model: &mut BTreeMap<String, Node>, op: &Op) -> bool {
    match op {
        Op::Mkdir(parts, parents) => {
            let (name, parent) = parts.split_last().expect("non-root");
            let mut cur = &mut *model;
            for part in parent {
                if !cur.contains_key(part) {
                    if !parents {
                        return false;
                    }
                    cur.insert(part.clone(), Node::Dir(BTreeMap::new()));
                }
                match cur.get_mut(part) {
                    Some(Node::Dir(children)) => cur = children,
                    _ => return false,
                }
            }
            match cur.get(name) {
                Some(Node::Dir(_)) => *parents,
                Some(Node::File(_)) => false,
                None => {
                    cur.insert(name.clone(), Node::Dir(BTreeMap::new()));
                    true
                }
            }
        }
        Op::Cp(file, parts) => {
            let (name, parent) = parts.split_last().expect("non-root");
            match dir_mut(model, parent) {
                Some(dir) if !dir.contains_key(name) => {
                    dir.insert(name.clone(), Node::File(*file));
                    true
                }
                _ => false,
            }
        }
        Op::Rm(parts, recursive) => {
            let (name, parent) = parts.split_last().expect("non-root");
            match dir_mut(model, parent) {
                Some(dir) => match dir.get(name) {
                    Some(Node::Dir(_)) if !recursive => false,
                    Some(_) => {
                        dir.remove(name);
                        true
                    }
                    None => false,
                },
                None => false,
            }
        }
    }
}

/// The model's tree built directly as directory nodes.
fn build(children: &BTreeMap<String, Node>, files: &[(Cid, u64)]) -> (Cid, u64) {
    let mut dir = Directory::new();
    for (name, node) in children {
        let (cid, tsize) = match node {
            Node::File(k) => files[*k],
            Node::Dir(sub) => build(sub, files),
        };
        dir.insert(name, cid, tsize).expect("name");
    }
    let encoded = dir.encode("/").expect("encode");
    (encoded.cid, encoded.cumulative_size)
}

fn parts() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(prop_oneof!["a", "b", "c"], 1..=3)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (parts(), any::<bool>()).prop_map(|(p, parents)| Op::Mkdir(p, parents)),
        (0..3usize, parts()).prop_map(|(f, p)| Op::Cp(f, p)),
        (parts(), any::<bool>()).prop_map(|(p, r)| Op::Rm(p, r)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_operations_give_the_directly_built_root(ops in proptest::collection::vec(op(), 0..24)) {
        let repo = Repo::in_memory();
        let files: Vec<(Cid, u64)> = (0..3)
            .map(|k| {
                let added = repo
                    .add_bytes(format!("file-{k}").as_bytes(), &AddOptions::default())
                    .expect("add");
                (added.root, added.dag_size)
            })
            .collect();
        let mfs = repo.mfs();
        let mut model = BTreeMap::new();
        for op in &ops {
            let expected = apply(&mut model, op);
            let got = match op {
                Op::Mkdir(p, parents) => mfs.mkdir(&path_text(p), *parents, None),
                Op::Cp(f, p) => mfs.cp(&format!("/ipfs/{}", files[*f].0), &path_text(p), false),
                Op::Rm(p, recursive) => mfs.rm(&path_text(p), *recursive, false),
            };
            prop_assert_eq!(got.is_ok(), expected, "{:?}: {:?}", op, got);
        }
        let (root, _) = build(&model, &files);
        prop_assert_eq!(mfs.root().expect("root"), root);
        prop_assert_eq!(mfs.stat("/").expect("stat").hash, root);
    }
}

#[test]
fn root_persists_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = {
        let repo = Repo::open(dir.path()).expect("open");
        let mfs = repo.mfs();
        mfs.mkdir("/gradients/window_1000/miner_abc123", true, None)
            .expect("mkdir");
        let options = WriteOptions {
            create: true,
            ..WriteOptions::default()
        };
        mfs.write(
            "/gradients/window_1000/miner_abc123/gradient.pb",
            &mut std::io::Cursor::new(vec![7u8; 300_000]),
            &options,
        )
        .expect("write");
        mfs.root().expect("root")
    };
    let repo = Repo::open(dir.path()).expect("reopen");
    let mfs = repo.mfs();
    assert_eq!(mfs.root().expect("root"), root);
    let data = mfs
        .read_bytes("/gradients/window_1000/miner_abc123/gradient.pb", 0, None)
        .expect("read");
    assert_eq!(data, vec![7u8; 300_000]);
}

#[test]
fn gc_keeps_mfs_content_until_it_is_removed() {
    let repo = Repo::in_memory();
    let unpinned = AddOptions {
        pin: false,
        ..AddOptions::default()
    };
    let content: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    let kept = repo.add_bytes(&content, &unpinned).expect("add");
    let loose = repo.add_bytes(b"loose", &unpinned).expect("add");
    let mfs = repo.mfs();
    mfs.mkdir("/checkpoints", false, None).expect("mkdir");
    mfs.cp(&format!("/ipfs/{}", kept.root), "/checkpoints/c1", false)
        .expect("cp");
    let report = repo.gc().expect("gc");
    let loose_key = loose.root.hash().to_bytes();
    assert!(
        report
            .removed
            .iter()
            .any(|c| c.hash().to_bytes() == loose_key)
    );
    // Earlier roots (the empty one, the one with an empty /checkpoints) go too.
    assert_eq!(
        mfs.read_bytes("/checkpoints/c1", 0, None).expect("read"),
        content
    );
    mfs.rm("/checkpoints/c1", false, false).expect("rm");
    let report = repo.gc().expect("gc");
    // Root + 3 leaves of the file, and the MFS root and /checkpoints of before.
    let file_key = kept.root.hash().to_bytes();
    assert!(
        report
            .removed
            .iter()
            .any(|c| c.hash().to_bytes() == file_key)
    );
    assert_eq!(report.removed.len(), 4 + 2, "{:?}", report.removed);
    assert!(repo.cat_bytes(&kept.root, 0, None).is_err());
    assert!(mfs.stat("/checkpoints").is_ok());
}

#[test]
fn bad_input_never_panics() {
    let repo = Repo::in_memory();
    let mfs = repo.mfs();
    for path in [
        "", "x", "//", "/a//b", "/./a", "/../a", "/a\0", "/ipfs/", "/ipfs/x",
    ] {
        let _ = mfs.mkdir(path, true, None);
        let _ = mfs.stat(path);
        let _ = mfs.ls(path, true);
        let _ = mfs.rm(path, true, true);
        let _ = mfs.cp(path, "/x", true);
        let _ = mfs.cp("/", path, true);
        let _ = mfs.mv(path, "/y");
        let _ = mfs.flush(path);
        let _ = mfs.read_bytes(path, 0, None);
    }
    assert!(mfs.cp("/ipfs/not-a-cid", "/x", false).is_err());
    assert!(mfs.cp("/ipns/example.com", "/x", false).is_err());
}
