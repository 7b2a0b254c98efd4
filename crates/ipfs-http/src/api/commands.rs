//! Commands that take arguments in the query string only: reads, blocks,
//! pins, GC, CAR export, identity.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use r3mes_ipfs::directory::stat_node;
use r3mes_ipfs::reader::links_of;
use r3mes_ipfs::{
    Cid, ContentStore, Directory, EmbeddedStore, EntryKind, PinMode, ReadStats, Repo, cids,
};
use serde::Serialize;
use serde_json::json;

use super::{
    ApiError, ApiResult, X_CONTENT_LENGTH, X_R3MES_BLOCKS, X_R3MES_BYTES, blocking, cid_arg,
    cid_args, count, flag, json, json_line, ndjson, path_args,
};
use crate::query::QueryPairs;
use crate::stream::stream_body;
use r3mes_ipfs::reader::{RangePlan, plan_range};

/// `cat`: streams a file's bytes, or a range of them (`offset`, `length`).
/// Several arguments are read one after the other, the range applying to the
/// whole, as Kubo does. The blocks to fetch are planned first, so the answer
/// announces its length (`X-Content-Length`) and fetch cost (`X-R3mes-Blocks`,
/// `X-R3mes-Bytes`, the figures `Repo::cat` reports) before the bytes; a
/// block that turns out corrupt while streaming cuts the connection.
pub async fn cat(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let targets = path_args("cat", &query, "ipfs-path")?;
    let offset = count(&query, &["offset", "o"])?.unwrap_or(0);
    let length = count(&query, &["length", "l"])?;
    let plans = blocking("cat", &repo, move |repo| {
        let mut offset = offset;
        let mut remaining = length;
        let mut plans: Vec<(Cid, RangePlan)> = Vec::new();
        for (root, path) in targets {
            if remaining == Some(0) && !plans.is_empty() {
                break;
            }
            let cid = repo.resolve_path(&root, &path)?;
            let plan = plan_range(repo.store(), &cid, offset, remaining)?;
            offset = offset.saturating_sub(plan.file_size);
            remaining = remaining.map(|r| r - plan.len());
            plans.push((cid, plan));
        }
        Ok(plans)
    })
    .await?;
    let total = plans
        .iter()
        .fold(0u64, |acc, (_, p)| acc.saturating_add(p.len()));
    let stats = plans.iter().fold(ReadStats::default(), |acc, (_, p)| {
        let s = p.stats();
        ReadStats {
            blocks: acc.blocks.saturating_add(s.blocks),
            bytes: acc.bytes.saturating_add(s.bytes),
        }
    });
    let body = stream_body("cat".to_string(), move |out| {
        for (cid, plan) in plans.iter().filter(|(_, p)| !p.is_empty()) {
            repo.cat(cid, plan.start, Some(plan.len()), out)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain".to_string()),
            (
                header::HeaderName::from_static("x-stream-output"),
                "1".to_string(),
            ),
            (
                header::HeaderName::from_static(X_CONTENT_LENGTH),
                total.to_string(),
            ),
            (
                header::HeaderName::from_static(X_R3MES_BLOCKS),
                stats.blocks.to_string(),
            ),
            (
                header::HeaderName::from_static(X_R3MES_BYTES),
                stats.bytes.to_string(),
            ),
        ],
        body,
    )
        .into_response())
}

/// `block/get`: one block's bytes, verified against its CID.
pub async fn block_get(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let cid = single(&query, "block/get", "cid")?;
    let block = blocking("block/get", &repo, move |repo| repo.block_get(&cid)).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain"),
            (header::HeaderName::from_static("x-stream-output"), "1"),
        ],
        block,
    )
        .into_response())
}

/// `block/stat`: `{"Key":"<cid>","Size":<bytes>}`.
pub async fn block_stat(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    #[derive(Serialize)]
    struct Stat {
        #[serde(rename = "Key")]
        key: String,
        #[serde(rename = "Size")]
        size: u64,
    }
    let query = QueryPairs::parse(query.as_deref());
    let cid = single(&query, "block/stat", "cid")?;
    let size = blocking("block/stat", &repo, move |repo| repo.block_stat(&cid)).await?;
    json(
        "block/stat",
        &Stat {
            key: cid.to_string(),
            size,
        },
    )
}

/// `ls`: the links of each argument (a CID or an IPFS path), as Kubo answers
/// with its defaults (`resolve-type` and `size` on):
/// `{"Objects":[{"Hash":"<arg>","Links":[{"Name","Hash","Size","Type","Target"}]}]}`,
/// `Type` 1 for a directory and 2 for a file, `Size` a file's content size (0
/// for a directory). A file lists no links (Kubo lists a multi-block file's
/// chunks, which no client here needs).
pub async fn ls(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let targets = path_args("ls", &query, "ipfs-path")?;
    let args: Vec<String> = query.all("arg").map(str::to_string).collect();
    let objects = blocking("ls", &repo, move |repo| {
        let mut objects = Vec::with_capacity(targets.len());
        for ((root, path), arg) in targets.into_iter().zip(args) {
            let cid = repo.resolve_path(&root, &path)?;
            let block = repo.block_get(&cid)?;
            let mut links = Vec::new();
            if stat_node(&cid, &block)?.kind == EntryKind::Directory {
                for entry in Directory::decode(&cid, &block)?.entries() {
                    let child = stat_node(&entry.cid, &repo.block_get(&entry.cid)?)?;
                    let kind = match child.kind {
                        EntryKind::Directory => 1,
                        EntryKind::File => 2,
                    };
                    links.push(json!({
                        "Name": entry.name,
                        "Hash": entry.cid.to_string(),
                        "Size": child.size,
                        "Type": kind,
                        "Target": "",
                    }));
                }
            }
            objects.push(json!({ "Hash": arg.trim(), "Links": links }));
        }
        Ok(objects)
    })
    .await?;
    json("ls", &json!({ "Objects": objects }))
}

/// `pin/add`: pins each argument (`recursive`, default true; `name`) and
/// answers `{"Pins":[...]}`. A recursive pin needs the whole DAG present.
pub async fn pin_add(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let targets = cid_args("pin/add", &query, "ipfs-path")?;
    let mode = if flag(&query, &["recursive", "r"], true)? {
        PinMode::Recursive
    } else {
        PinMode::Direct
    };
    let name = query.first(&["name"]).map(str::to_string);
    let pins = targets.iter().map(Cid::to_string).collect::<Vec<_>>();
    blocking("pin/add", &repo, move |repo| {
        targets
            .iter()
            .try_for_each(|cid| repo.pin_add(cid, mode, name.as_deref()))
    })
    .await?;
    json("pin/add", &json!({ "Pins": pins }))
}

/// `pin/rm`: removes each argument's pin and answers `{"Pins":[...]}`. With
/// `recursive=false` a recursive pin is refused, as Kubo refuses it.
pub async fn pin_rm(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let targets = cid_args("pin/rm", &query, "ipfs-path")?;
    let recursive = flag(&query, &["recursive", "r"], true)?;
    let pins = targets.iter().map(Cid::to_string).collect::<Vec<_>>();
    blocking("pin/rm", &repo, move |repo| {
        if !recursive {
            let existing = repo.pin_ls()?;
            for cid in &targets {
                let recursive_pin = existing.iter().any(|p| {
                    p.mode == PinMode::Recursive && cids::block_key(&p.cid) == cids::block_key(cid)
                });
                if recursive_pin {
                    return Err(r3mes_ipfs::Error::Pin(format!(
                        "{cid} is pinned recursively (remove it with recursive=true)"
                    )));
                }
            }
        }
        targets.iter().try_for_each(|cid| repo.pin_rm(cid))
    })
    .await?;
    json("pin/rm", &json!({ "Pins": pins }))
}

/// One `pin/ls` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct PinEntry {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Name")]
    name: String,
}

/// `pin/ls`: `{"Keys":{"<cid>":{"Type":"recursive","Name":""}}}`, filtered by
/// `type` (`all`, the default, also lists `indirect` blocks: those reachable
/// from a recursive pin), or the status of each `arg`. `stream=true` answers
/// one `{"Cid","Type","Name"}` line per pin instead.
pub async fn pin_ls(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let kind = query.first(&["type", "t"]).unwrap_or("all").to_string();
    if !matches!(kind.as_str(), "all" | "recursive" | "direct" | "indirect") {
        return Err(ApiError::bad(format!(
            "invalid type {kind:?}, must be one of {{direct, indirect, recursive, all}}"
        )));
    }
    let stream = flag(&query, &["stream", "s"], false)?;
    let targets = query
        .all("arg")
        .map(|a| cid_arg("pin/ls", a))
        .collect::<ApiResult<Vec<_>>>()?;
    let keys = blocking("pin/ls", &repo, move |repo| {
        list_pins(&repo, &kind, &targets)
    })
    .await?;
    if stream {
        let mut lines = String::new();
        for (cid, entry) in &keys {
            lines += &json_line(
                "pin/ls",
                &json!({ "Cid": cid, "Type": entry.kind, "Name": entry.name }),
            )?;
        }
        return Ok(ndjson(lines));
    }
    json("pin/ls", &json!({ "Keys": keys }))
}

/// The pins of `kind`, or the status of each of `targets`.
fn list_pins(
    repo: &Repo,
    kind: &str,
    targets: &[Cid],
) -> r3mes_ipfs::Result<BTreeMap<String, PinEntry>> {
    let pins = repo.pin_ls()?;
    let entry = |mode: PinMode, name: &Option<String>| PinEntry {
        kind: mode.as_str().to_string(),
        name: name.clone().unwrap_or_default(),
    };
    let wants_indirect = !targets.is_empty() || matches!(kind, "all" | "indirect");
    let indirect = if wants_indirect {
        indirect_blocks(repo, &pins)?
    } else {
        HashMap::new()
    };
    let mut keys = BTreeMap::new();
    if !targets.is_empty() {
        for cid in targets {
            let key = cids::block_key(cid);
            let pinned = pins.iter().find(|p| cids::block_key(&p.cid) == key);
            let status = match (pinned, indirect.get(&key)) {
                (Some(pin), _) => entry(pin.mode, &pin.name),
                (None, Some((_, root))) => PinEntry {
                    kind: format!("indirect through {root}"),
                    name: String::new(),
                },
                (None, None) => {
                    return Err(r3mes_ipfs::Error::Pin(format!(
                        "path '{cid}' is not pinned"
                    )));
                }
            };
            keys.insert(cid.to_string(), status);
        }
        return Ok(keys);
    }
    for pin in &pins {
        if kind == "all" || kind == pin.mode.as_str() {
            keys.insert(pin.cid.to_string(), entry(pin.mode, &pin.name));
        }
    }
    if matches!(kind, "all" | "indirect") {
        let roots: std::collections::HashSet<Vec<u8>> =
            pins.iter().map(|p| cids::block_key(&p.cid)).collect();
        for (key, (cid, _)) in &indirect {
            if !roots.contains(key) {
                keys.insert(
                    cid.to_string(),
                    PinEntry {
                        kind: "indirect".to_string(),
                        name: String::new(),
                    },
                );
            }
        }
    }
    Ok(keys)
}

/// Blocks reachable from recursive pins (roots excluded unless linked from
/// elsewhere), each with the CID it was linked by and the pin that reaches it.
/// Missing or undecodable blocks end their branch, as in GC's mark phase.
fn indirect_blocks(
    repo: &Repo,
    pins: &[r3mes_ipfs::PinInfo],
) -> r3mes_ipfs::Result<HashMap<Vec<u8>, (Cid, Cid)>> {
    let mut seen: HashMap<Vec<u8>, (Cid, Cid)> = HashMap::new();
    for pin in pins.iter().filter(|p| p.mode == PinMode::Recursive) {
        let mut stack = children(repo, &pin.cid)?;
        while let Some(cid) = stack.pop() {
            let key = cids::block_key(&cid);
            if seen.contains_key(&key) {
                continue;
            }
            seen.insert(key, (cid, pin.cid));
            stack.extend(children(repo, &cid)?);
        }
    }
    Ok(seen)
}

fn children(repo: &Repo, cid: &Cid) -> r3mes_ipfs::Result<Vec<Cid>> {
    if cid.codec() != cids::DAG_PB || cids::is_inline(cid) {
        return Ok(Vec::new());
    }
    Ok(match repo.store().get_unverified(cid)? {
        Some(block) => links_of(cid, &block).unwrap_or_default(),
        None => Vec::new(),
    })
}

/// `repo/gc`: removes every block no pin reaches; one `{"Key":{"/":cid}}`
/// line per removed block.
pub async fn repo_gc(State(repo): State<Repo>) -> ApiResult {
    let report = blocking("repo/gc", &repo, |repo| repo.gc()).await?;
    let mut lines = String::new();
    for cid in &report.removed {
        lines += &json_line("repo/gc", &json!({ "Key": { "/": cid.to_string() } }))?;
    }
    Ok(ndjson(lines))
}

/// `dag/export`: the DAG under the argument as a CAR v1 stream (depth-first,
/// each block once). A missing root is an error answer; a block found missing
/// or corrupt later cuts the stream.
pub async fn dag_export(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let root = single(&query, "dag/export", "root")?;
    let present = blocking("dag/export", &repo, move |repo| repo.store().has(&root)).await?;
    if !present {
        return Err(ApiError::repo(
            "dag/export",
            r3mes_ipfs::Error::BlockNotFound(root),
        ));
    }
    let body = stream_body(format!("dag/export {root}"), move |out| {
        repo.export_car(&root, out)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.ipld.car"),
            (header::HeaderName::from_static("x-stream-output"), "1"),
        ],
        body,
    )
        .into_response())
}

/// `id`: the node's identity. The embedded daemon has no libp2p key, so
/// `PublicKey` is empty and `Addresses`/`Protocols` are empty lists.
pub async fn id(State(repo): State<Repo>, RawQuery(query): RawQuery) -> ApiResult {
    let query = QueryPairs::parse(query.as_deref());
    let me = EmbeddedStore::new(repo)
        .id()
        .await
        .map_err(|e| ApiError::repo("id", e))?;
    if let Some(peer) = query.all("arg").next()
        && peer != me.id
    {
        return Err(ApiError::failed(format!(
            "id: cannot look up peer {peer}: the embedded daemon has no network"
        )));
    }
    json(
        "id",
        &json!({
            "ID": me.id,
            "PublicKey": "",
            "Addresses": [],
            "AgentVersion": me.agent_version,
            "Protocols": [],
        }),
    )
}

/// `version`: `{"Version","Commit","Repo","System","Golang"}`, filled with what
/// the embedded daemon is (no Go inside, so `Golang` names the Rust build).
pub async fn version(State(repo): State<Repo>) -> ApiResult {
    let version = EmbeddedStore::new(repo)
        .version()
        .await
        .map_err(|e| ApiError::repo("version", e))?;
    json(
        "version",
        &json!({
            "Version": version,
            "Commit": "",
            "Repo": "r3mes-embedded",
            "System": system(),
            "Golang": "none (Rust)",
        }),
    )
}

/// `<arch>/<os>` as Go spells it (`amd64/linux`).
fn system() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{arch}/{}", std::env::consts::OS)
}

/// The single CID argument of `command`.
fn single(query: &QueryPairs, command: &str, name: &str) -> ApiResult<Cid> {
    let mut cids = cid_args(command, query, name)?;
    if cids.len() > 1 {
        return Err(ApiError::bad(format!(
            "{command}: expected one argument {name:?}, got {}",
            cids.len()
        )));
    }
    cids.pop()
        .ok_or_else(|| ApiError::bad(format!("argument {name:?} is required")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use r3mes_ipfs::AddOptions;

    #[test]
    fn pin_listing_covers_all_types_and_arguments() {
        let repo = Repo::in_memory();
        let options = AddOptions {
            chunk_size: 16,
            ..AddOptions::default()
        };
        let root = repo.add_bytes(&[7u8; 100], &options).unwrap().root;
        let other = repo
            .add_bytes(
                b"direct",
                &AddOptions {
                    pin: false,
                    ..AddOptions::default()
                },
            )
            .unwrap()
            .root;
        repo.pin_add(&other, PinMode::Direct, Some("mine")).unwrap();

        let all = list_pins(&repo, "all", &[]).unwrap();
        assert_eq!(all[&root.to_string()].kind, "recursive");
        assert_eq!(all[&other.to_string()].name, "mine");
        assert!(all.values().any(|e| e.kind == "indirect"));
        let direct = list_pins(&repo, "direct", &[]).unwrap();
        assert_eq!(direct.len(), 1);
        let indirect = list_pins(&repo, "indirect", &[]).unwrap();
        assert!(indirect.values().all(|e| e.kind == "indirect"));
        assert!(!indirect.contains_key(&root.to_string()));

        let leaf: Cid = indirect.keys().next().unwrap().parse().unwrap();
        let status = list_pins(&repo, "all", &[leaf]).unwrap();
        assert_eq!(
            status[&leaf.to_string()].kind,
            format!("indirect through {root}")
        );
        let stranger = cids::raw_cid(cids::sha256_multihash(b"stranger"));
        assert!(
            list_pins(&repo, "all", &[stranger])
                .unwrap_err()
                .to_string()
                .contains("is not pinned")
        );
    }

    #[test]
    fn system_is_go_style() {
        assert!(system().contains('/'));
    }
}
