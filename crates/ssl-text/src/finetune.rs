//! Downstream sequence classification: texts become `[CLS] … [SEP]` ids
//! (truncated to `max_len`), the encoder's last hidden states are
//! mean-pooled over the real tokens, and a linear classifier reads the
//! pooled vector. Two protocols, as the vision side has:
//!
//! - [`frozen_eval`]: the encoder frozen, a linear classifier on its pooled
//!   features ([`ssl_core::eval::linear_probe`]) and a weighted kNN
//!   ([`ssl_core::eval::knn_top1`]);
//! - [`fine_tune`]: encoder and classifier trained together (AdamW,
//!   warmup + cosine, dropout on), as transformers' sequence classification.
//!
//! Both report top-1 and macro-F1 on the test split. [`downstream`] runs
//! them in the experiment flow that vision and audio share: a pretrained
//! encoder against random initialisation, frozen and fine-tuned on
//! fractions of the labels.

use crate::bert::{BertConfig, BertModel};
use crate::corpus::Example;
use crate::error::{Error, Result};
use crate::pretrain::mean_pool;
use crate::tokenizer::TextTokenizer;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;
use ssl_core::eval::{evaluate_encoder, macro_f1, EvalReport, Evaluated, LinearHead, LinearProbeConfig};
use ssl_core::finetune::{FineTuneResult, FractionResult};
use ssl_core::optim::OptimizerConfig;
use std::path::Path;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Tokenised, labelled texts.
#[derive(Clone, Debug)]
pub struct LabeledSet {
    /// `[CLS] … [SEP]` ids per text.
    pub ids: Vec<Vec<i64>>,
    /// Class index per text.
    pub labels: Vec<i64>,
}

/// The class names of a training set, sorted.
pub fn class_names(train: &[Example]) -> Vec<String> {
    let mut names: Vec<String> = train.iter().map(|e| e.label.clone()).collect();
    names.sort();
    names.dedup();
    names
}

/// Tokenises `examples` (from `path`, for errors) with `[CLS]`/`[SEP]`,
/// truncating to `max_len`; a label not among `classes` is an error naming
/// the file and the label.
pub fn encode_examples(
    tok: &TextTokenizer,
    examples: &[Example],
    classes: &[String],
    max_len: usize,
    path: &Path,
) -> Result<LabeledSet> {
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let (cls, sep) = (tok.special.cls, tok.special.sep);
    let body = max_len.saturating_sub(2).max(1);
    let ids = tok
        .encode_batch(&texts)?
        .into_iter()
        .map(|e| {
            let mut v = Vec::with_capacity(body + 2);
            v.push(cls);
            v.extend(e.ids.iter().take(body).map(|&x| i64::from(x)));
            v.push(sep);
            v
        })
        .collect();
    let labels = examples
        .iter()
        .map(|e| {
            classes.iter().position(|c| *c == e.label).map(|i| i as i64).ok_or_else(|| {
                Error::file(
                    path,
                    format!(
                        "label `{}` does not occur in the training set ({})",
                        e.label,
                        classes.join(", ")
                    ),
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok(LabeledSet { ids, labels })
}

/// Rows `idx` padded to their longest: `(ids, attention mask)`, `[B, T]`.
fn pad_batch(set: &LabeledSet, idx: &[usize], pad: i64) -> (Tensor, Tensor) {
    let t = idx.iter().map(|&i| set.ids[i].len()).max().unwrap_or(1);
    let mut ids = Vec::with_capacity(idx.len() * t);
    let mut mask = Vec::with_capacity(idx.len() * t);
    for &i in idx {
        let row = &set.ids[i];
        ids.extend(row.iter().copied().chain(std::iter::repeat_n(pad, t - row.len())));
        mask.extend(std::iter::repeat_n(1i64, row.len()).chain(std::iter::repeat_n(0, t - row.len())));
    }
    let shape = [idx.len() as i64, t as i64];
    (Tensor::from_slice(&ids).view(shape), Tensor::from_slice(&mask).view(shape))
}

/// How many batches [`length_grouped_batches`] makes of `n` rows: each
/// mega-batch of `16 bs` rows is cut into batches of `bs`, the last one
/// partial, and a last batch of one row joins the batch before it.
pub fn grouped_batch_count(n: usize, bs: usize) -> usize {
    let bs = bs.max(1);
    let full = n / (16 * bs);
    let count = full * 16 + (n % (16 * bs)).div_ceil(bs);
    if bs > 1 && n > 1 && n % bs == 1 {
        count - 1
    } else {
        count
    }
}

/// One epoch's batches of `bs` indices into `rows`, grouped by length as
/// transformers' `group_by_length` does: the shuffled indices are cut into
/// mega-batches of 16 batches, each sorted by length and cut into batches,
/// and the batches are shuffled. Every batch then pads to a length close to
/// its texts' own (fortunes: 3× fewer padded tokens than random batches),
/// while which texts meet in a batch stays random. A last batch of one
/// row (`rows.len() % bs == 1`) joins the batch before it: the classifier
/// standardises with its batch's statistics, which one row cannot give
/// (libtorch's running variance would become NaN).
pub fn length_grouped_batches<T>(rows: &[Vec<T>], bs: usize, rng: &mut impl rand::Rng) -> Vec<Vec<usize>> {
    let bs = bs.max(1);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.shuffle(rng);
    let mut batches: Vec<Vec<usize>> = Vec::with_capacity(rows.len().div_ceil(bs));
    for mega in order.chunks_mut(bs * 16) {
        mega.sort_by_key(|&i| std::cmp::Reverse(rows[i].len()));
        batches.extend(mega.chunks(bs).map(<[usize]>::to_vec));
    }
    // With bs > 1 only the very last chunk can hold a single row.
    if bs > 1 && batches.len() > 1 && batches.last().is_some_and(|b| b.len() == 1) {
        let single = batches.pop().unwrap_or_default();
        if let Some(b) = batches.last_mut() {
            b.extend(single);
        }
    }
    batches.shuffle(rng);
    batches
}

/// Mean-pooled last hidden states of every text, `[N, H]` on the CPU.
pub fn pooled_features(bert: &BertModel, set: &LabeledSet, pad: i64, batch_size: usize) -> Result<Tensor> {
    let device = bert.word_embeddings().device();
    // Sorted by length, so that batches pad little; put back in order after.
    let mut order: Vec<usize> = (0..set.ids.len()).collect();
    order.sort_by_key(|&i| set.ids[i].len());
    let mut out: Vec<Tensor> = (0..set.ids.len()).map(|_| Tensor::new()).collect();
    tch::no_grad(|| -> Result<()> {
        for chunk in order.chunks(batch_size.max(1)) {
            let (ids, mask) = pad_batch(set, chunk, pad);
            let (ids, mask) = (ids.to_device(device), mask.to_device(device));
            let h = bert.forward(&ids, None, Some(&mask), false, false)?;
            let f = mean_pool(&h, &mask).to_kind(Kind::Float).to_device(Device::Cpu);
            for (k, &i) in chunk.iter().enumerate() {
                out[i] = f.get(k as i64);
            }
        }
        Ok(())
    })?;
    Ok(Tensor::stack(&out, 0))
}

/// What a classifier scored on the test split.
#[derive(Clone, Debug, Serialize)]
pub struct ClassifierScore {
    /// Top-1 accuracy.
    pub top1: f64,
    /// Macro-averaged F1.
    pub macro_f1: f64,
}

/// What the frozen encoder's pooled features score.
pub struct FrozenScores {
    /// Weighted kNN top-1 (cosine, k = training texts per class up to 200,
    /// temperature 0.1, as the vision and audio reports).
    pub knn_top1: f64,
    /// The linear probe's scores.
    pub linear: ClassifierScore,
    /// The linear probe's classifier (which fine-tuning can start from).
    pub head: LinearHead,
    /// The test features' first two principal components `[M, 2]`.
    pub test_pca: Tensor,
}

/// A kNN classifier and a linear probe on the frozen encoder's pooled
/// features.
pub fn frozen_eval(
    bert: &BertModel,
    train: &LabeledSet,
    test: &LabeledSet,
    num_classes: usize,
    pad: i64,
) -> Result<FrozenScores> {
    let tr = pooled_features(bert, train, pad, 64)?;
    let te = pooled_features(bert, test, pad, 64)?;
    let (train_y, test_y) = (Tensor::from_slice(&train.labels), Tensor::from_slice(&test.labels));
    let k = ssl_core::eval::knn_k(train.ids.len(), num_classes);
    let knn_top1 = ssl_core::eval::knn_top1(&tr, &train_y, &te, &test_y, k, 0.1, num_classes)?;
    let (r, head) = ssl_core::eval::linear_probe(
        &tr,
        &train_y,
        &te,
        &test_y,
        num_classes,
        &LinearProbeConfig::default(),
    )?;
    let linear = ClassifierScore { top1: r.test_top1, macro_f1: r.test_macro_f1 };
    Ok(FrozenScores { knn_top1, linear, head, test_pca: ssl_core::eval::pca_2d(&te) })
}

/// Where fine-tuning's classifier starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadInit {
    /// Random (as transformers' `BertForSequenceClassification`).
    Random,
    /// The linear probe's classifier and feature statistics: LP-FT (Kumar
    /// et al. 2022, <https://arxiv.org/abs/2202.10054>), which keeps a
    /// random head's first, large gradients from reshaping the pretrained
    /// features. On the bundled fortunes it lowered both encoders'
    /// fine-tuned accuracy by 2 to 3 points (docs/results.md).
    Probe,
}

impl std::str::FromStr for HeadInit {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "random" => Ok(Self::Random),
            "probe" => Ok(Self::Probe),
            o => Err(Error::Config(format!("unknown head init `{o}`; expected probe or random"))),
        }
    }
}

/// How to fine-tune.
#[derive(Clone, Debug, Serialize)]
pub struct FineTuneConfig {
    /// Epochs over the training set.
    pub epochs: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Fraction of the steps spent warming up.
    pub warmup: f64,
    /// Seed for shuffling and the classifier's initialisation.
    pub seed: u64,
    /// Fraction of the training labels used (stratified, seeded), as
    /// semi-supervised evaluations do (SimCLR's 1% and 10%); 1: all.
    pub label_fraction: f64,
    /// Where the classifier starts.
    pub head_init: HeadInit,
    /// Fine-tuning runs per encoder (seeds `seed`, `seed + 1`, …), whose
    /// scores are averaged.
    pub seeds: usize,
}

impl FineTuneConfig {
    /// An error naming the setting that cannot work: a label fraction
    /// outside (0, 1]; and, when there are epochs to fine-tune (0: none), a
    /// batch below 2 (the classifier standardises with batch statistics),
    /// no seeds, or a learning rate that is not a positive number.
    pub fn check(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(format!("fine-tuning: {msg}")));
        if !(self.label_fraction > 0.0 && self.label_fraction <= 1.0) {
            return bad(format!("the label fraction must lie in (0, 1], not {}", self.label_fraction));
        }
        if self.epochs == 0 {
            return Ok(());
        }
        if self.batch_size < 2 {
            return bad(format!(
                "a batch size of {} is too small: the classifier standardises each batch with its own \
                 statistics, which need at least 2 texts",
                self.batch_size
            ));
        }
        if self.seeds == 0 {
            return bad("--finetune-seeds must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("the learning rate must be a positive number, not {}", self.lr));
        }
        Ok(())
    }
}

impl Default for FineTuneConfig {
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 32,
            lr: 1e-4,
            weight_decay: 0.01,
            warmup: 0.1,
            seed: 0,
            label_fraction: 1.0,
            head_init: HeadInit::Random,
            seeds: 1,
        }
    }
}

/// A stratified subset of `examples`: `fraction` of each class (at least
/// one), chosen with a generator seeded by `seed`, in the original order.
pub fn subsample(examples: &[Example], fraction: f64, seed: u64) -> Vec<Example> {
    if fraction >= 1.0 {
        return examples.to_vec();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut keep = vec![false; examples.len()];
    for class in class_names(examples) {
        let mut idx: Vec<usize> = (0..examples.len()).filter(|&i| examples[i].label == class).collect();
        idx.shuffle(&mut rng);
        let n = ((idx.len() as f64 * fraction).round() as usize).max(1);
        idx.iter().take(n).for_each(|&i| keep[i] = true);
    }
    examples.iter().zip(keep).filter(|(_, k)| *k).map(|(e, _)| e.clone()).collect()
}

/// An encoder with a linear classifier on its mean-pooled states
/// (`bert.*`, `classifier_norm.*`, `classifier.*`). The pooled vector is
/// standardised per dimension first (a BatchNorm without affine
/// parameters, as the linear probe standardises and as MAE's probing head
/// does): a pretrained post-LN encoder's pooled states carry a large offset
/// shared by every text (its final LayerNorm's bias), which otherwise
/// drowns the differences the classifier must learn from.
pub struct SequenceClassifier {
    /// The encoder.
    pub bert: BertModel,
    norm: nn::BatchNorm,
    classifier: nn::Linear,
    dropout: f64,
}

impl SequenceClassifier {
    /// Builds a classifier under `vs`'s root.
    pub fn new(vs: &nn::VarStore, cfg: &BertConfig, num_classes: usize) -> Result<Self> {
        let bert = BertModel::new(&(vs.root() / "bert"), cfg)?;
        let lin = nn::LinearConfig {
            ws_init: nn::Init::Randn { mean: 0.0, stdev: cfg.initializer_range },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        };
        let classifier = nn::linear(vs.root() / "classifier", cfg.hidden_size, num_classes as i64, lin);
        let bn = nn::BatchNormConfig { affine: false, ..Default::default() };
        let norm = nn::batch_norm1d(vs.root() / "classifier_norm", cfg.hidden_size, bn);
        Ok(Self { bert, norm, classifier, dropout: cfg.hidden_dropout_prob })
    }

    /// Starts the classifier from a linear probe's: its weights, and its
    /// feature mean and variance as the normalisation's running statistics.
    pub fn init_from_probe(&mut self, head: &LinearHead) -> Result<()> {
        let k = self.classifier.ws.size();
        if head.weight.size() != k {
            return Err(Error::Shape(format!("probe weights {:?}, classifier {k:?}", head.weight.size())));
        }
        tch::no_grad(|| {
            self.classifier.ws.copy_(&head.weight);
            if let Some(b) = self.classifier.bs.as_mut() {
                b.copy_(&head.bias);
            }
            self.norm.running_mean.copy_(&head.mean.view([-1]));
            self.norm.running_var.copy_(&head.std.square().view([-1]));
        });
        Ok(())
    }

    /// Class logits, `[B, classes]`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.bert.forward(ids, None, Some(mask), false, train)?;
        let pooled = mean_pool(&h, mask).apply_t(&self.norm, train);
        Ok(self.classifier.forward(&pooled.dropout(self.dropout, train)))
    }
}

/// Copies every `bert.*` variable of `from` into `to` (same names and
/// shapes), e.g. pretrained weights into a classifier.
pub fn copy_encoder(from: &nn::VarStore, to: &nn::VarStore) -> Result<()> {
    let src = from.variables();
    tch::no_grad(|| {
        for (name, mut var) in to.variables().into_iter().filter(|(n, _)| n.starts_with("bert.")) {
            let s = src
                .get(&name)
                .ok_or_else(|| Error::Config(format!("the pretrained model has no `{name}`")))?;
            if s.size() != var.size() {
                return Err(Error::Shape(format!(
                    "`{name}`: pretrained {:?}, classifier {:?}",
                    s.size(),
                    var.size()
                )));
            }
            var.copy_(s);
        }
        Ok(())
    })
}

/// A labelled set's length-grouped batches for fine-tuning
/// ([`length_grouped_batches`]; epoch `e`'s grouping is drawn from
/// `seed ^ (e + 1)`): views `[ids, attention mask]`, padded to the longest
/// text of the batch, and the labels.
struct GroupedBatches<'a> {
    set: &'a LabeledSet,
    batch_size: usize,
    seed: u64,
    pad: i64,
    /// The last epoch's grouping, drawn once per epoch.
    grouping: std::sync::Mutex<Option<(usize, Grouping)>>,
}

/// One epoch's batches of row indices.
type Grouping = std::sync::Arc<Vec<Vec<usize>>>;

impl ssl_core::BatchSource for GroupedBatches<'_> {
    fn batches_per_epoch(&self) -> usize {
        grouped_batch_count(self.set.ids.len(), self.batch_size)
    }
    fn batch_size(&self) -> usize {
        self.batch_size
    }
    fn batch(&self, epoch: usize, index: usize) -> ssl_core::Result<ssl_core::method::Batch> {
        let batches = {
            let mut cached = self.grouping.lock().unwrap_or_else(|p| p.into_inner());
            match cached.as_ref() {
                Some((e, b)) if *e == epoch => b.clone(),
                _ => {
                    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ (epoch as u64 + 1));
                    let b =
                        std::sync::Arc::new(length_grouped_batches(&self.set.ids, self.batch_size, &mut rng));
                    *cached = Some((epoch, b.clone()));
                    b
                }
            }
        };
        let chunk = batches.get(index).ok_or_else(|| {
            ssl_core::Error::Data(format!("batch {index} of an epoch of {} batches", batches.len()))
        })?;
        let (ids, mask) = pad_batch(self.set, chunk, self.pad);
        let y: Vec<i64> = chunk.iter().map(|&i| self.set.labels[i]).collect();
        Ok(ssl_core::method::Batch { views: vec![ids, mask], labels: Some(Tensor::from_slice(&y)) })
    }
}

/// Fine-tunes `model` (its variables in `vs`) on `train`, then scores it on
/// `test`, with ssl-core's fine-tuning loop ([`ssl_core::finetune::train_classifier`]:
/// AdamW, warmup for `cfg.warmup` of the steps then cosine, gradients
/// clipped to norm 1, cross-entropy) over length-grouped batches. The
/// result holds the training loss and the test top-1 after every epoch,
/// for reading the learning curve; the reported score is always the last
/// epoch's (no epoch is chosen on the test set).
pub fn fine_tune(
    model: &SequenceClassifier,
    vs: &nn::VarStore,
    train: &LabeledSet,
    test: &LabeledSet,
    pad: i64,
    cfg: &FineTuneConfig,
) -> Result<FineTuneResult> {
    use ssl_core::BatchSource;
    cfg.check()?;
    if train.ids.len() < 2 {
        return Err(Error::Config(format!(
            "fine-tuning needs at least 2 training texts (the classifier standardises with batch statistics), \
             found {}",
            train.ids.len()
        )));
    }
    let device = vs.device();
    let source = GroupedBatches {
        set: train,
        batch_size: cfg.batch_size.max(1),
        seed: cfg.seed,
        pad,
        grouping: Default::default(),
    };
    let total = source.batches_per_epoch() * cfg.epochs;
    let loop_cfg = ssl_core::finetune::LoopConfig {
        epochs: cfg.epochs,
        optimizer: OptimizerConfig::adamw(cfg.lr, cfg.weight_decay),
        warmup_steps: (total as f64 * cfg.warmup) as usize,
        grad_clip: Some(1.0),
        mixup: ssl_core::mixup::MixupConfig::smoothing_only(0.0),
        seed: cfg.seed,
    };
    let classes = model.classifier.ws.size()[0] as usize;
    let logits = |ids: &Tensor, batch: &ssl_core::method::Batch, train: bool| -> ssl_core::Result<Tensor> {
        Ok(model.forward(ids, &batch.views[1], train)?)
    };
    let (mut curve, mut last) = (Vec::with_capacity(cfg.epochs), None);
    let losses = ssl_core::finetune::train_classifier(
        &logits,
        vs.variables().into_iter().collect(),
        &source,
        classes,
        device,
        &loop_cfg,
        &mut |_| {
            let s = score(model, test, pad, device)?;
            curve.push(s.top1);
            last = Some(s);
            Ok(())
        },
    )?;
    let s = match last {
        Some(s) => s,
        None => score(model, test, pad, device)?,
    };
    Ok(FineTuneResult {
        test_top1: s.top1,
        final_train_loss: losses.last().copied().unwrap_or(f64::NAN),
        train_loss_curve: losses,
        test_macro_f1: Some(s.macro_f1),
        test_top1_curve: curve,
        runs: Vec::new(),
    })
}

/// Top-1 and macro-F1 of a classifier on `test`.
pub fn score(
    model: &SequenceClassifier,
    test: &LabeledSet,
    pad: i64,
    device: Device,
) -> Result<ClassifierScore> {
    let classes = model.classifier.ws.size()[0] as usize;
    // Sorted by length so that batches pad little; predictions go back in order.
    let mut order: Vec<usize> = (0..test.ids.len()).collect();
    order.sort_by_key(|&i| test.ids[i].len());
    let mut pred = vec![0i64; test.ids.len()];
    tch::no_grad(|| -> Result<()> {
        for chunk in order.chunks(64) {
            let (ids, mask) = pad_batch(test, chunk, pad);
            let logits = model.forward(&ids.to_device(device), &mask.to_device(device), false)?;
            let p = Vec::<i64>::try_from(logits.argmax(-1, false).to_device(Device::Cpu))
                .map_err(|e| Error::Shape(format!("predictions: {e}")))?;
            chunk.iter().zip(p).for_each(|(&i, c)| pred[i] = c);
        }
        Ok(())
    })?;
    let pred = Tensor::from_slice(&pred);
    let y = Tensor::from_slice(&test.labels);
    let top1 = pred.eq_tensor(&y).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    Ok(ClassifierScore { top1, macro_f1: macro_f1(&pred, &y, classes) })
}

/// The labelled split files of a folder: `train.jsonl` or `train.csv`, and
/// `test.jsonl` or `test.csv`.
pub fn labeled_files(dir: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    let find =
        |stem: &str| {
            ["jsonl", "csv"].iter().map(|e| dir.join(format!("{stem}.{e}"))).find(|p| p.is_file()).ok_or_else(
                || Error::file(dir, format!("no {stem}.jsonl or {stem}.csv in the labelled folder")),
            )
        };
    Ok((find("train")?, find("test")?))
}

/// Reads a labelled folder and checks it (both files parse, at least two
/// labels, every test label occurs in training), so that a bad file is
/// reported before any training. Returns the class names.
pub fn check_labeled(dir: &Path) -> Result<Vec<String>> {
    let (train_path, test_path) = labeled_files(dir)?;
    let train = crate::corpus::read_labeled(&train_path)?;
    let test = crate::corpus::read_labeled(&test_path)?;
    let classes = class_names(&train);
    if classes.len() < 2 {
        return Err(Error::file(&train_path, "a classification task needs at least two labels"));
    }
    if let Some(e) = test.iter().find(|e| !classes.contains(&e.label)) {
        return Err(Error::file(
            &test_path,
            format!("label `{}` does not occur in the training set ({})", e.label, classes.join(", ")),
        ));
    }
    Ok(classes)
}

/// What [`downstream`] measured on a labelled task.
pub struct Downstream {
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// Training texts (after `label_fraction`).
    pub train_examples: usize,
    /// Test texts.
    pub test_examples: usize,
    /// The pretrained encoder's frozen features: kNN, linear probe and
    /// linear probes on 1% and 10% of the labels.
    pub ssl: EvalReport,
    /// The same for the architecture at random initialisation (seeded).
    pub random_init: EvalReport,
    /// Both encoders' test embeddings (the pretrained one first).
    pub scatters: Vec<ssl_core::plots::Scatter>,
    /// Fine-tuning of both encoders on each fraction of the labels asked for.
    pub finetune: Vec<FractionResult>,
}

impl Downstream {
    /// Seeds of the fine-tuning on all labels on which the pretrained
    /// encoder scored higher than random initialisation (the runs are
    /// paired: one seed shuffles the same batches and draws the same head
    /// for both). `None` without fine-tuning on all labels.
    pub fn ssl_ahead(&self) -> Option<usize> {
        let row = self.finetune.iter().find(|r| r.plan.fraction >= 1.0)?;
        Some(row.ssl.runs.iter().zip(&row.random_init.runs).filter(|(a, b)| a > b).count())
    }
}

/// What a text run adds to the shared report and headline
/// (`ssl_cli::finish_run` writes the rest): the task's size (`classes`,
/// `train_examples`, `test_examples`) and, with several fine-tuning seeds
/// on all labels, `finetune_ssl_ahead` (see [`Downstream::ssl_ahead`]).
pub fn add_downstream(report: &mut serde_json::Value, headline: &mut String, d: &Downstream) {
    report["classes"] = serde_json::json!(d.classes);
    report["train_examples"] = serde_json::json!(d.train_examples);
    report["test_examples"] = serde_json::json!(d.test_examples);
    headline.push_str(&format!(
        "\n  downstream: {} classes, {} training / {} test texts",
        d.classes.len(),
        d.train_examples,
        d.test_examples
    ));
    let seeds = d.finetune.iter().find(|r| r.plan.fraction >= 1.0).map_or(0, |r| r.ssl.runs.len());
    if let (Some(ahead), true) = (d.ssl_ahead(), seeds > 1) {
        report["finetune_ssl_ahead"] = serde_json::json!(ahead);
        headline.push_str(&format!(
            "\n  fine-tuned on all labels: mean of {seeds} seeds, the pretrained encoder ahead on {ahead}"
        ));
    }
}

/// The downstream half of the experiment flow that vision and audio share
/// ([`ssl_core::eval::evaluate_encoder`], then
/// [`ssl_core::finetune::over_fractions`]), for text: the `bert.*` weights
/// of `pretrained` and the same architecture at random initialisation
/// (drawn with `ft.seed`) are each evaluated on frozen mean-pooled features
/// of the labelled folder `dir` (kNN, linear probe, linear probes on 1% and
/// 10% of the labels; the PCA plots go to `plots/pca_ssl.png` and
/// `plots/pca_random_init.png`), then fine-tuned on each of `fractions` of
/// the training labels (class-balanced subsets fixed by the seed, as many
/// optimizer steps as `ft.epochs` on all labels). Fine-tuning runs
/// `ft.seeds` times per encoder (seeds `ft.seed`, `ft.seed + 1`, …; at
/// random initialisation each seed also draws the encoder's weights) and
/// reports the mean: on a small test set one run's top-1 moves by a point
/// or more from seed to seed. Sequences are truncated to the model's
/// positions; `ft.label_fraction` first keeps a stratified part of the
/// training texts for everything.
pub fn downstream(
    pretrained: &nn::VarStore,
    cfg: &BertConfig,
    tok: &TextTokenizer,
    dir: &Path,
    ft: &FineTuneConfig,
    fractions: &[f64],
    plots: &Path,
) -> Result<Downstream> {
    ft.check()?;
    let device = pretrained.device();
    let (train_path, test_path) = labeled_files(dir)?;
    let all_train = crate::corpus::read_labeled(&train_path)?;
    let classes = class_names(&all_train);
    let train_ex = subsample(&all_train, ft.label_fraction, ft.seed);
    let test_ex = crate::corpus::read_labeled(&test_path)?;
    if classes.len() < 2 {
        return Err(Error::file(&train_path, "a classification task needs at least two labels"));
    }
    let max_len = cfg.max_position_embeddings as usize;
    let train = encode_examples(tok, &train_ex, &classes, max_len, &train_path)?;
    let test = encode_examples(tok, &test_ex, &classes, max_len, &test_path)?;
    let (pad, k) = (tok.special.pad, classes.len());
    // A classifier on the pretrained encoder (`from`) or on a fresh one,
    // its head (and fresh encoder) drawn with `seed`.
    let classifier = |from: Option<&nn::VarStore>, seed: u64| -> Result<(nn::VarStore, SequenceClassifier)> {
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let model = SequenceClassifier::new(&vs, cfg, k)?;
        if let Some(src) = from {
            copy_encoder(src, &vs)?;
        }
        Ok((vs, model))
    };
    let (train_y, test_y) = (Tensor::from_slice(&train.labels), Tensor::from_slice(&test.labels));
    let evaluate = |from: Option<&nn::VarStore>, title: &str, png: &str| -> Result<Evaluated> {
        let (_, model) = classifier(from, ft.seed)?;
        let tr = pooled_features(&model.bert, &train, pad, 64)?;
        let te = pooled_features(&model.bert, &test, pad, 64)?;
        Ok(evaluate_encoder(tr, &train_y, te, &test_y, &classes, ft.seed, title, &plots.join(png))?)
    };
    let (ssl, ssl_scatter) =
        evaluate(Some(pretrained), "Test embeddings, pretrained encoder", "pca_ssl.png")?.into_parts();
    let (random_init, rnd_scatter) =
        evaluate(None, "Test embeddings, random init", "pca_random_init.png")?.into_parts();
    let finetune = if ft.epochs > 0 && !fractions.is_empty() {
        ssl_core::finetune::over_fractions(
            fractions,
            &train.labels,
            ft.batch_size.max(1),
            ft.epochs,
            ft.seed,
            |plan, subset| -> Result<(FineTuneResult, FineTuneResult)> {
                let part = match subset {
                    Some(ids) => std::borrow::Cow::Owned(LabeledSet {
                        ids: ids.iter().map(|&i| train.ids[i].clone()).collect(),
                        labels: ids.iter().map(|&i| train.labels[i]).collect(),
                    }),
                    None => std::borrow::Cow::Borrowed(&train),
                };
                let tune = |from: Option<&nn::VarStore>| -> Result<FineTuneResult> {
                    let mut runs = Vec::with_capacity(ft.seeds.max(1));
                    // LP-FT: the pretrained encoder's probe is the same for
                    // every seed (frozen features, a probe that draws
                    // nothing), so it is trained once; at random
                    // initialisation each seed's encoder needs its own.
                    let mut pretrained_head: Option<LinearHead> = None;
                    for r in 0..ft.seeds.max(1) {
                        let seed = ft.seed + r as u64;
                        let (vs, mut model) = classifier(from, seed)?;
                        if ft.head_init == HeadInit::Probe && from.is_none() {
                            model.init_from_probe(&frozen_eval(&model.bert, &part, &test, k, pad)?.head)?;
                        } else if ft.head_init == HeadInit::Probe {
                            if pretrained_head.is_none() {
                                pretrained_head = Some(frozen_eval(&model.bert, &part, &test, k, pad)?.head);
                            }
                            if let Some(head) = &pretrained_head {
                                model.init_from_probe(head)?;
                            }
                        }
                        let run_cfg = FineTuneConfig {
                            epochs: plan.epochs,
                            batch_size: plan.batch_size,
                            seed,
                            ..ft.clone()
                        };
                        runs.push(fine_tune(&model, &vs, &part, &test, pad, &run_cfg)?);
                    }
                    FineTuneResult::mean(&runs).ok_or_else(|| Error::Config("no fine-tuning run".into()))
                };
                Ok((tune(Some(pretrained))?, tune(None)?))
            },
        )?
    } else {
        Vec::new()
    };
    Ok(Downstream {
        classes,
        train_examples: train_ex.len(),
        test_examples: test_ex.len(),
        ssl,
        random_init,
        scatters: vec![ssl_scatter, rnd_scatter],
        finetune,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_grouped_batches_cover_every_row_once_and_pad_less() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let rows: Vec<Vec<u8>> = (0..1000).map(|i| vec![0; 1 + (i * 7919) % 128]).collect();
        let batches = length_grouped_batches(&rows, 32, &mut rng);
        assert_eq!(batches.len(), 1000usize.div_ceil(32));
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 32));
        let mut seen: Vec<usize> = batches.concat();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        let padded = |bs: &[Vec<usize>]| -> usize {
            bs.iter().map(|b| b.len() * b.iter().map(|&i| rows[i].len()).max().unwrap()).sum()
        };
        let mut order: Vec<usize> = (0..1000).collect();
        order.shuffle(&mut rng);
        let random: Vec<Vec<usize>> = order.chunks(32).map(<[usize]>::to_vec).collect();
        let (grouped, plain) = (padded(&batches), padded(&random));
        assert!(grouped * 3 < plain * 2, "grouped {grouped} padded tokens, random {plain}");
        // Seeded: the same generator state gives the same batches.
        let again = length_grouped_batches(&rows, 32, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        assert_eq!(again, batches);
    }

    #[test]
    fn no_batch_holds_a_single_text() {
        // 33 = 32 + 1, 513 = one whole mega-batch + 1, 545 = 512 + 32 + 1:
        // the single row joins the batch before it; 1000 and 1 stay as cut.
        for (n, want) in [(33, 1), (513, 16), (545, 17), (1000, 32), (2, 1), (1, 1)] {
            let rows: Vec<Vec<u8>> = (0..n).map(|i| vec![0; 1 + (i * 7919) % 128]).collect();
            let batches = length_grouped_batches(&rows, 32, &mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
            assert_eq!((batches.len(), grouped_batch_count(n, 32)), (want, want), "{n} rows");
            assert!(
                n < 2 || batches.iter().all(|b| b.len() >= 2),
                "{n} rows: {:?}",
                batches.iter().map(Vec::len)
            );
            let mut seen = batches.concat();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>());
        }
        let small = FineTuneConfig { batch_size: 1, ..FineTuneConfig::default() };
        let err = small.check().unwrap_err().to_string();
        assert!(err.contains("a batch size of 1 is too small"), "{err}");
        for bad in [0.0, -0.5, 1.5, f64::NAN] {
            let cfg = FineTuneConfig { label_fraction: bad, ..FineTuneConfig::default() };
            assert!(cfg.check().unwrap_err().to_string().contains("label fraction"), "{bad}");
        }
        assert!(FineTuneConfig::default().check().is_ok());
    }

    #[test]
    fn subsampling_is_stratified_seeded_and_ordered() {
        let ex: Vec<Example> = (0..100)
            .map(|i| Example {
                text: format!("t{i}"),
                label: if i % 4 == 0 { "a".into() } else { "b".into() },
            })
            .collect();
        let s = subsample(&ex, 0.1, 3);
        let count = |l: &str| s.iter().filter(|e| e.label == l).count();
        assert_eq!((count("a"), count("b")), (3, 8)); // 10% of 25 and of 75, rounded
        assert_eq!(s, subsample(&ex, 0.1, 3));
        assert_ne!(s, subsample(&ex, 0.1, 4));
        let pos: Vec<usize> = s.iter().map(|e| e.text[1..].parse().unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(subsample(&ex, 1.0, 3), ex);
        // A tiny fraction keeps one example per class.
        assert_eq!(subsample(&ex, 0.001, 0).len(), 2);
    }

    /// LP-FT's starting point: the classifier in evaluation mode computes
    /// exactly the linear probe's logits, so fine-tuning starts at the
    /// probe's accuracy rather than at chance.
    #[test]
    fn a_head_from_the_probe_reproduces_the_probe() {
        let cfg = BertConfig {
            vocab_size: 50,
            hidden_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 32,
            max_position_embeddings: 16,
            ..BertConfig::base(50)
        };
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut model = SequenceClassifier::new(&vs, &cfg, 3).unwrap();
        // Texts whose class is which of three token ranges they draw from.
        let set = LabeledSet {
            ids: (0..60i64)
                .map(|i| {
                    let c = i % 3;
                    let mut ids = vec![2];
                    ids.extend((0..3 + i % 5).map(|j| 5 + c * 15 + (i + j) % 15));
                    ids.push(3);
                    ids
                })
                .collect(),
            labels: (0..60).map(|i| i % 3).collect(),
        };
        let FrozenScores { linear: score, head, knn_top1, .. } =
            frozen_eval(&model.bert, &set, &set, 3, 0).unwrap();
        assert!(knn_top1 > 0.6, "kNN {knn_top1} near chance (1/3)");
        assert!(score.top1 > 0.9, "{}", score.top1);
        let f = pooled_features(&model.bert, &set, 0, 64).unwrap();
        let probe_logits = ((&f - &head.mean) / &head.std).linear(&head.weight, Some(&head.bias));
        let before = tch::no_grad(|| {
            let (ids, mask) = pad_batch(&set, &(0..60).collect::<Vec<_>>(), 0);
            model.forward(&ids, &mask, false).unwrap()
        });
        assert!((&before - &probe_logits).abs().max().double_value(&[]) > 0.1, "a random head differs");
        model.init_from_probe(&head).unwrap();
        let (ids, mask) = pad_batch(&set, &(0..60).collect::<Vec<_>>(), 0);
        let after = tch::no_grad(|| model.forward(&ids, &mask, false).unwrap());
        let d = (&after - &probe_logits).abs().max().double_value(&[]);
        let scale = probe_logits.abs().max().double_value(&[]);
        // BatchNorm adds its eps (1e-5) to the variance.
        assert!(d < 1e-3 * scale.max(1.0), "head differs from the probe by {d} (logits up to {scale})");
        assert_eq!("probe".parse::<HeadInit>().unwrap(), HeadInit::Probe);
        assert!("lp".parse::<HeadInit>().is_err());
    }
}
