//! `r3mes keys add|list|show|export`: the node home's keyring (library:
//! `r3mes_node::keyring`).

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use r3mes_node::keyring::{KeyInfo, Keyring};

use crate::node_cmd::HomeArg;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key from fresh randomness.
    Add(NameArgs),
    /// List every key.
    List(ListArgs),
    /// Show a key's address and public key.
    Show(NameArgs),
    /// Print a key's secret (hex) to stdout.
    Export(NameArgs),
}

#[derive(Args)]
pub struct NameArgs {
    /// The key's name (letters, digits, '-' and '_').
    name: String,
    #[command(flatten)]
    home: HomeArg,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    home: HomeArg,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Add(a) => {
            let info = ring(&a.home).add(&a.name).context("adding a key")?;
            print_key(&info, a.json);
        }
        KeysCommand::Show(a) => {
            let info = ring(&a.home).show(&a.name).context("reading a key")?;
            print_key(&info, a.json);
        }
        KeysCommand::List(a) => {
            let keys = ring(&a.home).list().context("listing keys")?;
            if a.json {
                println!("{}", serde_json::to_string(&keys)?);
            } else {
                for k in &keys {
                    println!("{:<16} {}", k.name, k.address);
                }
            }
        }
        KeysCommand::Export(a) => {
            let secret = ring(&a.home).secret(&a.name).context("reading a key")?;
            let hex = hex::encode(secret.to_bytes());
            if a.json {
                println!(
                    "{}",
                    serde_json::json!({ "name": a.name, "secret_key": hex })
                );
            } else {
                eprintln!(
                    "warning: this is the secret key of {:?}; keep it private",
                    a.name
                );
                println!("{hex}");
            }
        }
    }
    Ok(())
}

fn ring(home: &HomeArg) -> Keyring {
    Keyring::new(home.home().keyring())
}

fn print_key(info: &KeyInfo, json: bool) {
    if json {
        println!("{}", serde_json::json!(info));
    } else {
        println!("name:       {}", info.name);
        println!("address:    {}", info.address);
        println!("public key: {}", info.public_key);
    }
}

/// The secret key `name` of the keyring under `home`.
pub(crate) fn secret_key(
    home: &r3mes_node::home::Home,
    name: &str,
) -> Result<r3mes_chain::SecretKey> {
    Keyring::new(home.keyring())
        .secret(name)
        .with_context(|| format!("key {name:?} of {}", home.keyring().display()))
}
