//! The byte budget on a real embedded repo: verifying a 64 MiB
//! protobuf gradient against 64 vault indices fetches at most 1 % of it.

use r3mes_verify::budget::{BudgetConfig, measure};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_indices_of_a_64_mib_gradient_fetch_at_most_one_percent() {
    let config = BudgetConfig {
        trials: 4,
        ..BudgetConfig::default()
    };
    let report = measure(&config).await.unwrap();
    eprintln!(
        "file {} B, mean fetched {} B in {} blocks ({:.3} %), max {:.3} %",
        report.file_size,
        report.mean_bytes_fetched,
        report.mean_blocks_fetched,
        report.mean_ratio * 100.0,
        report.max_ratio * 100.0
    );
    assert!(report.file_size >= 64 << 20);
    assert_eq!(report.indices, 64);
    assert!(report.max_ratio <= 0.01, "{report:#?}");
    // The header's leaf, the root and at least one leaf per window were read.
    assert!(report.sample.blocks_fetched >= 16 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubo_default_leaves_would_break_the_budget() {
    let config = BudgetConfig {
        chunk_size: r3mes_ipfs::DEFAULT_CHUNK_SIZE,
        trials: 1,
        ..BudgetConfig::default()
    };
    let report = measure(&config).await.unwrap();
    assert!(report.max_ratio > 0.01, "{report:#?}");
}
