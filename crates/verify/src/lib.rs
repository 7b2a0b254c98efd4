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
//! UnixFS DAG, 174 links per node: each node on the path is about 8 KiB).
//! The target is at most 1 % of a 64 MiB gradient for 64 vault indices,
//! about 671 KB. Two choices meet it:
//!
//! - **16 KiB leaves** ([`GRADIENT_CHUNK_SIZE`], Kubo's
//!   `--chunker=size-16384`; the CID is still the one `ipfs add` gives with
//!   that chunker). With Kubo's 256 KiB default, three leaves alone exceed the
//!   budget. Smaller leaves cost more DAG nodes: at 4 KiB, 64 scattered
//!   leaves need about 47 of the 95 first-level nodes (~376 KiB) on top of
//!   the leaves, and the budget is gone again. 16 KiB gives 4096 leaves under
//!   24 first-level nodes; storage overhead of the DAG stays under 0.3 %.
//! - **Clustered placement** ([`Placement`], 16 windows of 1024 elements, 4
//!   indices in each): windows are drawn uniformly without replacement from
//!   the whole flat vector by a ChaCha20 keystream keyed by a secret seed,
//!   offsets inside a window likewise. Each verification touches about 16-20
//!   leaves and at most 16 first-level nodes: about 0.5 % of the file.
//!
//! The check is not weakened where it matters: every element is equally
//! likely to be checked and the miner, who sees neither the seed nor the
//! vault, cannot tell which parts will be; a different entry (fresh seed) is
//! used per chunk. Sixteen independent windows catch a gradient that is
//! wrong in a fraction f of its windows with probability 1 - (1 - f)^16
//! (f = 25 %: 99 %); whole-gradient fakes (another chunk's gradient, noise,
//! zeros, a scaled or stale gradient) move the cosine on every window and
//! fail at once. Scattering 64 single indices would add little: a cosine
//! threshold tolerates a few wrong values either way, and verifications of
//! many chunks over many rounds draw fresh windows each time.
//!
//! `budget::measure` (and `r3mes bench verify`) measures the ratio on a real
//! embedded repo.

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
pub use cache::{CacheConfig, CacheStats, VerifyCache};
pub use error::{Error, Result};
pub use generate::{DEFAULT_THRESHOLD_PPM, EntryOptions, entry_from_file};
pub use placement::{Placement, SecretRng};
pub use vault::{ChunkRef, FlatOrder, Vault, VaultEntry};
pub use verifier::{Method, Report, Verifier, VerifierConfig};
