//! BERT against transformers 5.24: a tiny random `BertForMaskedLM` saved by
//! `tools/golden/bert.py` loads by name, and gives transformers' MLM logits
//! and last hidden states (with padding and token types), and its causal
//! (`BertLMHeadModel`, `is_decoder=True`) logits, to 1e-4. Saving and
//! reloading keeps the same names.

use ssl_core::checkpoint::{load_weights, save_weights};
use ssl_text::bert::{BertConfig, BertForMaskedLm};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{nn, Device, Tensor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn tiny() -> BertConfig {
    BertConfig {
        vocab_size: 97,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 40,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        ..BertConfig::base(97)
    }
}

fn io() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture("bert_tiny_mlm_io.safetensors")).unwrap().into_iter().collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

fn load() -> (nn::VarStore, BertForMaskedLm) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = BertForMaskedLm::new(&vs.root(), &tiny()).unwrap();
    load_weights(&fixture("bert_tiny_mlm.safetensors"), &mut vs).unwrap();
    (vs, model)
}

#[test]
fn mlm_logits_match_transformers() {
    let (vs, model) = load();
    // The var store holds exactly the file's 42 tensors (the decoder is tied).
    assert_eq!(vs.variables().len(), 42);
    let io = io();
    let (ids, mask, types) = (&io["input_ids"], &io["attention_mask"], &io["token_type_ids"]);
    let hidden = tch::no_grad(|| model.bert.forward(ids, Some(types), Some(mask), false, false)).unwrap();
    let d = max_diff(&hidden, &io["last_hidden"]);
    assert!(d < 1e-4, "last hidden state differs by {d}");
    let logits = tch::no_grad(|| model.logits(ids, Some(types), Some(mask), false, false)).unwrap();
    assert_eq!(logits.size(), [3, 12, 97]);
    let d = max_diff(&logits, &io["logits"]);
    assert!(d < 1e-4, "MLM logits differ by {d}");
    // The masks matter: without them the answer is different.
    let unmasked = tch::no_grad(|| model.logits(ids, Some(types), None, false, false)).unwrap();
    assert!(max_diff(&unmasked, &io["logits"]) > 1e-2);
}

#[test]
fn causal_logits_match_transformers() {
    let (_vs, model) = load();
    let io = io();
    let logits = tch::no_grad(|| model.logits(&io["input_ids"], None, None, true, false)).unwrap();
    let d = max_diff(&logits, &io["clm_logits"]);
    assert!(d < 1e-4, "causal logits differ by {d}");
}

#[test]
fn sparse_mlm_loss_equals_dense_loss_on_the_labelled_positions() {
    let (_vs, model) = load();
    let io = io();
    let ids = &io["input_ids"];
    let labels = ids.where_self(&(ids.remainder(3)).eq(0), &Tensor::from(ssl_text::IGNORE_INDEX));
    let (loss, correct, n) = tch::no_grad(|| model.mlm_loss(ids, None, &labels, false)).unwrap();
    let dense = tch::no_grad(|| model.logits(ids, None, None, false, false)).unwrap();
    let expected = dense.view([-1, 97]).cross_entropy_loss::<Tensor>(
        &labels.view([-1]),
        None,
        tch::Reduction::Mean,
        ssl_text::IGNORE_INDEX,
        0.0,
    );
    assert!(max_diff(&loss, &expected) < 1e-5);
    let sel = labels.ne(ssl_text::IGNORE_INDEX);
    assert_eq!(n.double_value(&[]), sel.sum(tch::Kind::Float).double_value(&[]));
    let hits = dense.argmax(-1, false).eq_tensor(ids).logical_and(&sel).sum(tch::Kind::Float);
    assert_eq!(correct.double_value(&[]), hits.double_value(&[]));
}

/// The causal objective: the loss is the cross-entropy of the logits at
/// positions 0..T-1 against the tokens at 1..T (transformers'
/// `labels`-shifted loss), padding left out, computed here from the
/// dense causal logits that match transformers.
#[test]
fn causal_loss_predicts_the_next_token_and_skips_padding() {
    let (_vs, model) = load();
    let io = io();
    let ids = &io["input_ids"];
    let (b, t) = (ids.size()[0], ids.size()[1]);
    // The last three positions of the first row are padding.
    let mask = Tensor::ones([b, t], (tch::Kind::Int64, tch::Device::Cpu));
    let _ = mask.get(0).narrow(0, t - 3, 3).fill_(0);
    let (loss, correct, n) = tch::no_grad(|| model.clm_loss(ids, Some(&mask), false)).unwrap();
    let dense = tch::no_grad(|| model.logits(ids, None, Some(&mask), true, false)).unwrap();
    let next = ids
        .narrow(1, 1, t - 1)
        .where_self(&mask.narrow(1, 1, t - 1).ne(0), &Tensor::from(ssl_text::IGNORE_INDEX));
    let expected = dense.narrow(1, 0, t - 1).reshape([-1, 97]).cross_entropy_loss::<Tensor>(
        &next.reshape([-1]),
        None,
        tch::Reduction::Mean,
        ssl_text::IGNORE_INDEX,
        0.0,
    );
    assert!(
        max_diff(&loss, &expected) < 1e-5,
        "{} vs {}",
        loss.double_value(&[]),
        expected.double_value(&[])
    );
    assert_eq!(n.double_value(&[]), (b * (t - 1) - 3) as f64);
    let sel = next.ne(ssl_text::IGNORE_INDEX);
    let hits =
        dense.narrow(1, 0, t - 1).argmax(-1, false).eq_tensor(&next).logical_and(&sel).sum(tch::Kind::Float);
    assert_eq!(correct.double_value(&[]), hits.double_value(&[]));
}

#[test]
fn saved_weights_keep_transformers_names() {
    let (vs, _model) = load();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    save_weights(&vs, &out).unwrap();
    let mut names: Vec<String> =
        Tensor::read_safetensors(&out).unwrap().into_iter().map(|(n, _)| n).collect();
    let mut expected: Vec<String> = Tensor::read_safetensors(fixture("bert_tiny_mlm.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    expected.sort();
    assert_eq!(names, expected);
    let cfg = tiny().hf_config_json(0);
    assert_eq!(cfg["architectures"][0], "BertForMaskedLM");
    assert_eq!(cfg["num_hidden_layers"], 2);
}

/// An untied export carries transformers' untied names: its own decoder
/// weight and `cls.predictions.decoder.bias` (transformers' decoder reads
/// its bias there when untied), equal to `cls.predictions.bias`, and the
/// config says `tie_word_embeddings: false`. Rust loads it back.
#[test]
fn untied_export_has_the_decoder_bias_transformers_reads() {
    let cfg = BertConfig { tie_word_embeddings: false, ..tiny() };
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = BertForMaskedLm::new(&vs.root(), &cfg).unwrap();
    let _ = tch::no_grad(|| vs.variables()["cls.predictions.bias"].shallow_clone().uniform_(-1.0, 1.0));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.safetensors");
    ssl_text::hf::save_weights(&vs, &cfg, &out).unwrap();
    let saved: HashMap<String, Tensor> = Tensor::read_safetensors(&out).unwrap().into_iter().collect();
    assert_eq!(saved.len(), vs.variables().len() + 1);
    assert_eq!(saved["cls.predictions.decoder.weight"].size(), [97, 32]);
    assert_eq!(max_diff(&saved["cls.predictions.decoder.bias"], &saved["cls.predictions.bias"]), 0.0);
    assert!(saved["cls.predictions.bias"].abs().sum(tch::Kind::Float).double_value(&[]) > 1.0);
    assert_eq!(cfg.hf_config_json(0)["tie_word_embeddings"], false);
    // Tied: no decoder tensors at all (transformers ties them itself).
    let (tied_vs, _model) = load();
    ssl_text::hf::save_weights(&tied_vs, &tiny(), &out).unwrap();
    let names: Vec<String> = Tensor::read_safetensors(&out).unwrap().into_iter().map(|(n, _)| n).collect();
    assert!(!names.iter().any(|n| n.contains("decoder")), "{names:?}");
    let mut back = nn::VarStore::new(Device::Cpu);
    let _m = BertForMaskedLm::new(&back.root(), &cfg).unwrap();
    ssl_text::hf::save_weights(&vs, &cfg, &out).unwrap();
    load_weights(&out, &mut back).unwrap();
}

#[test]
fn pre_ln_uses_megatron_bert_names() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = BertForMaskedLm::new(&vs.root(), &BertConfig { pre_ln: true, ..tiny() }).unwrap();
    let names: Vec<String> = vs.variables().into_keys().collect();
    for n in
        ["bert.encoder.layer.1.attention.ln.weight", "bert.encoder.layer.0.ln.bias", "bert.encoder.ln.weight"]
    {
        assert!(names.iter().any(|x| x == n), "missing {n}");
    }
    assert!(!names.iter().any(|x| x.contains("embeddings.LayerNorm")));
}

#[test]
fn bad_shapes_are_refused() {
    let (_vs, model) = load();
    let long = Tensor::zeros([1, 41], (tch::Kind::Int64, Device::Cpu));
    let err = model.logits(&long, None, None, false, false).err().unwrap().to_string();
    assert!(err.contains("exceeds max_position_embeddings 40"), "{err}");
    let ids = Tensor::zeros([2, 5], (tch::Kind::Int64, Device::Cpu));
    let mask = Tensor::ones([2, 4], (tch::Kind::Int64, Device::Cpu));
    let err = model.logits(&ids, None, Some(&mask), false, false).err().unwrap().to_string();
    assert!(err.contains("attention_mask must be [2, 5]"), "{err}");
    let err = BertForMaskedLm::new(
        &nn::VarStore::new(Device::Cpu).root(),
        &BertConfig { num_attention_heads: 5, ..tiny() },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("not a multiple"), "{err}");
}

/// On CUDA: the same logits in f32 (SDPA picks a CUDA kernel), and under
/// bf16 autocast within bf16's precision.
#[cfg(feature = "cuda-tests")]
#[test]
fn mlm_logits_match_transformers_on_cuda() {
    let dev = Device::Cuda(0);
    let mut vs = nn::VarStore::new(dev);
    let model = BertForMaskedLm::new(&vs.root(), &tiny()).unwrap();
    load_weights(&fixture("bert_tiny_mlm.safetensors"), &mut vs).unwrap();
    let io = io();
    let (ids, mask, types) = (
        io["input_ids"].to_device(dev),
        io["attention_mask"].to_device(dev),
        io["token_type_ids"].to_device(dev),
    );
    let logits = tch::no_grad(|| model.logits(&ids, Some(&types), Some(&mask), false, false)).unwrap();
    let d = max_diff(&logits.to_device(Device::Cpu), &io["logits"]);
    assert!(d < 1e-4, "CUDA f32 logits differ by {d}");
    // The causal fixture is computed without padding or token types, as in
    // `causal_logits_match_transformers`.
    let bf16 = ssl_core::amp::bf16_autocast(true, || {
        tch::no_grad(|| model.logits(&ids, None, None, true, false)).unwrap()
    });
    let d = max_diff(&bf16.to_kind(tch::Kind::Float).to_device(Device::Cpu), &io["clm_logits"]);
    eprintln!("CUDA bf16 causal logits: max |diff| {d:.2e} (logits up to 3.3)");
    assert!(d < 0.1, "CUDA bf16 causal logits differ by {d}");
}
