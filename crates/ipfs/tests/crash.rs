//! Crash safety: a process killed with SIGKILL in the middle of adds leaves a
//! repo where every block the index names is intact, every pin names a
//! complete DAG, and earlier adds are all still there.
//!
//! The test binary runs itself as the child that gets killed.

use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use r3mes_ipfs::reader::walk_dag;
use r3mes_ipfs::{AddOptions, Repo, cids};

const CHILD_ENV: &str = "R3MES_CRASH_CHILD_REPO";

/// Endless pseudo-random bytes, slowed down after a while so the kill lands mid-add.
struct SlowStream {
    state: u64,
    served: u64,
}

impl Read for SlowStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.served > 40 << 20 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let n = buf.len().min(64 * 1024);
        for b in &mut buf[..n] {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            *b = self.state as u8;
        }
        self.served += n as u64;
        Ok(n)
    }
}

/// The child: completes some adds (printing their CIDs), then starts one that never ends.
fn child(repo_dir: &Path) {
    let repo = Repo::open(repo_dir).expect("child opens the repo");
    for seed in 1..=3u64 {
        let data: Vec<u8> = (0..700_000u64)
            .map(|i| (i.wrapping_mul(seed) >> 3) as u8)
            .collect();
        let added = repo
            .add_bytes(&data, &AddOptions::default())
            .expect("child add");
        println!("{}", added.root);
    }
    std::fs::write(repo_dir.join("ready"), b"").expect("child signals");
    let mut endless = SlowStream {
        state: 0x9e37_79b9,
        served: 0,
    };
    let _ = repo.add(&mut endless, &AddOptions::default());
}

#[test]
fn sigkill_mid_add_loses_nothing_committed() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_mid_add_loses_nothing_committed",
            "--nocapture",
        ])
        .env(CHILD_ENV, &repo_dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !repo_dir.join("ready").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "child never got ready"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Let the endless add write a few intermediate batches, then kill it.
    std::thread::sleep(Duration::from_millis(600));
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let committed: Vec<_> = text.lines().filter_map(|l| cids::parse(l).ok()).collect();
    assert_eq!(committed.len(), 3, "{text}");

    let pack_bytes = || -> u64 {
        std::fs::read_dir(repo_dir.join("packs"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before_reopen = pack_bytes();
    assert!(
        before_reopen > 40 << 20,
        "the killed add had appended past an intermediate commit: {before_reopen}"
    );

    let repo = Repo::open(&repo_dir).unwrap();
    // Every block the index names hashes to its key. The killed add's batches
    // were committed without fsync, so redb rolled them back, and the pack
    // bytes they had appended were cut off on open: the packs hold exactly the
    // indexed blocks.
    let keys = repo.store().keys().unwrap();
    for (key, _) in &keys {
        let hash = multihash::Multihash::<64>::from_bytes(key).unwrap();
        repo.store().get(&cids::raw_cid(hash)).unwrap();
    }
    let indexed: u64 = keys.iter().map(|(_, size)| size).sum();
    assert_eq!(pack_bytes(), indexed);
    // Every pin names a complete DAG, and the finished adds are pinned and readable.
    let pins = repo.pin_ls().unwrap();
    assert_eq!(pins.len(), 3);
    for pin in &pins {
        walk_dag(repo.store(), &pin.cid, &mut |_, _| Ok(())).unwrap();
    }
    for cid in &committed {
        assert_eq!(repo.cat_bytes(cid, 0, None).unwrap().0.len(), 700_000);
    }
    // The repo keeps working.
    assert!(repo.gc().unwrap().removed.is_empty());
    let again = repo
        .add_bytes(b"after the crash", &AddOptions::default())
        .unwrap();
    assert_eq!(
        repo.cat_bytes(&again.root, 0, None).unwrap().0,
        b"after the crash"
    );
}
