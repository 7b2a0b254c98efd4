//! A short devnet run (2 honest miners, 1 withholding, 2 rounds) as issue 8
//! asks: every honest gradient on chain and verified, the withholding miner
//! slashed and no honest one, expired records collected, the report written,
//! and a second run on the same home resumes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{json, ok, r3mes};

#[test]
fn a_short_devnet_counts_what_the_issue_asks_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("devnet-home");
    let run = |rounds: &str| {
        r3mes(dir.path())
            .args([
                "devnet",
                "--miners",
                "2",
                "--withholding",
                "1",
                "--rounds",
                rounds,
            ])
            .args(["--round-length", "60", "--block-time-ms", "200", "--home"])
            .arg(&home)
            .args(["--grpc-port", "0", "--ipfs-port", "0"])
            .args(["--gateway-port", "0", "--metrics-port", "0"])
            .output()
            .unwrap()
    };
    let out = ok(run("2"));
    assert!(out.contains("report: "), "{out}");
    let work = home.join("devnet");
    let summary = json(&std::fs::read_to_string(work.join("summary.json")).unwrap());
    assert_eq!(summary["honest_submitted"], 4, "{summary}");
    assert_eq!(summary["honest_on_chain"], 4, "{summary}");
    assert_eq!(summary["honest_verified"], 4, "{summary}");
    assert_eq!(summary["honest_slashed"], 0, "{summary}");
    assert_eq!(summary["withholding_submitted"], 2, "{summary}");
    assert!(
        summary["withholding_slashed"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert!(
        summary["gradient_records_expired"].as_u64().unwrap() >= 1,
        "{summary}"
    );
    assert!(
        summary["model_versions"].as_u64().unwrap() >= 2,
        "{summary}"
    );
    let report = std::fs::read_to_string(work.join("report.md")).unwrap();
    assert!(report.contains("| round | gradients |"), "{report}");
    for plot in ["loss.svg", "bytes.svg"] {
        let svg = std::fs::read_to_string(work.join(plot)).unwrap();
        assert!(svg.starts_with("<svg"), "{plot}");
    }
    // A second run resumes: the same chain, one more round.
    let out = ok(run("1"));
    assert!(!out.contains("initialised"), "{out}");
    let summary = json(&std::fs::read_to_string(work.join("summary.json")).unwrap());
    assert_eq!(summary["honest_submitted"], 2, "{summary}");
    assert_eq!(summary["honest_on_chain"], 2, "{summary}");
}
