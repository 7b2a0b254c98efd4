//! The `r3mes ipfs` command contract, run as a user runs it: stdout, stderr,
//! exit codes, and that a failed command leaves nothing half-written.

use std::path::Path;
use std::process::{Command, Output};

fn r3mes(args: &[&str], home: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_r3mes"))
        .args(args)
        .env("R3MES_HOME", home)
        .env_remove("R3MES_KUBO_BIN")
        .output()
        .expect("the r3mes binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "failed: {}", stderr(&out));
    out
}

fn fails(out: Output, needle: &str) -> String {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        stdout(&out)
    );
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    err
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn add_prints_only_the_kubo_cid_and_cat_reads_ranges() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("hello.txt");
    std::fs::write(&file, b"hello world").unwrap();
    let f = file.to_str().unwrap();

    let out = ok(r3mes(&["ipfs", "add", f], home.path()));
    assert_eq!(
        stdout(&out),
        "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
    );
    let out = ok(r3mes(
        &["ipfs", "add", "--cid-version", "1", f],
        home.path(),
    ));
    assert_eq!(
        stdout(&out),
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    );
    let out = ok(r3mes(
        &["ipfs", "add", "--raw-leaves", "--only-hash", f],
        home.path(),
    ));
    assert!(stdout(&out).starts_with("bafkrei"));

    let big = home.path().join("big.bin");
    let content = pseudo_random(3 * 262_144 + 17);
    std::fs::write(&big, &content).unwrap();
    let cid = stdout(&ok(r3mes(
        &["ipfs", "add", big.to_str().unwrap()],
        home.path(),
    )));
    let out = ok(r3mes(
        &[
            "ipfs", "cat", &cid, "--offset", "260000", "--length", "4096", "--stats",
        ],
        home.path(),
    ));
    assert_eq!(out.stdout, &content[260_000..264_096]);
    // Root and the two leaves the range straddles: 14 bytes of dag-pb framing per leaf.
    let stats = stderr(&out);
    assert!(stats.starts_with("blocks=3 bytes="), "{stats}");
    let bytes: u64 = stats.trim().rsplit('=').next().unwrap().parse().unwrap();
    assert!(bytes > 2 * 262_144 && bytes < 2 * 262_144 + 400, "{stats}");
    let out = ok(r3mes(&["ipfs", "cat", &cid], home.path()));
    assert_eq!(out.stdout, content);
}

#[test]
fn pins_gc_and_car_round_trip() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("data.bin");
    std::fs::write(&file, pseudo_random(600_000)).unwrap();
    let f = file.to_str().unwrap();
    let cid = stdout(&ok(r3mes(&["ipfs", "add", "--pin=false", f], home.path())));
    assert_eq!(stdout(&ok(r3mes(&["ipfs", "pin", "ls"], home.path()))), "");

    let car = home.path().join("data.car");
    ok(r3mes(
        &["ipfs", "export", &cid, "-o", car.to_str().unwrap()],
        home.path(),
    ));
    ok(r3mes(
        &["ipfs", "pin", "add", &cid, "--name", "keep"],
        home.path(),
    ));
    assert_eq!(
        stdout(&ok(r3mes(&["ipfs", "pin", "ls"], home.path()))),
        format!("{cid} recursive keep")
    );
    assert_eq!(stdout(&ok(r3mes(&["ipfs", "gc"], home.path()))), "");
    ok(r3mes(&["ipfs", "pin", "rm", &cid], home.path()));
    let removed = stdout(&ok(r3mes(&["ipfs", "gc"], home.path())));
    assert_eq!(
        removed.lines().count(),
        4,
        "3 leaves and the root: {removed}"
    );
    fails(r3mes(&["ipfs", "cat", &cid], home.path()), "not found");

    let out = ok(r3mes(
        &["ipfs", "import", car.to_str().unwrap()],
        home.path(),
    ));
    assert_eq!(stdout(&out), cid);
    assert_eq!(
        ok(r3mes(&["ipfs", "cat", &cid], home.path())).stdout,
        std::fs::read(&file).unwrap()
    );
}

#[test]
fn bad_input_is_a_clear_error_and_changes_nothing() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("x.bin");
    std::fs::write(&file, b"some bytes").unwrap();
    let cid = stdout(&ok(r3mes(
        &["ipfs", "add", file.to_str().unwrap()],
        home.path(),
    )));

    fails(
        r3mes(&["ipfs", "cat", "QmNotACid"], home.path()),
        "invalid CID",
    );
    fails(
        r3mes(
            &[
                "ipfs",
                "cat",
                "bafyreigdmqpykrgxyaxtlafqpqhzrb7qy2rh75nldvfd4tucqmqqme5yje",
            ],
            home.path(),
        ),
        "unsupported codec",
    );
    fails(
        r3mes(&["ipfs", "cat", &cid, "--offset", "11"], home.path()),
        "past the end",
    );
    fails(
        r3mes(&["ipfs", "add", "/no/such/file"], home.path()),
        "no such file",
    );
    fails(
        r3mes(
            &["ipfs", "add", "--chunker", "rabin", file.to_str().unwrap()],
            home.path(),
        ),
        "unsupported chunker",
    );
    fails(
        r3mes(
            &["ipfs", "add", "--cid-version", "7", file.to_str().unwrap()],
            home.path(),
        ),
        "CID version",
    );
    fails(
        r3mes(
            &[
                "ipfs",
                "pin",
                "rm",
                &cid,
                "--repo",
                home.path().join("other").to_str().unwrap(),
            ],
            home.path(),
        ),
        "not pinned",
    );

    // A CAR whose block does not match its CID: rejected, nothing stored.
    let car = home.path().join("x.car");
    ok(r3mes(
        &["ipfs", "export", &cid, "-o", car.to_str().unwrap()],
        home.path(),
    ));
    let mut bytes = std::fs::read(&car).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    std::fs::write(&car, &bytes).unwrap();
    let fresh = home.path().join("fresh");
    let fresh = fresh.to_str().unwrap();
    fails(
        r3mes(
            &["ipfs", "import", car.to_str().unwrap(), "--repo", fresh],
            home.path(),
        ),
        "does not match its CID",
    );
    fails(
        r3mes(&["ipfs", "cat", &cid, "--repo", fresh], home.path()),
        "not found",
    );

    // A failed export leaves no file behind.
    let out_car = home.path().join("missing.car");
    fails(
        r3mes(
            &[
                "ipfs",
                "export",
                "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
                "-o",
                out_car.to_str().unwrap(),
                "--repo",
                fresh,
            ],
            home.path(),
        ),
        "not found",
    );
    assert!(!out_car.exists());
    assert!(!home.path().join("missing.car.tmp").exists());
}

#[test]
fn corrupt_pack_bytes_are_reported_with_the_cid() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("x.bin");
    std::fs::write(&file, pseudo_random(1000)).unwrap();
    let cid = stdout(&ok(r3mes(
        &["ipfs", "add", file.to_str().unwrap()],
        home.path(),
    )));
    let pack = home.path().join("ipfs/packs/00000001.pack");
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    fails(
        r3mes(&["ipfs", "cat", &cid], home.path()),
        &format!("block {cid} is corrupt"),
    );
}

#[test]
fn a_repo_held_by_another_process_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let repo_dir = home.path().join("ipfs");
    let _held = r3mes_ipfs::Repo::open(&repo_dir).unwrap();
    let file = home.path().join("x.bin");
    std::fs::write(&file, b"abc").unwrap();
    fails(
        r3mes(&["ipfs", "add", file.to_str().unwrap()], home.path()),
        "locked by another process",
    );
    // --only-hash needs no repo.
    ok(r3mes(
        &["ipfs", "add", "--only-hash", file.to_str().unwrap()],
        home.path(),
    ));
}

#[test]
fn files_commands_keep_the_seed_layout_in_the_mfs() {
    let home = tempfile::tempdir().expect("tempdir");
    let h = home.path();
    let file = h.join("gradient.bin");
    std::fs::write(&file, pseudo_random(70_000)).expect("write");
    let cid = stdout(&ok(r3mes(
        &["ipfs", "add", file.to_str().expect("utf-8")],
        h,
    )))
    .trim()
    .to_string();
    ok(r3mes(
        &["ipfs", "files", "mkdir", "-p", "/gradients/window_7"],
        h,
    ));
    let to = "/gradients/window_7/miner_remes1abc";
    ok(r3mes(
        &["ipfs", "files", "cp", &format!("/ipfs/{cid}"), to],
        h,
    ));
    let listed = stdout(&ok(r3mes(
        &["ipfs", "files", "ls", "-l", "/gradients/window_7"],
        h,
    )));
    assert_eq!(
        listed.trim(),
        format!("miner_remes1abc\t{cid}\t70000\tfile")
    );
    let stat = stdout(&ok(r3mes(&["ipfs", "files", "stat", to, "--json"], h)));
    let stat: serde_json::Value = serde_json::from_str(&stat).expect("json");
    assert_eq!(stat["Hash"], cid.as_str());
    assert_eq!(stat["Type"], "file");
    let read = ok(r3mes(&["ipfs", "files", "read", to], h));
    assert_eq!(read.stdout, pseudo_random(70_000));
    // The MFS root keeps the content through a GC even after unpinning.
    ok(r3mes(&["ipfs", "pin", "rm", &cid], h));
    ok(r3mes(&["ipfs", "gc"], h));
    assert_eq!(
        ok(r3mes(&["ipfs", "files", "read", to], h)).stdout.len(),
        70_000
    );
    fails(r3mes(&["ipfs", "files", "rm", "/gradients"], h), "use -r");
    fails(
        r3mes(&["ipfs", "files", "ls", "/nope"], h),
        "file does not exist",
    );
    ok(r3mes(&["ipfs", "files", "rm", "-r", "/gradients"], h));
    let root = stdout(&ok(r3mes(&["ipfs", "files", "flush"], h)));
    assert_eq!(
        root.trim(),
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    );
}
