//! `r3mes model init` as an operator runs it: the same seed gives the same
//! files, `--api` files them under `/models/v1/` in IPFS, and `--from`
//! registers the version on the node with those CIDs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fails, json, ok, r3mes};

#[test]
fn a_model_is_made_deterministically_added_and_registered() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    common::init(home, 100, 1, |_| {});
    let node = common::start(home, &[]);
    let init = |out: &str, extra: &[&str]| {
        r3mes(home)
            .args([
                "model", "init", "--layers", "1", "--dim", "32", "--heads", "2",
            ])
            .args(["--seed", "7", "--out"])
            .arg(home.join(out))
            .args(extra)
            .output()
            .unwrap()
    };
    let first = json(&ok(init("a", &[])));
    let second = json(&ok(init("b", &[])));
    assert_eq!(first["backbone_sha256"], second["backbone_sha256"]);
    assert_eq!(
        std::fs::read(home.join("a/adapters.safetensors")).unwrap(),
        std::fs::read(home.join("b/adapters.safetensors")).unwrap()
    );

    let made = json(&ok(init(
        "c",
        &[
            "--api",
            &node.ipfs,
            "--from",
            "validator",
            "--node",
            &node.url,
        ],
    )));
    assert!(made["registered_height"].as_u64().unwrap() >= 1, "{made}");
    let model = json(&ok(r3mes(home)
        .args(["query", "model", "--json", "--node", &node.url])
        .output()
        .unwrap()));
    assert_eq!(model["version"], 1);
    assert_eq!(model["backbone_hash"], made["backbone_cid"]);
    assert_eq!(model["metadata_hash"], made["metadata_cid"]);
    let listed = ok(r3mes(home)
        .args(["ipfs", "files", "ls", "/models/v1", "--api", &node.ipfs])
        .output()
        .unwrap());
    assert_eq!(listed, "backbone\nlora_adapters\nmetadata.json\n");

    // Registering needs the CIDs; a bad rank is refused before anything is made.
    fails(init("d", &["--from", "validator"]), "--api");
    fails(init("e", &["--rank", "2"]), "rank");
}

/// A safetensors file of F32 tensors, written by hand (name, shape, values).
fn safetensors_f32(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let start = data.len();
        data.extend(values.iter().flat_map(|v| v.to_le_bytes()));
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let mut header = serde_json::Value::Object(header).to_string().into_bytes();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

/// A tiny Hugging Face style BitNet checkpoint: 2 layers of width 16, MLP 32,
/// vocabulary 40, tied embeddings (no lm_head.weight).
fn tiny_hf_checkpoint() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut seed = 1u32;
    let mut values = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    };
    let mut t = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![40, 16],
        values(40 * 16),
    )];
    for l in 0..2 {
        let p = format!("model.layers.{l}");
        for n in ["input_layernorm", "post_attention_layernorm"] {
            t.push((format!("{p}.{n}.weight"), vec![16], vec![1.0; 16]));
        }
        for q in ["q", "k", "v", "o"] {
            t.push((
                format!("{p}.self_attn.{q}_proj.weight"),
                vec![16, 16],
                values(256),
            ));
        }
        for (m, shape) in [("gate", [32, 16]), ("up", [32, 16]), ("down", [16, 32])] {
            t.push((
                format!("{p}.mlp.{m}_proj.weight"),
                shape.to_vec(),
                values(512),
            ));
        }
    }
    t.push(("model.norm.weight".to_string(), vec![16], vec![1.0; 16]));
    t
}

#[test]
fn a_hugging_face_checkpoint_becomes_the_backbone() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let weights = home.join("model.safetensors");
    std::fs::write(&weights, safetensors_f32(&tiny_hf_checkpoint())).unwrap();
    let config = home.join("config.json");
    let hf_config = serde_json::json!({
        "architectures": ["BitNetForCausalLM"], "hidden_act": "relu2", "hidden_size": 16,
        "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 2, "vocab_size": 40, "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": true
    });
    std::fs::write(&config, hf_config.to_string()).unwrap();
    let init = |out: &str, extra: &[&str]| {
        r3mes(home)
            .args(["model", "init", "--seed", "3", "--rank", "4", "--backbone"])
            .arg(&weights)
            .arg("--out")
            .arg(home.join(out))
            .args(extra)
            .output()
            .unwrap()
    };
    let made = json(&ok(init(
        "hf",
        &["--backbone-config", config.to_str().unwrap()],
    )));
    assert_eq!(made["backbone_source"]["tied_head"], true);
    assert_eq!(made["backbone_source"]["file"], "model.safetensors");
    let metadata = json(&std::fs::read_to_string(home.join("hf/metadata.json")).unwrap());
    assert_eq!(metadata["backbone"]["dim"], 16);
    assert_eq!(metadata["backbone"]["heads"], 2);
    assert_eq!(metadata["backbone"]["mlp_hidden"], 32);
    assert_eq!(metadata["backbone"]["vocab_size"], 40);
    assert_eq!(metadata["backbone_sha256"], made["backbone_sha256"]);
    // The written backbone is the canonical ternary file, and loads alone.
    let loaded = r3mes_miner::Backbone::load_file(&home.join("hf/model.safetensors")).unwrap();
    assert_eq!(loaded.hash(), made["backbone_sha256"].as_str().unwrap());
    assert_eq!(loaded.config().layers, 2);
    // Without config.json, --heads gives the head count; the rest is inferred.
    let inferred = json(&ok(init("inferred", &["--heads", "2"])));
    assert_eq!(inferred["backbone_sha256"], made["backbone_sha256"]);
    assert!(
        inferred["backbone_source"]["inferred"]
            .as_array()
            .unwrap()
            .contains(&"hidden_size".into())
    );

    // Refusals name the problem and write nothing.
    fails(init("noheads", &[]), "num_attention_heads");
    let mut gqa = hf_config.clone();
    gqa["num_key_value_heads"] = 1.into();
    std::fs::write(&config, gqa.to_string()).unwrap();
    fails(
        init("gqa", &["--backbone-config", config.to_str().unwrap()]),
        "grouped-query attention is not supported",
    );
    assert!(!home.join("gqa").exists());
    std::fs::write(&config, hf_config.to_string()).unwrap();
    fails(
        init(
            "clash",
            &[
                "--backbone-config",
                config.to_str().unwrap(),
                "--heads",
                "4",
            ],
        ),
        "--heads 4 contradicts num_attention_heads 2",
    );
    let mut partial = tiny_hf_checkpoint();
    partial.retain(|(name, _, _)| name != "model.layers.1.self_attn.v_proj.weight");
    std::fs::write(&weights, safetensors_f32(&partial)).unwrap();
    fails(
        init("partial", &["--heads", "2"]),
        "missing tensor model.layers.1.self_attn.v_proj.weight",
    );
    assert!(!home.join("partial").exists());
    fails(
        r3mes(home)
            .args(["model", "init", "--dim", "32", "--backbone"])
            .arg(&weights)
            .arg("--out")
            .arg(home.join("conflict"))
            .output()
            .unwrap(),
        "--dim",
    );
}
