//! `r3mes ipfs files ...`: the Mutable File System, where the seed's layout
//! (`/models/v1/...`, `/gradients/window_N/miner_A`, `/datasets/shards/...`)
//! lives; against the repo or a daemon's API (Kubo's `ipfs files`).

use std::io::Write;

use anyhow::Result;
use clap::Subcommand;
use r3mes_ipfs::{ListEntry, NodeStat};

use crate::ipfs::{Backend, Target};

#[derive(Subcommand)]
pub enum FilesCommand {
    /// List a directory.
    Ls {
        /// MFS path.
        #[arg(default_value = "/")]
        path: String,
        /// With type, size and CID.
        #[arg(short, long)]
        long: bool,
        #[command(flatten)]
        target: Target,
    },
    /// CID, size, cumulative size, blocks and type of a path.
    Stat {
        /// MFS path.
        path: String,
        /// Print JSON (Kubo's shape).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Make a directory.
    Mkdir {
        /// MFS path.
        path: String,
        /// Make missing parents too.
        #[arg(short, long)]
        parents: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Copy `/ipfs/CID` or an MFS path to an MFS path.
    Cp {
        /// Source.
        from: String,
        /// Destination.
        to: String,
        /// Make missing parents too.
        #[arg(short, long)]
        parents: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Move an MFS entry.
    Mv {
        /// Source.
        from: String,
        /// Destination.
        to: String,
        #[command(flatten)]
        target: Target,
    },
    /// Remove an MFS entry.
    Rm {
        /// MFS path.
        path: String,
        /// Remove directories and what they hold.
        #[arg(short, long)]
        recursive: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Write a file's bytes to stdout.
    Read {
        /// MFS path.
        path: String,
        #[command(flatten)]
        target: Target,
    },
    /// The CID of a path (the root by default).
    Flush {
        /// MFS path.
        #[arg(default_value = "/")]
        path: String,
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(command: FilesCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        FilesCommand::Ls { path, long, target } => {
            let entries: Vec<ListEntry> = match target.backend()? {
                Backend::Local(repo) => repo.mfs().ls(&path, long)?,
                Backend::Remote(client, rt) => rt.block_on(client.files_ls(&path, long))?,
            };
            for e in entries {
                match (long, e.kind, e.hash) {
                    (true, Some(kind), Some(hash)) => writeln!(
                        out,
                        "{}\t{hash}\t{}\t{}",
                        e.name,
                        e.size.unwrap_or(0),
                        kind.as_str()
                    )?,
                    _ => writeln!(out, "{}", e.name)?,
                }
            }
        }
        FilesCommand::Stat { path, json, target } => {
            let stat: NodeStat = match target.backend()? {
                Backend::Local(repo) => repo.mfs().stat(&path)?,
                Backend::Remote(client, rt) => rt.block_on(client.files_stat(&path))?,
            };
            if json {
                writeln!(out, "{}", serde_json::to_string(&stat)?)?;
            } else {
                writeln!(out, "{}", stat.hash)?;
                writeln!(out, "Size: {}", stat.size)?;
                writeln!(out, "CumulativeSize: {}", stat.cumulative_size)?;
                writeln!(out, "ChildBlocks: {}", stat.blocks)?;
                writeln!(out, "Type: {}", stat.kind.as_str())?;
            }
        }
        FilesCommand::Mkdir {
            path,
            parents,
            target,
        } => match target.backend()? {
            Backend::Local(repo) => repo.mfs().mkdir(&path, parents, None)?,
            Backend::Remote(client, rt) => rt.block_on(client.files_mkdir(&path, parents))?,
        },
        FilesCommand::Cp {
            from,
            to,
            parents,
            target,
        } => match target.backend()? {
            Backend::Local(repo) => repo.mfs().cp(&from, &to, parents)?,
            Backend::Remote(client, rt) => rt.block_on(client.files_cp(&from, &to, parents))?,
        },
        FilesCommand::Mv { from, to, target } => match target.backend()? {
            Backend::Local(repo) => repo.mfs().mv(&from, &to)?,
            Backend::Remote(client, rt) => rt.block_on(client.files_mv(&from, &to))?,
        },
        FilesCommand::Rm {
            path,
            recursive,
            target,
        } => match target.backend()? {
            Backend::Local(repo) => repo.mfs().rm(&path, recursive, false)?,
            Backend::Remote(client, rt) => rt.block_on(client.files_rm(&path, recursive, false))?,
        },
        FilesCommand::Read { path, target } => match target.backend()? {
            Backend::Local(repo) => {
                repo.mfs().read(&path, 0, None, &mut out)?;
            }
            Backend::Remote(client, rt) => {
                let bytes = rt.block_on(client.files_read(&path, 0, None))?;
                out.write_all(&bytes)?;
            }
        },
        FilesCommand::Flush { path, target } => {
            let cid = match target.backend()? {
                Backend::Local(repo) => repo.mfs().flush(&path)?,
                Backend::Remote(client, rt) => rt.block_on(client.files_flush(&path))?,
            };
            writeln!(out, "{cid}")?;
        }
    }
    Ok(())
}
