//! The background duties (`r3mes-worker`) inside a running node: after
//! every committed block, the availability responder answers challenges
//! aimed at its key from the node's content store, and the verification
//! duty checks new gradients against the validator's vault. Their signed
//! transactions enter the mempool through the same admission as any
//! client's; a refusal is logged and the worker signs again later.

use std::sync::Arc;

use r3mes_chain::Keeper;
use r3mes_ipfs::ContentStore;
use r3mes_verify::{Vault, Verifier, VerifierConfig, VerifyCache};
use r3mes_worker::{Duties, DutiesConfig, ResponderConfig, VerifierDutyConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::admission::Admission;
use crate::config::DutySettings;
use crate::home::Home;
use crate::init::VALIDATOR_KEY;
use crate::keyring::Keyring;
use crate::{Error, Result};

/// The configured duties, or `None` when the settings ask for none. The
/// verification duty reads through `cache` (the node keeps a clone for its
/// metrics).
pub fn configure(
    home: &Home,
    settings: &DutySettings,
    content: &Arc<dyn ContentStore>,
    cache: &VerifyCache,
) -> Result<Option<Duties>> {
    let ring = Keyring::new(home.keyring());
    let mut config = DutiesConfig::new();
    if let Some(name) = &settings.respond_as {
        config.responder = Some(ResponderConfig::new(
            ring.secret(name)?,
            Arc::clone(content),
        ));
    }
    if let Some(path) = &settings.vault {
        let vault = Vault::load(path)
            .map_err(|e| Error::Config(format!("vault {}: {e}", path.display())))?;
        let name = settings.verify_as.as_deref().unwrap_or(VALIDATOR_KEY);
        let verifier = Verifier::new(
            Arc::clone(content),
            cache.clone(),
            VerifierConfig::default(),
        );
        config.verifier = Some(VerifierDutyConfig {
            key: ring.secret(name)?,
            vault,
            verifier,
        });
    }
    if config.responder.is_none() && config.verifier.is_none() {
        return Ok(None);
    }
    Duties::new(config)
        .map(Some)
        .map_err(|e| Error::Config(format!("duties: {e}")))
}

/// The vault file's modification time, if it has one.
fn modified(path: &std::path::Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Runs `duties` after every height `committed` announces, until `token`
/// is cancelled. When `vault` names the vault file, a changed file is
/// loaded before the next block's work (a validator refreshing its
/// reference values for a new model version); a file that does not load
/// keeps the old vault and is logged.
pub async fn run(
    mut duties: Duties,
    vault: Option<std::path::PathBuf>,
    keeper: Arc<Keeper>,
    admission: Admission,
    mut committed: watch::Receiver<u64>,
    token: CancellationToken,
) -> Result<()> {
    let mut vault_mtime = vault.as_deref().and_then(modified);
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => return Ok(()),
            changed = committed.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
        let height = *committed.borrow_and_update();
        if let Some(path) = &vault {
            let now = modified(path);
            if now != vault_mtime {
                vault_mtime = now;
                match Vault::load(path)
                    .map_err(|e| e.to_string())
                    .and_then(|v| duties.replace_vault(v).map_err(|e| e.to_string()))
                {
                    Ok(()) => tracing::info!(height, "reloaded the vault {}", path.display()),
                    Err(e) => {
                        tracing::warn!(height, "keeping the old vault: {}: {e}", path.display())
                    }
                }
            }
        }
        let report = duties.after_block(&keeper, height).await;
        for error in &report.errors {
            tracing::warn!(height, %error, "duty failed");
        }
        for tx in report.txs {
            match admission.admit(&tx.encode()) {
                Ok(_) => tracing::debug!(height, "duty transaction admitted"),
                Err(status) => {
                    tracing::warn!(height, "duty transaction refused: {}", status.message())
                }
            }
        }
    }
}
