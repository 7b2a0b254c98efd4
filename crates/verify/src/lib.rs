//! r3mes-verify: tolerant verification of miners' gradients, the seed's
//! masking method, by range reads.
//!
//! A validator keeps a secret [`Vault`]: for data chunks it has trained on
//! itself, reference gradient values at secret flat indices and a cosine
//! threshold. When a miner submits a gradient of such a chunk, the
//! [`Verifier`] reads the gradient's header, maps the vault's indices to byte
//! ranges through `r3mes_tensor::GradientIndex`, reads only the IPFS leaves
//! that hold them (each verified against its CID by `r3mes_ipfs`'s range
//! reader), and computes the cosine similarity of the miner's masked vector
//! with the vault values. The [`Report`] carries what `MsgSubmitVerification`
//! needs (`cosine_ppm`, `passed`, the entry's commitment) and what the read
//! cost. Fetched blocks and parsed headers stay in a TTL [`VerifyCache`]
//! whose counters a node exports as metrics.
//!
//! This crate does not sign or send transactions, does not decide which
//! gradients to verify, and keeps no state but its cache.
//!
//! # The byte budget: leaf size and index placement
//!
//! A leaf is the smallest unit a validator can verify against a CID, so a
//! check fetches whole leaves plus the DAG nodes above them (a balanced
//! UnixFS DAG, 174 links per node: each full node on the path is about
//! 8 KiB). The target is at most 1 % of a 64 MiB gradient for 64 vault
//! indices, about 671 KB. Two choices meet it:
//!
//! - **16 KiB leaves** ([`GRADIENT_CHUNK_SIZE`], [`gradient_add_options`];
//!   Kubo's `--chunker=size-16384`, so the CID is still the one `ipfs add`
//!   gives with that chunker). With Kubo's 256 KiB default, three leaves
//!   alone exceed the budget (`r3mes bench verify --chunk-size 262144`
//!   measures about 6.3 %). Smaller leaves cost more DAG nodes: at 4 KiB, 64
//!   scattered leaves need about 47 of the 95 first-level nodes (~376 KiB) on
//!   top of the leaves, and the budget is gone again. 16 KiB gives 4096
//!   leaves under 24 first-level nodes; the DAG's storage overhead stays
//!   under 0.3 %.
//! - **Clustered placement** ([`Placement::default`]: 16 windows of 256
//!   elements, 4 indices in each): windows are drawn uniformly without
//!   replacement from the whole flat vector by a ChaCha20 keystream keyed by
//!   a secret seed, offsets inside a window likewise. A window of 1 KiB of
//!   f32 lies in one leaf 94 % of the time, so a verification reads the root,
//!   the header's leaf, about 17 leaves and at most 16 first-level nodes.
//!
//! Measured (`r3mes bench verify`: 64 MiB protobuf gradient on an embedded
//! repo, 64 indices, 16 entries with fresh seeds, cold cache each): mean
//! 387 KB fetched, 0.58 % of the file, at most 0.60 %, about 30 blocks. The
//! worst case, every window straddling two leaves under distinct nodes, is
//! about 1.1 %, far out in the tail (each straddle has probability 1/16).
//! For comparison, same bench: 64 scattered indices on 16 KiB leaves 1.8 %;
//! on 4 KiB leaves 0.96 % (113 blocks, no margin); windows on 256 KiB
//! leaves 6.3 %; windows on 16 KiB raw leaves (CIDv1) 0.60 %.
//!
//! The check is not weakened where it matters: every element is equally
//! likely to be checked and the miner, who sees neither the seed nor the
//! vault, cannot tell which parts will be; each entry has its own seed.
//! Sixteen independent windows catch a gradient that is wrong in a fraction
//! f of its windows with probability 1 - (1 - f)^16 (f = 25 %: 99 %);
//! whole-gradient fakes (another chunk's gradient, noise, zeros, a stale
//! gradient) move the cosine in every window and fail at once. Scattering
//! 64 single indices would add little: a cosine threshold tolerates a few
//! wrong values either way, and verifications of many chunks over many
//! rounds draw fresh windows each time.
//!
//! The figures assume the miner added its gradient with
//! [`GRADIENT_CHUNK_SIZE`] leaves; a gradient added with larger leaves
//! still verifies, at a higher cost that the [`Report`] shows.

pub mod budget;
pub mod cache;
mod error;
mod fetch;
pub mod generate;
pub mod placement;
pub mod similarity;
pub mod vault;
pub mod verifier;

pub use budget::{GRADIENT_CHUNK_SIZE, gradient_add_options};
pub use cache::{CacheConfig, CacheStats, CacheUsage, VerifyCache};
pub use error::{Error, Result};
pub use generate::{DEFAULT_THRESHOLD_PPM, EntryOptions, entry_from_file};
pub use placement::{Placement, SecretRng};
pub use vault::{ChunkRef, FlatOrder, Vault, VaultEntry};
pub use verifier::{Method, Report, Verifier, VerifierConfig};
