//! Crash consistency of the state store: a child process commits blocks,
//! stages one more, and exits without closing the store (no destructor
//! runs, so the app-hash index is never checkpointed and the staged block
//! is lost, as in a crash). Reopened, the store is exactly at the child's
//! last committed block, with its app hash, rebuilt index and all.

use std::path::Path;
use std::process::Command;

use r3mes_chain::apphash;
use r3mes_chain::state::State;

const CHILD_ENV: &str = "R3MES_CRASH_CHILD";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A block's writes: puts, then deletes.
type Writes = (Vec<(Vec<u8>, Vec<u8>)>, Vec<Vec<u8>>);

/// Key/value pairs written by block `height` (overwrites and deletes of
/// earlier blocks' keys included).
fn writes(height: u64) -> Writes {
    let puts = (0..50u64)
        .map(|i| {
            let key =
                r3mes_chain::crypto::sha256(&[height.to_be_bytes(), i.to_be_bytes()].concat());
            (
                key[..12].to_vec(),
                vec![(height + i) as u8; 40 + (i as usize % 7)],
            )
        })
        .collect();
    let deletes = (0..5u64)
        .map(|i| {
            let earlier = height.saturating_sub(1);
            let key =
                r3mes_chain::crypto::sha256(&[earlier.to_be_bytes(), i.to_be_bytes()].concat());
            key[..12].to_vec()
        })
        .collect();
    (puts, deletes)
}

fn commit_block(s: &State, height: u64) -> [u8; 32] {
    let mut b = s.begin_block(height).expect("begin");
    let (puts, deletes) = writes(height);
    for (k, v) in &puts {
        b.put(k, v);
    }
    for k in &deletes {
        b.delete(k);
    }
    b.commit().expect("commit")
}

/// The child: commits blocks from the store's height + 1 to `CRASH_TO`,
/// printing each app hash, stages one more block and exits at once.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let to: u64 = std::env::var("CRASH_TO")
        .expect("CRASH_TO")
        .parse()
        .expect("number");
    let s = State::open(Path::new(&path)).expect("open");
    for h in s.height().expect("height") + 1..=to {
        let hash = commit_block(&s, h);
        println!("committed {h} {}", hex(&hash));
    }
    let mut staged = s.begin_block(to + 1).expect("begin");
    staged.put(b"never-committed", b"lost");
    std::process::exit(3);
}

fn run_child(path: &Path, to: u64) -> (u64, String) {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .env("CRASH_TO", to.to_string())
        .output()
        .expect("run child");
    assert_eq!(out.status.code(), Some(3), "child did not crash as planned");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("committed "))
        .expect("child committed blocks");
    let (h, hash) = last.split_once(' ').expect("height and hash");
    (h.parse().expect("height"), hash.to_owned())
}

#[test]
fn a_crash_keeps_every_committed_block_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    // A first life that closes cleanly (its index is checkpointed).
    {
        let s = State::open(&path).expect("open");
        for h in 1..=4 {
            commit_block(&s, h);
        }
    }
    // Two crashed lives in a row: the second starts from a stale index.
    for to in [9, 13] {
        let (height, hash) = run_child(&path, to);
        assert_eq!(height, to);
        let s = State::open(&path).expect("reopen after crash");
        assert_eq!(s.height().expect("height"), to);
        assert_eq!(hex(&s.app_hash().expect("app hash")), hash);
        assert_eq!(
            s.recompute_app_hash().expect("recompute"),
            s.app_hash().expect("hash")
        );
        assert_eq!(s.get(b"never-committed").expect("get"), None);
    }
    // The store goes on from there, and its hashes match a store that
    // never crashed.
    let reference = State::in_memory().expect("memory");
    let mut expected = apphash::empty_root();
    for h in 1..=14 {
        expected = commit_block(&reference, h);
    }
    let s = State::open(&path).expect("reopen");
    assert_eq!(commit_block(&s, 14), expected);
}
