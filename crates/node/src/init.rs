//! `node init`: a fresh home with a config file, a keyring holding the
//! local validator key and dev account keys, and a genesis that funds and
//! stakes them with the seed's default parameters.

use std::time::{SystemTime, UNIX_EPOCH};

use r3mes_chain::genesis::{Genesis, GenesisAccount, GenesisFile};
use r3mes_chain::params::Params;

use crate::config::NodeConfig;
use crate::home::Home;
use crate::keyring::{KeyInfo, Keyring};
use crate::{Error, Result};

/// Name of the local validator's key in the keyring.
pub const VALIDATOR_KEY: &str = "validator";
/// Balance of every genesis account, uremes.
pub const DEV_BALANCE: u128 = 1_000_000_000_000;
/// Stake of every genesis account, uremes.
pub const DEV_STAKE: u128 = 1_000_000_000;

/// What `init` is asked to write.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The chain id.
    pub chain_id: String,
    /// Dev accounts `dev1..=devN` besides the validator.
    pub dev_accounts: u32,
    /// The node's config (its block time also sets the keeper's).
    pub config: NodeConfig,
    /// Keeper parameters; `None` gives the defaults for the block time.
    pub params: Option<Params>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chain_id: "r3mes-local-1".into(),
            dev_accounts: 3,
            config: NodeConfig::default(),
            params: None,
        }
    }
}

/// What `init` wrote.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// The validator key.
    pub validator: KeyInfo,
    /// The dev account keys.
    pub dev_accounts: Vec<KeyInfo>,
    /// The chain id.
    pub chain_id: String,
}

/// Writes a fresh home at `home`; fails if it already has a genesis or a
/// config file, so an existing chain is never overwritten.
pub fn init(home: &Home, options: &InitOptions) -> Result<InitReport> {
    for path in [home.genesis(), home.config()] {
        if path.exists() {
            return Err(Error::Config(format!(
                "{} already exists: the home is initialised",
                path.display()
            )));
        }
    }
    options.config.validate()?;
    std::fs::create_dir_all(home.root()).map_err(|e| Error::io(home.root(), e))?;
    let ring = Keyring::new(home.keyring());
    let dev_names: Vec<String> = (1..=options.dev_accounts)
        .map(|i| format!("dev{i}"))
        .collect();
    // Refuse before creating anything, so a failed init leaves no keys.
    for name in std::iter::once(VALIDATOR_KEY).chain(dev_names.iter().map(String::as_str)) {
        if ring.show(name).is_ok() {
            return Err(Error::Keyring(format!("key {name:?} already exists")));
        }
    }
    let validator = ring.add(VALIDATOR_KEY)?;
    let dev_accounts = dev_names
        .iter()
        .map(|name| ring.add(name))
        .collect::<Result<Vec<_>>>()?;

    let params = options
        .params
        .clone()
        .unwrap_or_else(|| Params::default_for_block_time(options.config.block_time_ms));
    let accounts = std::iter::once(&validator)
        .chain(&dev_accounts)
        .map(|k| GenesisAccount {
            address: k.address.clone(),
            balance: DEV_BALANCE.to_string(),
            stake: DEV_STAKE.to_string(),
        })
        .collect();
    let file = GenesisFile {
        chain_id: options.chain_id.clone(),
        genesis_time_ms: now_ms(),
        params,
        accounts,
        validators: vec![validator.address.clone()],
    };
    // Validate before writing anything a later start would trust.
    Genesis::from_file(file.clone())?;
    let mut json =
        serde_json::to_string_pretty(&file).map_err(|e| Error::Config(format!("genesis: {e}")))?;
    json.push('\n');
    std::fs::write(home.genesis(), json).map_err(|e| Error::io(&home.genesis(), e))?;
    options.config.save(&home.config())?;
    Ok(InitReport {
        validator,
        dev_accounts,
        chain_id: options.chain_id.clone(),
    })
}

/// Wall-clock time, ms since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
