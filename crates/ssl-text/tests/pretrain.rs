//! Packing, the masked batch source, learning, resume and the downstream
//! comparison, on small generated corpora.

use ssl_core::optim::OptimizerConfig;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_core::BatchSource;
use ssl_text::bert::{BertConfig, BertForMaskedLm};
use ssl_text::corpus::Corpus;
use ssl_text::masking::MaskingConfig;
use ssl_text::pack::{pack_corpus, PackConfig};
use ssl_text::pretrain::{HeldoutMonitor, Objective, TextPretrainer, TextSource};
use ssl_text::tokenizer::TextTokenizer;
use ssl_text::IGNORE_INDEX;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// Sentences with structure a small model can learn: "the <animal> eats
/// <food> and the <animal> sleeps", with fixed animal/food pairs.
fn write_corpus(dir: &Path, docs: usize) -> std::path::PathBuf {
    let pairs = [("cat", "fish"), ("dog", "bones"), ("cow", "grass"), ("bird", "seeds"), ("mouse", "cheese")];
    let mut text = String::new();
    for i in 0..docs {
        let (a, f) = pairs[(i * 7) % pairs.len()];
        let (b, g) = pairs[(i * 3 + 1) % pairs.len()];
        text.push_str(&format!("the {a} eats {f} and the {b} eats {g} . the {a} sleeps\n"));
    }
    let p = dir.join("corpus.txt");
    std::fs::write(&p, text).unwrap();
    p
}

fn tiny(vocab: i64) -> BertConfig {
    BertConfig {
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 64,
        max_position_embeddings: 32,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        ..BertConfig::base(vocab)
    }
}

fn setup(docs: usize) -> (tempfile::TempDir, TextTokenizer, ssl_text::pack::PackedCorpus) {
    setup_with(docs, 32)
}

fn setup_with(
    docs: usize,
    seq_len: usize,
) -> (tempfile::TempDir, TextTokenizer, ssl_text::pack::PackedCorpus) {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&write_corpus(dir.path(), docs), false).unwrap();
    let tok = TextTokenizer::train_wordpiece(&corpus, 100, 1).unwrap();
    let cfg = PackConfig { seq_len, holdout_every: 10, ..PackConfig::default() };
    let packed = pack_corpus(&corpus, &tok, &cfg).unwrap();
    (dir, tok, packed)
}

fn masking(tok: &TextTokenizer) -> MaskingConfig {
    MaskingConfig {
        mlm_probability: 0.15,
        mask_token_id: tok.special.mask,
        vocab_size: tok.vocab_size(),
        whole_word: false,
    }
}

#[test]
fn packing_wraps_every_sequence_and_holds_documents_out() {
    let (_dir, tok, packed) = setup(200);
    let sp = tok.special;
    assert_eq!(packed.documents, 200);
    // 13 tokens per document; 180 training documents plus separators, in
    // pieces of 30.
    assert_eq!(packed.train.tokens, 180 * 13 + 179 + 2 * packed.train.len());
    assert!(packed.heldout.len() >= 2);
    for p in [&packed.train, &packed.heldout] {
        for i in 0..p.len() {
            let (ids, _) = p.sequence(i);
            assert_eq!(ids.len(), 32);
            assert_eq!(i64::from(ids[0]), sp.cls);
            let real = ids.iter().take_while(|&&x| i64::from(x) != sp.pad).count();
            assert_eq!(i64::from(ids[real - 1]), sp.sep, "sequence {i} ends with [SEP]");
            assert!(i64::from(ids[1]) != sp.sep, "no piece starts with a separator");
            // Only the last sequence of a stream is padded.
            if i + 1 < p.len() {
                assert_eq!(real, 32);
            }
        }
    }
    let corpus_err = pack_corpus(
        &Corpus::open(&write_corpus(_dir.path(), 3), false).unwrap(),
        &tok,
        &PackConfig { seq_len: 4, ..PackConfig::default() },
    )
    .unwrap_err()
    .to_string();
    assert!(corpus_err.contains("too short"), "{corpus_err}");
}

#[test]
fn masks_are_redrawn_each_epoch_and_never_touch_special_tokens() {
    let (_dir, tok, packed) = setup(200);
    let src = TextSource::new(&packed.train, tok.special, masking(&tok), Objective::Mlm, 8, 3);
    let a = src.batch(0, 1).unwrap();
    let again = src.batch(0, 1).unwrap();
    assert!(a.views[0].equal(&again.views[0]), "the same batch twice");
    assert_eq!(a.views.len(), 3);
    assert_eq!(a.views[0].size(), [8, 32]);
    // Another epoch: other sequences, other masks.
    let ids: Vec<usize> = (0..8).collect();
    let (e0, e1) = (src.batch_of(&ids, 0), src.batch_of(&ids, 1));
    assert!(!e0.views[1].equal(&e1.views[1]), "masks are redrawn");
    let labels = &e0.views[1];
    let attn = &e0.views[2];
    let raw: Vec<i64> =
        (0..8).flat_map(|i| packed.train.sequence(i).0.iter().map(|&x| i64::from(x))).collect();
    let raw = Tensor::from_slice(&raw).view([8, 32]);
    let special =
        raw.eq(tok.special.cls).logical_or(&raw.eq(tok.special.sep)).logical_or(&raw.eq(tok.special.pad));
    assert_eq!(labels.masked_select(&special).ne(IGNORE_INDEX).sum(Kind::Int64).int64_value(&[]), 0);
    assert!(attn.equal(&raw.ne(tok.special.pad).to_kind(Kind::Int64)));
    assert_eq!(src.units(&e0), raw.ne(tok.special.pad).sum(Kind::Int64).int64_value(&[]) as usize);
    assert_eq!(src.sample_unit(), "tokens");
}

/// A source that fails at epoch `fail_at`, to simulate a crash.
struct Crashing<'a> {
    inner: TextSource<'a>,
    fail_at: Option<usize>,
}

impl BatchSource for Crashing<'_> {
    fn batches_per_epoch(&self) -> usize {
        self.inner.batches_per_epoch()
    }
    fn batch_size(&self) -> usize {
        self.inner.batch_size()
    }
    fn batch(&self, epoch: usize, index: usize) -> ssl_core::Result<ssl_core::Batch> {
        if Some(epoch) == self.fail_at {
            return Err(ssl_core::Error::Data("simulated crash".into()));
        }
        self.inner.batch(epoch, index)
    }
    fn sample_unit(&self) -> &'static str {
        self.inner.sample_unit()
    }
    fn units(&self, batch: &ssl_core::Batch) -> usize {
        self.inner.units(batch)
    }
}

/// The same starting weights for every run, saved once: tests run in
/// parallel and share libtorch's global generator, so seeding it before
/// building a model does not make two builds equal.
fn initial_weights(dir: &Path, tok: &TextTokenizer) -> std::path::PathBuf {
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = BertForMaskedLm::new(&vs.root(), &tiny(tok.vocab_size())).unwrap();
    let p = dir.join("init.safetensors");
    ssl_core::checkpoint::save_weights(&vs, &p).unwrap();
    p
}

fn train(
    out: &Path,
    tok: &TextTokenizer,
    packed: &ssl_text::pack::PackedCorpus,
    objective: Objective,
    epochs: usize,
    batch_size: usize,
    fail_at: Option<usize>,
) -> (nn::VarStore, TextPretrainer) {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let model = BertForMaskedLm::new(&vs.root(), &tiny(tok.vocab_size())).unwrap();
    let init = out.parent().unwrap().join("init.safetensors");
    ssl_core::checkpoint::load_weights(&init, &mut vs).unwrap();
    let mut m = TextPretrainer { model, objective, pad: tok.special.pad };
    let src = Crashing {
        inner: TextSource::new(&packed.train, tok.special, masking(tok), objective, batch_size, 0),
        fail_at,
    };
    let cfg = TrainConfig {
        epochs,
        optimizer: OptimizerConfig::adamw(5e-3, 0.01),
        warmup_epochs: 1,
        checkpoint_every: 1,
        bf16: false,
        log_every: 5,
        ..TrainConfig::default()
    };
    // A run that crashed is resumed from its last checkpoint.
    let resume = out.join("checkpoints").exists();
    let r = Trainer::new(cfg, Device::Cpu, out, serde_json::json!({})).fit(&mut m, &mut vs, &src, resume);
    assert_eq!(r.is_err(), fail_at.is_some());
    (vs, m)
}

/// The untrained model scores near zero; after training it must beat
/// always guessing the most frequent token ("the", 3 of 13 tokens), which
/// needs the context. (Small transformers sit on that unigram plateau for a
/// few hundred steps before attention takes off, hence short sequences and
/// small batches here.)
#[test]
fn masked_and_next_token_training_learn_the_corpus() {
    let (dir, tok, packed) = setup_with(400, 16);
    initial_weights(dir.path(), &tok);
    for objective in [Objective::Mlm, Objective::Clm] {
        let monitor = HeldoutMonitor {
            source: TextSource::new(&packed.heldout, tok.special, masking(&tok), objective, 16, 99),
            device: Device::Cpu,
        };
        let (_vs0, untrained) =
            train(&dir.path().join(format!("untrained-{objective:?}")), &tok, &packed, objective, 0, 8, None);
        let (before, _) = monitor.measure(&untrained).unwrap();
        let (_vs, m) =
            train(&dir.path().join(format!("{objective:?}")), &tok, &packed, objective, 4, 8, None);
        let (after, loss) = monitor.measure(&m).unwrap();
        eprintln!("{objective:?}: held-out top-1 {before:.3} -> {after:.3}, loss {loss:.3}");
        assert!(before < 0.2, "{objective:?}: untrained top-1 {before}");
        assert!(after > 0.4, "{objective:?}: held-out top-1 {before} -> {after}, loss {loss}");
        let f = tch::no_grad(|| {
            use ssl_core::Method;
            m.features(&Tensor::from_slice(&[2i64, 10, 11, 3, 0, 0]).view([1, 6]))
        });
        assert_eq!(f.size(), [1, 32]);
    }
}

#[test]
fn resumed_pretraining_equals_an_uninterrupted_run() {
    let (dir, tok, packed) = setup(200);
    initial_weights(dir.path(), &tok);
    let (full, _) = train(&dir.path().join("full"), &tok, &packed, Objective::Mlm, 3, 16, None);
    let part = dir.path().join("part");
    let _ = train(&part, &tok, &packed, Objective::Mlm, 3, 16, Some(2));
    let (resumed, _) = train(&part, &tok, &packed, Objective::Mlm, 3, 16, None);
    let w = |vs: &nn::VarStore| vs.variables()["bert.encoder.layer.0.output.dense.weight"].copy();
    let d = (w(&full) - w(&resumed)).abs().max().double_value(&[]);
    assert!(d < 1e-6, "resumed weights differ by {d}");
}
