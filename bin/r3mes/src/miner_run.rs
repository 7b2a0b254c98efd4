//! `r3mes miner run`: the miner's engine. Every round it asks the node for
//! its shard, fetches the shard's chunks from IPFS (each checked against its
//! CID), loads the model version the round trains from (checked against
//! the chain, see `r3mes_client::models`), runs every chunk through the
//! `ChunkProcessor`, and submits the mean gradient: add it to IPFS, file it
//! at `/gradients/window_R/miner_ADDR`, solve the proof of work, sign and
//! send it over gRPC. Meanwhile it answers the availability challenges of
//! its key from the same IPFS store.
//!
//! Faults: a computed gradient is written to the spool directory (fsynced)
//! before anything is sent. If IPFS or the node is unreachable it is retried
//! with exponential backoff (up to 10 s apart); a restart submits what the
//! spool holds first. A gradient the node refuses for good (its round
//! closed, say) is moved to `spool/rejected/` with the reason.
//!
//! Output: one JSON line per submitted round on stdout; progress (a bar with
//! tokens/s and loss on a terminal, log lines otherwise) on stderr.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use r3mes_chain::gradients::solve_pow;
use r3mes_chain::proto::{ChunkData, GradientMetadata, MsgSubmitGradient, Round};
use r3mes_chain::{Address, SecretKey};
use r3mes_client::content::{fetch_file, list_directory};
use r3mes_client::models::{ModelFiles, model_for_round};
use r3mes_client::{NodeClient, Responder};
use r3mes_ipfs::{AddSource, ContentStore, cids};
use r3mes_ipfs_http::ShutdownSignals;
use r3mes_kubo::KuboClient;
use r3mes_miner::{Backbone, ChunkGradient, LoraAdapters, Model, UpdateInfo};
use r3mes_tensor::Format;
use serde::{Deserialize, Serialize};

/// Largest chunk file fetched (a chunk file is 4,396 bytes).
const MAX_CHUNK_FILE_BYTES: u64 = 64 * 1024;
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How the engine runs.
pub struct RunOptions {
    pub key: SecretKey,
    pub node: String,
    pub api: String,
    pub spool: PathBuf,
    pub batching: crate::miner_cmd::Batching,
    pub rounds: Option<u64>,
    pub max_chunks: Option<usize>,
    pub poll: Duration,
    pub respond: bool,
    /// Delete the gradient (MFS entry and pin) right after submitting it:
    /// a withholding miner, to show availability slashing.
    pub withhold: bool,
    /// Where to report submitted rounds instead of stdout and stderr (the
    /// devnet's live view).
    pub events: Option<tokio::sync::mpsc::UnboundedSender<MinerEvent>>,
}

/// A submitted round, as the devnet's live view sees it.
#[derive(Debug, Clone, Serialize)]
pub struct MinerEvent {
    pub miner: String,
    pub round: u64,
    pub shard: u64,
    pub chunks: usize,
    pub model_version: u64,
    pub loss: f64,
    pub tokens_per_second: f64,
    pub ipfs_hash: String,
    pub block_height: u64,
    pub chunk_to_ack_seconds: f64,
    pub train_seconds: f64,
    pub submit_seconds: f64,
    pub bytes: u64,
}

impl RunOptions {
    fn say(&self, text: impl AsRef<str>) {
        if self.events.is_none() {
            eprintln!("{}", text.as_ref());
        } else {
            tracing::info!("{}", text.as_ref());
        }
    }
}

/// What a spooled gradient is, beside its bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SpoolEntry {
    round: u64,
    shard: u64,
    chunks: Vec<(u64, String)>,
    backbone_hash: String,
    element_count: u64,
    loss: f64,
    model_version: u64,
    tokens_per_second: f64,
    /// Unix time (ms) when the chunks were in hand.
    received_unix_ms: u64,
    /// Unix time (ms) when the gradient was spooled.
    #[serde(default)]
    spooled_unix_ms: u64,
}

/// The spool: `round_R.pb` + `round_R.json` per pending gradient,
/// `submitted` (one round per line) for the rounds done.
struct Spool {
    dir: PathBuf,
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

impl Spool {
    fn open(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(dir.join("rejected"))
            .with_context(|| format!("creating the spool {}", dir.display()))?;
        Ok(Self { dir })
    }

    fn submitted(&self) -> Result<BTreeSet<u64>> {
        let path = self.dir.join("submitted");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn mark_submitted(&self, round: u64) -> Result<()> {
        let mut done = self.submitted()?;
        done.insert(round);
        let text: String = done.iter().map(|r| format!("{r}\n")).collect();
        write_synced(&self.dir.join("submitted"), text.as_bytes())
    }

    fn paths(&self, round: u64) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("round_{round}.pb")),
            self.dir.join(format!("round_{round}.json")),
        )
    }

    fn put(&self, entry: &SpoolEntry, gradient: &[u8]) -> Result<()> {
        let (pb, json) = self.paths(entry.round);
        write_synced(&pb, gradient)?;
        // The description last: an entry without it is not complete.
        write_synced(&json, &serde_json::to_vec_pretty(entry)?)
    }

    /// Complete pending entries, oldest round first.
    fn pending(&self) -> Result<Vec<(SpoolEntry, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in std::fs::read_dir(&self.dir)
            .with_context(|| format!("listing {}", self.dir.display()))?
        {
            let path = item?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let entry: SpoolEntry = match std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| serde_json::from_slice(&b).map_err(anyhow::Error::from))
            {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(
                        "ignoring the unreadable spool entry {}: {e}",
                        path.display()
                    );
                    continue;
                }
            };
            let (pb, _) = self.paths(entry.round);
            let bytes = std::fs::read(&pb).with_context(|| format!("reading {}", pb.display()))?;
            out.push((entry, bytes));
        }
        out.sort_by_key(|(e, _)| e.round);
        Ok(out)
    }

    fn remove(&self, round: u64) {
        let (pb, json) = self.paths(round);
        let _ = std::fs::remove_file(json);
        let _ = std::fs::remove_file(pb);
    }

    fn reject(&self, round: u64, reason: &str) {
        let (pb, json) = self.paths(round);
        let rejected = self.dir.join("rejected");
        let _ = std::fs::write(rejected.join(format!("round_{round}.reason")), reason);
        let _ = std::fs::rename(&pb, rejected.join(format!("round_{round}.pb")));
        let _ = std::fs::rename(&json, rejected.join(format!("round_{round}.json")));
    }
}

/// Whether a failure may go away by itself (a daemon down, a timeout).
fn is_transient(e: &anyhow::Error) -> bool {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<r3mes_client::Error>() {
            return match c {
                r3mes_client::Error::Connect { .. } => true,
                r3mes_client::Error::Refused { code, .. } => matches!(
                    code,
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::Unknown
                        | tonic::Code::Cancelled
                ),
                r3mes_client::Error::Content { .. } => true,
                _ => false,
            };
        }
        if cause.downcast_ref::<r3mes_ipfs::Error>().is_some() {
            return true;
        }
    }
    false
}

/// Exponential backoff from 250 ms to [`MAX_BACKOFF`].
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(250))
    }
    async fn wait(&mut self, what: &str, e: &anyhow::Error) {
        tracing::warn!("{what}: {e:#}; retrying in {:?}", self.0);
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(MAX_BACKOFF);
    }
}

/// The engine.
struct Engine {
    options: RunOptions,
    address: Address,
    store: KuboClient,
    spool: Spool,
    model: Option<(u64, Arc<Model>)>,
    /// How long the last round's training took.
    last_training: Option<Duration>,
}

pub async fn run(options: RunOptions) -> Result<()> {
    let address = options.key.public_key().address();
    let store =
        KuboClient::new(&options.api).with_context(|| format!("IPFS API {}", options.api))?;
    let spool = Spool::open(options.spool.clone())?;
    let mut signals = ShutdownSignals::install()?;
    let client = connect(&options.node, &mut signals).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let responder = options.respond.then(|| {
        let content: Arc<dyn ContentStore> = Arc::new(store.clone());
        let responder = Responder::new(client.clone(), options.key.clone(), content);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            responder
                .run(Duration::from_millis(500), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        })
    });
    options.say(format!(
        "mining as {address} against {} and {} (spool {})",
        options.node,
        options.api,
        options.spool.display()
    ));
    let mut engine = Engine {
        options,
        address,
        store,
        spool,
        model: None,
        last_training: None,
    };
    let outcome = tokio::select! {
        r = engine.mine(&client) => r,
        name = signals.recv() => {
            engine.options.say(format!("stopping the miner ({name}); spooled gradients are submitted on the next start"));
            Ok(None)
        }
    };
    if let Ok(Some(last_height)) = &outcome {
        // Keep answering until no challenge of our last gradient can come.
        tokio::select! {
            r = engine.drain_challenges(&client, *last_height) => r?,
            _ = signals.recv() => {}
        }
    }
    let _ = stop_tx.send(true);
    if let Some(task) = responder
        && let Ok(report) = task.await
    {
        engine.options.say(format!(
            "challenges answered: {}, unanswered: {}, failed: {}",
            report.answered, report.unanswered, report.failed
        ));
    }
    outcome.map(|_| ())
}

async fn connect(url: &str, signals: &mut ShutdownSignals) -> Result<NodeClient> {
    let mut backoff = Backoff::new();
    loop {
        match NodeClient::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                let e = anyhow::Error::from(e);
                tokio::select! {
                    () = backoff.wait("connecting to the node", &e) => {}
                    _ = signals.recv() => bail!("stopped before the node was reachable"),
                }
            }
        }
    }
}

impl Engine {
    /// Rounds until `--rounds` are submitted (never, without it); returns
    /// the height of the last submission.
    async fn mine(&mut self, client: &NodeClient) -> Result<Option<u64>> {
        let mut submitted = 0u64;
        let mut last_height = None;
        let mut backoff = Backoff::new();
        loop {
            if let Some(n) = self.options.rounds
                && submitted >= n
            {
                return Ok(last_height);
            }
            match self.step(client).await {
                Ok(Some(height)) => {
                    submitted += 1;
                    last_height = Some(height);
                    backoff = Backoff::new();
                }
                Ok(None) => tokio::time::sleep(self.options.poll).await,
                Err(e) if is_transient(&e) => backoff.wait("mining", &e).await,
                Err(e) => return Err(e),
            }
        }
    }

    /// One pass: submit what the spool holds, else train the current round
    /// if it is new. `Some(height)` when a gradient landed.
    async fn step(&mut self, client: &NodeClient) -> Result<Option<u64>> {
        for (entry, bytes) in self.spool.pending()? {
            if let Some(height) = self.submit_or_reject(client, &entry, bytes).await? {
                return Ok(Some(height));
            }
        }
        let round = client
            .round(None)
            .await?
            .ok_or_else(|| anyhow!("the node has no round yet"))?;
        let height = client.status().await?.height;
        if self.spool.submitted()?.contains(&round.round_id) || height >= round.end_height {
            return Ok(None);
        }
        if round.dataset_hash.is_empty() {
            tracing::debug!("round {}: no approved dataset yet", round.round_id);
            return Ok(None);
        }
        // Training that cannot finish before the round closes is wasted:
        // wait for the next round instead (unless no round is long enough).
        let block_ms = client.params().await?.block_time_ms;
        let left = Duration::from_millis((round.end_height - height).saturating_mul(block_ms));
        let whole = Duration::from_millis(
            round
                .end_height
                .saturating_sub(round.start_height)
                .saturating_mul(block_ms),
        );
        if let Some(last) = self.last_training
            && left < last.mul_f64(1.5)
            && whole >= last.mul_f64(1.5)
        {
            tracing::debug!(
                "round {}: {left:?} left, training took {last:?}: waiting for the next round",
                round.round_id
            );
            return Ok(None);
        }
        let started = Instant::now();
        let (entry, bytes) = self.train(client, &round).await?;
        self.last_training = Some(started.elapsed());
        self.submit_or_reject(client, &entry, bytes).await
    }

    /// Submits a spooled gradient; a refusal that will not go away moves it
    /// to `spool/rejected/` (`Ok(None)`), a transient failure is an error.
    async fn submit_or_reject(
        &mut self,
        client: &NodeClient,
        entry: &SpoolEntry,
        bytes: Vec<u8>,
    ) -> Result<Option<u64>> {
        match self.submit(client, entry, bytes).await {
            Ok(height) => Ok(Some(height)),
            Err(e) if is_transient(&e) => Err(e),
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::warn!(
                    "round {}: the node refused the gradient: {reason}",
                    entry.round
                );
                self.options.say(format!(
                    "round {}: gradient rejected: {reason}",
                    entry.round
                ));
                self.spool.reject(entry.round, &reason);
                Ok(None)
            }
        }
    }

    async fn load_model(
        &mut self,
        client: &NodeClient,
        round: &Round,
    ) -> Result<(u64, Arc<Model>)> {
        let record = model_for_round(client, round).await?;
        if let Some((version, model)) = &self.model
            && *version == record.version
        {
            return Ok((*version, model.clone()));
        }
        let files = ModelFiles::fetch(&self.store, &record).await?;
        let backbone = Backbone::from_safetensors(&files.backbone)
            .with_context(|| format!("loading model version {}'s backbone", record.version))?;
        if backbone.hash() != files.backbone_sha256() {
            bail!(
                "model version {}: the backbone loads to hash {}, metadata.json says {}",
                record.version,
                backbone.hash(),
                files.backbone_sha256()
            );
        }
        let lora = LoraAdapters::from_safetensors(&files.adapters, backbone.config())
            .with_context(|| format!("loading model version {}'s adapters", record.version))?;
        let model = Arc::new(Model::new(backbone, lora)?);
        self.options.say(format!(
            "round {}: training from model version {}",
            round.round_id, record.version
        ));
        self.model = Some((record.version, model.clone()));
        Ok((record.version, model))
    }

    /// Fetches the round's shard, trains on it, spools the gradient.
    async fn train(&mut self, client: &NodeClient, round: &Round) -> Result<(SpoolEntry, Vec<u8>)> {
        let (round_id, shard, _) = client
            .shard_assignment(&self.address, Some(round.round_id))
            .await?;
        let dataset = cids::from_bytes(&round.dataset_hash)
            .map_err(|e| anyhow!("round {round_id}'s dataset hash: {e}"))?
            .to_string();
        let record = client
            .shards(&dataset)
            .await?
            .into_iter()
            .find(|s| s.shard_id == shard)
            .ok_or_else(|| anyhow!("dataset {dataset} has no shard {shard}"))?;
        let shard_cid =
            cids::from_bytes(&record.data_hash).map_err(|e| anyhow!("shard {shard}'s CID: {e}"))?;
        let mut entries: Vec<(u64, r3mes_ipfs::DirEntry)> = list_directory(&self.store, &shard_cid)
            .await?
            .into_iter()
            .filter_map(|e| {
                let id = e.name.strip_prefix("chunk_")?.parse().ok()?;
                Some((id, e))
            })
            .collect();
        entries.sort_by_key(|(id, _)| *id);
        let params = client.params().await?;
        let limit = (params.max_chunks_per_gradient as usize)
            .min(self.options.max_chunks.unwrap_or(usize::MAX));
        entries.truncate(limit);
        if entries.is_empty() {
            bail!("shard {shard} ({shard_cid}) holds no chunk files");
        }
        let mut chunks = Vec::with_capacity(entries.len());
        for (id, e) in &entries {
            let bytes = fetch_file(&self.store, &e.cid, MAX_CHUNK_FILE_BYTES).await?;
            let chunk = r3mes_dataset::decode_chunk(&bytes)
                .with_context(|| format!("chunk {id} of shard {shard} ({})", e.cid))?;
            chunks.push((*id, e.cid.to_string(), chunk));
        }
        let received = Instant::now();
        let received_unix_ms = unix_ms();
        let (version, model) = self.load_model(client, round).await?;
        let processor = self.options.batching.processor(model.backbone().config())?;
        let bar = progress(chunks.len() as u64, round_id);
        let mut gradients = Vec::with_capacity(chunks.len());
        let started = Instant::now();
        for (i, (_, _, chunk)) in chunks.iter().enumerate() {
            let tokens: Vec<u32> = chunk.tokens().iter().map(|t| u32::from(*t)).collect();
            let mask = chunk.mask().to_vec();
            let model = model.clone();
            let proc = processor.clone();
            let g = tokio::task::spawn_blocking(move || {
                proc.process_chunk(&model, &tokens, Some(&mask))
            })
            .await
            .map_err(|e| anyhow!("the training task failed: {e}"))??;
            let rate = ((i + 1) * r3mes_miner::FIXED_CHUNK_SIZE) as f64
                / started.elapsed().as_secs_f64().max(1e-9);
            match &bar {
                Some(bar) => {
                    bar.set_message(format!("loss {:.4}  {rate:.0} tokens/s", g.loss));
                    bar.inc(1);
                }
                None => tracing::info!(
                    "round {round_id}: chunk {}/{} loss {:.4} ({rate:.0} tokens/s)",
                    i + 1,
                    chunks.len(),
                    g.loss
                ),
            }
            gradients.push(g);
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let tokens_per_second = (chunks.len() * r3mes_miner::FIXED_CHUNK_SIZE) as f64
            / started.elapsed().as_secs_f64().max(1e-9);
        let mean = ChunkGradient::mean(&gradients)
            .ok_or_else(|| anyhow!("the chunks' gradients do not line up"))?;
        let update = mean.to_update(
            model.backbone().hash(),
            &UpdateInfo {
                miner_id: self.address.to_string(),
                data_shard_id: shard,
                window_id: round_id,
                timestamp: (received_unix_ms / 1000) as i64,
            },
        );
        let gradient = update.to_gradient(Format::Protobuf)?;
        let element_count = gradient.elements();
        let bytes = r3mes_tensor::encode(&gradient, Format::Protobuf)?;
        let entry = SpoolEntry {
            round: round_id,
            shard,
            chunks: chunks
                .iter()
                .map(|(id, cid, _)| (*id, cid.clone()))
                .collect(),
            backbone_hash: model.backbone().hash().to_string(),
            element_count,
            loss: mean.loss,
            model_version: version,
            tokens_per_second,
            received_unix_ms,
            spooled_unix_ms: unix_ms(),
        };
        self.spool.put(&entry, &bytes)?;
        tracing::debug!("round {round_id}: trained in {:?}", received.elapsed());
        Ok((entry, bytes))
    }

    /// Adds, files, proves and sends a spooled gradient; the height it landed at.
    async fn submit(&self, client: &NodeClient, entry: &SpoolEntry, bytes: Vec<u8>) -> Result<u64> {
        let byte_size = bytes.len() as u64;
        let added = self
            .store
            .add(
                AddSource::Bytes(bytes.into()),
                &r3mes_verify::gradient_add_options(),
            )
            .await?;
        crate::tx_cmd::file_in_mfs(&self.store, &added.cid, entry.round, &self.address).await?;
        let bits = client.params().await?.pow_difficulty_bits;
        let (miner, cid, round) = (self.address, added.cid, entry.round);
        let pow_nonce =
            tokio::task::spawn_blocking(move || solve_pow(&miner, &cid, round, bits, 0))
                .await
                .map_err(|e| anyhow!("the proof-of-work task failed: {e}"))?;
        let msg = MsgSubmitGradient {
            miner: self.address.to_string(),
            ipfs_hash: added.cid.to_string(),
            metadata: Some(GradientMetadata {
                round_id: entry.round,
                shard_id: entry.shard,
                chunks: entry
                    .chunks
                    .iter()
                    .map(|(id, cid)| ChunkData {
                        chunk_id: *id,
                        data_hash: cid.clone(),
                        token_count: r3mes_miner::FIXED_CHUNK_SIZE as u64,
                        shard_id: entry.shard,
                        window_id: entry.round,
                    })
                    .collect(),
                gpu_architecture: "cpu".into(),
                backbone_hash: entry.backbone_hash.clone(),
                format: "protobuf".into(),
                byte_size,
                element_count: entry.element_count,
            }),
            pow_nonce,
        };
        let answer = match client.submit_gradient(&self.options.key, msg).await {
            Ok(answer) => answer,
            Err(e) => {
                // A node that died after committing but before answering
                // holds it already: that is a success.
                match client.gradient(&added.cid.to_string()).await {
                    Ok(Some(g)) if g.miner == self.address.as_bytes() => {
                        r3mes_node::proto::SubmitGradientResponse {
                            ipfs_hash: added.cid.to_string(),
                            block_height: g.block_height,
                            ..Default::default()
                        }
                    }
                    _ => return Err(e.into()),
                }
            }
        };
        self.spool.mark_submitted(entry.round)?;
        self.spool.remove(entry.round);
        let acked_ms = unix_ms();
        let event = MinerEvent {
            miner: self.address.to_string(),
            round: entry.round,
            shard: entry.shard,
            chunks: entry.chunks.len(),
            model_version: entry.model_version,
            loss: entry.loss,
            tokens_per_second: entry.tokens_per_second,
            ipfs_hash: answer.ipfs_hash.clone(),
            block_height: answer.block_height,
            chunk_to_ack_seconds: acked_ms.saturating_sub(entry.received_unix_ms) as f64 / 1000.0,
            train_seconds: entry.spooled_unix_ms.saturating_sub(entry.received_unix_ms) as f64
                / 1000.0,
            submit_seconds: acked_ms.saturating_sub(entry.spooled_unix_ms) as f64 / 1000.0,
            bytes: byte_size,
        };
        if self.options.withhold {
            self.withhold(entry.round, &added.cid).await;
        }
        match &self.options.events {
            Some(events) => {
                let _ = events.send(event);
            }
            None => println!("{}", serde_json::to_string(&event)?),
        }
        Ok(answer.block_height)
    }

    /// Deletes a submitted gradient from this miner's store (what a
    /// withholding miner does): its MFS entry and its pin, so the store's
    /// next GC drops it. (No GC here: on a store shared with others, as in
    /// the devnet, a GC every round stalls everyone's reads and writes.)
    async fn withhold(&self, round: u64, cid: &r3mes_ipfs::Cid) {
        let path = format!("/gradients/window_{round}/miner_{}", self.address);
        let _ = self.store.files_rm(&path, true, true).await;
        let _ = self.store.pin_rm(cid).await;
    }

    /// Waits until challenges of a gradient included at `height` can no
    /// longer be issued or answered, and none is open.
    async fn drain_challenges(&self, client: &NodeClient, height: u64) -> Result<()> {
        let window = client.params().await?.response_window;
        let until = height.saturating_add(window).saturating_add(2);
        loop {
            let now = client.status().await?.height;
            if now >= until && client.open_challenges(&self.address).await?.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(self.options.poll).await;
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn progress(len: u64, round: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len).with_style(
        indicatif::ProgressStyle::with_template(
            "round {prefix} [{bar:30}] {pos}/{len} chunks  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(round.to_string());
    Some(bar)
}
