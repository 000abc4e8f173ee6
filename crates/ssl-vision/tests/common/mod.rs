//! What the backbone parity tests share: reading `tools/golden/backbones.py`'s
//! fixtures and filling weights with its formula.

#![allow(dead_code)] // each test binary uses a part

use ssl_vision::vit::VitConfig;
use std::collections::HashMap;
use tch::nn;
use tch::{Kind, Tensor};

pub fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = format!("{}/tests/fixtures/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
    Tensor::read_safetensors(&path).expect("reading a backbone fixture").into_iter().collect()
}

pub fn keys(name: &str) -> Vec<(String, Vec<i64>)> {
    let path = format!("{}/tests/fixtures/{name}_keys.json", env!("CARGO_MANIFEST_DIR"));
    let v: Vec<(String, Vec<i64>, String)> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v.into_iter().map(|(k, s, _)| (k, s)).collect()
}

/// The fill of `tools/golden/backbones.py`, computed in f64.
pub fn fill(vs: &nn::VarStore) {
    for (name, t) in vs.variables() {
        if t.kind() != Kind::Float {
            continue;
        }
        let o = (name.bytes().map(|b| b as u64).sum::<u64>() % 1000) as f64;
        let shape = t.size();
        let n = t.numel();
        let fan_in = if shape.len() >= 2 { n as f64 / shape[0] as f64 } else { 1.0 };
        let data: Vec<f32> = (0..n)
            .map(|i| {
                let base = (0.61 * i as f64 + 0.37 * o).sin();
                let v = if name.ends_with("running_var") {
                    1.0 + 0.5 * base.abs()
                } else if name.ends_with("running_mean") {
                    0.1 * base
                } else if shape.len() >= 2 {
                    base * (6.0 / fan_in).sqrt()
                } else if name.ends_with("weight") {
                    1.0 + 0.1 * base
                } else {
                    0.1 * base
                };
                v as f32
            })
            .collect();
        tch::no_grad(|| t.shallow_clone().copy_(&Tensor::from_slice(&data).reshape(&shape)));
    }
}

pub fn assert_close(name: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.size(), want.size(), "{name}: shape");
    let diff = (got - want).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "{name}: max difference {diff:e}");
}

/// The fixtures' timm ViT: 32 px, patch 4, 3 channels, 48 wide, 3 heads,
/// learned position embeddings.
pub fn timm_vit(depth: i64, drop_path_rate: f64) -> VitConfig {
    VitConfig {
        image_size: 32,
        patch_size: 4,
        in_channels: 3,
        dim: 48,
        depth,
        heads: 3,
        mlp_ratio: 4.0,
        fixed_pos_embed: false,
        image_width: None,
        pool: Default::default(),
        drop_path_rate,
    }
}
