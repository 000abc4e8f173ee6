//! `train-text`: BERT-style pre-training (masked tokens, or next tokens
//! with `--objective clm`) on a corpus, then the downstream comparison of
//! the pretrained encoder against the same encoder from scratch.
//!
//! Run through `cargo xtask train-text [ARGS]`. With no arguments it trains
//! a WordPiece tokenizer and a small BERT on the bundled fortunes corpus on
//! the CPU, and classifies fortunes by category.

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;
use ssl_core::device::device_name;
use ssl_core::metrics::write_json_atomic;
use ssl_core::optim::OptimizerConfig;
use ssl_core::trainer::{TrainConfig, Trainer};
use ssl_text::bert::{BertConfig, BertForMaskedLm};
use ssl_text::corpus::Corpus;
use ssl_text::finetune::{add_downstream, downstream, FineTuneConfig};
use ssl_text::masking::MaskingConfig;
use ssl_text::pack::{pack_corpus, PackConfig};
use ssl_text::pretrain::{HeldoutMonitor, Objective, TextPretrainer, TextSource};
use ssl_text::tokenizer::TextTokenizer;
use std::path::PathBuf;
use std::time::Instant;
use tch::nn;

#[derive(Parser, Debug, Clone, serde::Serialize)]
#[command(
    version,
    args_override_self = true,
    about = "Masked-token (BERT) or next-token (GPT-style) pre-training of a text encoder",
    mut_arg("out", |a| a.help("Run folder. Default: runs/text-<objective>-<corpus name>")),
    mut_arg("resume", |a| a.help("Continue from the run folder's latest checkpoint (and its tokenizer)")),
    mut_arg("checkpoint_every", |a| a.help("Checkpoint every N epochs (the last one always) [default: 1]"))
)]
struct Args {
    /// Corpus: a .txt file (one document per line), a .jsonl file (a `text`
    /// field per line) or a folder of them. Default: the bundled fortunes.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Plain-text documents are paragraphs separated by blank lines.
    #[arg(long)]
    paragraphs: bool,
    /// Labelled folder with train.jsonl and test.jsonl (or .csv), one
    /// `{"text": "...", "label": "..."}` per line. Default: the bundled
    /// fortune categories when the corpus is the bundled one.
    #[arg(long)]
    labeled: Option<PathBuf>,
    /// mlm (BERT) or clm (GPT-style next token).
    #[arg(long, default_value = "mlm")]
    objective: String,
    /// Pre-training epochs.
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    /// Use this tokenizer.json instead of training a WordPiece tokenizer.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Vocabulary size of the trained WordPiece tokenizer.
    #[arg(long, default_value_t = 4000)]
    vocab_size: usize,
    /// Encoder shape: tiny (2 layers, 128 wide), mini (4 x 256), small
    /// (4 x 512), base (12 x 768).
    #[arg(long, default_value = "tiny")]
    model: String,
    /// Pre-LN layout (Megatron-BERT) instead of BERT's post-LN.
    #[arg(long)]
    pre_ln: bool,
    /// Tie the MLM decoder to the word embeddings, as BERT does. Off by
    /// default: on the bundled corpus the untied decoder gave better
    /// downstream features on average (docs/results.md). Both export to
    /// transformers.
    #[arg(long)]
    tie_decoder: bool,
    /// Tokens per sequence ([CLS] and [SEP] included).
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Sequences per optimizer step, over all ranks.
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 2e-3, value_parser = ssl_cli::positive)]
    lr: f64,
    /// Mask whole words rather than single pieces.
    #[arg(long)]
    whole_word: bool,
    /// Fraction of tokens selected for prediction.
    #[arg(long, default_value_t = 0.15, value_parser = ssl_cli::fraction)]
    mlm_probability: f64,
    /// Fine-tuning's classifier starts at random (random) or from the
    /// linear probe's (probe: LP-FT), for the pretrained and the
    /// from-scratch encoder alike.
    #[arg(long, default_value = "random")]
    head_init: String,
    /// Dropout (hidden and attention) during pretraining. Fine-tuning, the
    /// exported config and the from-scratch baseline use BERT's 0.1.
    #[arg(long, default_value_t = 0.1)]
    dropout: f64,
    /// Fine-tuning epochs of the downstream comparison (0: linear probes only).
    #[arg(long, default_value_t = 8)]
    finetune_epochs: usize,
    /// Peak learning rate of fine-tuning.
    #[arg(long, default_value_t = 1e-3, value_parser = ssl_cli::positive)]
    finetune_lr: f64,
    /// Fine-tuning runs per encoder (seeds --seed, --seed + 1, …); the
    /// report gives their mean and each run.
    #[arg(long, default_value_t = 3)]
    finetune_seeds: usize,
    /// Fraction of the downstream training labels used (stratified), as
    /// semi-supervised evaluations do; 1: all.
    #[arg(long, default_value_t = 1.0, value_parser = ssl_cli::fraction)]
    label_fraction: f64,
    /// Fractions of the downstream training labels to fine-tune on
    /// (class-balanced, fixed by the seed; each for as many optimizer steps
    /// as the run on all labels; 1: all), e.g. 0.01,0.1,1. Text fine-tunes
    /// on all labels only by default (vision and audio: 0.01,0.1,1), since
    /// each fraction runs --finetune-seeds times per encoder. Linear probes
    /// with 1% and 10% of the labels always run.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    finetune_fractions: Vec<f64>,
    /// Use at most this many documents of the corpus (0: all).
    #[arg(long, default_value_t = 0)]
    max_docs: usize,
    /// Shared run options.
    #[command(flatten)]
    #[serde(flatten)]
    run: ssl_cli::RunArgs,
}

fn model_config(name: &str, vocab: i64, positions: i64, pre_ln: bool) -> Result<BertConfig> {
    let base = BertConfig { max_position_embeddings: positions, pre_ln, ..BertConfig::base(vocab) };
    let (layers, hidden, heads) = match name {
        "tiny" => (2, 128, 2),
        "mini" => (4, 256, 4),
        "small" => (4, 512, 8),
        "base" => (12, 768, 12),
        o => bail!("unknown model `{o}`; expected tiny, mini, small or base"),
    };
    Ok(BertConfig {
        num_hidden_layers: layers,
        hidden_size: hidden,
        num_attention_heads: heads,
        intermediate_size: 4 * hidden,
        ..base
    })
}

/// What `--seeds` summarises.
const SEED_SPEC: ssl_core::seeds::SeedSpec = ssl_core::seeds::SeedSpec {
    figures: &["mlm_top1", "heldout_loss", "ssl", "random_init", "wall_s"],
    paired: ("ssl", "random_init"),
};

fn main() -> Result<()> {
    // Activations are freed and allocated again every step: keep their
    // pages unless $SSL_RS_CPU_ALLOCATOR says otherwise.
    ssl_core::device::tune_cpu_allocator()?;
    let args: Args = ssl_cli::parse();
    let result =
        ssl_cli::over_seeds(&args.run, &SEED_SPEC, |run| train(&Args { run: run.clone(), ..args.clone() }));
    if let Err(e) = &result {
        // A SIGTERM or SIGINT: the checkpoint is written; say how to resume.
        ssl_cli::exit_if_interrupted(e);
    }
    result
}

/// One run (one seed); its folder and report on rank 0.
fn train(args: &Args) -> Result<Option<ssl_cli::Finished>> {
    let started = Instant::now();
    let objective: Objective = args.objective.parse()?;
    let head_init: ssl_text::finetune::HeadInit = args.head_init.parse()?;
    if args.batch_size < 1 {
        bail!("--batch-size must be at least 1");
    }
    let run = args.run.start()?;
    let (device, seed, main) = (run.device, run.seed, run.is_main());
    // Checked before pretraining, not after it.
    let ft = FineTuneConfig {
        epochs: args.finetune_epochs,
        lr: args.finetune_lr,
        seed,
        label_fraction: args.label_fraction,
        head_init,
        seeds: args.finetune_seeds,
        ..FineTuneConfig::default()
    };
    ft.check()?;
    let corpus_name = args
        .corpus
        .as_ref()
        .and_then(|p| p.file_stem())
        .map_or("fortunes".to_string(), |s| s.to_string_lossy().into_owned());
    let out =
        args.run.run_dir(|| PathBuf::from("runs").join(format!("text-{}-{}", args.objective, corpus_name)));
    if let ssl_cli::EarlierSeed::Finished(kept) = run.earlier_seed(&args.run, &out)? {
        return Ok(kept);
    }
    if main {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    }
    // Rank 0 writes the bundled corpus and the tokenizer into the run
    // folder; the other ranks read them there once it has (so with several
    // machines the run folder must be on a filesystem they share, as for
    // --resume).
    let (corpus_path, labeled) = match &args.corpus {
        Some(c) => (c.clone(), args.labeled.clone()),
        None => {
            // `write_fortunes` writes into `data/fortunes`, which the other
            // ranks read once rank 0 has written it.
            let dir = out.join("data").join("fortunes");
            if main {
                let written = ssl_text::bundled::write_fortunes(&out.join("data"))?;
                debug_assert_eq!(written, dir);
            }
            (dir.join("corpus.txt"), Some(args.labeled.clone().unwrap_or(dir)))
        }
    };
    run.group.barrier()?;
    let corpus = Corpus::open(&corpus_path, args.paragraphs)?;
    if let Some(dir) = &labeled {
        ssl_text::finetune::check_labeled(dir)?;
    }

    // The tokenizer: given, resumed, or trained on the corpus.
    let tok_path = out.join("tokenizer.json");
    let tok = match (&args.tokenizer, (args.run.resume || !main) && tok_path.is_file()) {
        (Some(p), _) => TextTokenizer::load(p)?,
        (None, true) => TextTokenizer::load(&tok_path)?,
        (None, false) if !main => bail!(
            "rank {} of {}: rank 0's tokenizer {} is missing: the ranks must share the run folder",
            run.group.rank(),
            run.group.world_size(),
            tok_path.display()
        ),
        (None, false) => {
            eprintln!(
                "training a WordPiece tokenizer ({} tokens) on {} ...",
                args.vocab_size,
                corpus_path.display()
            );
            TextTokenizer::train_wordpiece(&corpus, args.vocab_size, 2)?
        }
    };
    if main && !args.run.print_config {
        tok.save(&tok_path)?;
    }
    let pack_cfg = PackConfig { seq_len: args.seq_len, max_docs: args.max_docs, ..PackConfig::default() };
    let t0 = Instant::now();
    let packed = pack_corpus(&corpus, &tok, &pack_cfg)?;
    if main {
        eprintln!(
        "{}: {} documents, {} training sequences ({} tokens), {} held out; vocabulary {}; tokenized in {:.1} s; device {}",
        corpus_path.display(),
        packed.documents,
        packed.train.len(),
        packed.train.tokens,
        packed.heldout.len(),
        tok.vocab_size(),
        t0.elapsed().as_secs_f64(),
        run.describe()
    );
    }
    ssl_cli::check_batch_size(
        args.batch_size,
        packed.train.len(),
        &format!("training sequences of {}", corpus_path.display()),
    )?;

    ssl_cli::refuse_set(
        &args.run.set,
        &["hidden_dropout_prob", "attention_probs_dropout_prob"],
        "pretraining's dropout is --dropout; the exported model and fine-tuning keep BERT's 0.1",
    )?;
    ssl_cli::check_fractions(&args.finetune_fractions)?;
    if args.finetune_seeds < 1 {
        bail!("--finetune-seeds must be at least 1");
    }
    if !(0.0..1.0).contains(&args.dropout) {
        bail!("--dropout must be in [0, 1), got {}", args.dropout);
    }
    // `cfg`: the architecture as exported and fine-tuned (BERT's dropout);
    // `pretrain_cfg`: the same with the pretraining dropout.
    let cfg = BertConfig {
        tie_word_embeddings: args.tie_decoder,
        ..model_config(&args.model, tok.vocab_size(), args.seq_len as i64, args.pre_ln)?
    };
    let cfg = ssl_core::config::apply(cfg, &args.run.set, "the BERT config")?;
    let pretrain_cfg = BertConfig {
        hidden_dropout_prob: args.dropout,
        attention_probs_dropout_prob: args.dropout,
        ..cfg.clone()
    };
    let masking = MaskingConfig {
        mlm_probability: args.mlm_probability,
        mask_token_id: tok.special.mask,
        vocab_size: tok.vocab_size(),
        whole_word: args.whole_word,
    };
    let mut train_cfg = TrainConfig {
        epochs: args.epochs,
        optimizer: OptimizerConfig::adamw(args.lr, 0.01),
        final_lr: 0.0,
        grad_clip: Some(1.0),
        keep_checkpoints: 2,
        online_probe_classes: None,
        monitor_every: 1,
        ..TrainConfig::default()
    };
    // Checkpoints every epoch, 1 warmup epoch.
    args.run.apply_to(&mut train_cfg, 1, 1);
    let mut config = json!({
        "objective": objective, "corpus": corpus_path, "labeled": labeled, "device": device_name(device),
        "world_size": run.group.world_size(),
        "seed": seed, "batch_size": args.batch_size, "seq_len": args.seq_len, "train": train_cfg,
        "model": cfg, "pretrain_dropout": args.dropout, "masking": masking, "pack": pack_cfg, "tokenizer": tok_path,
        "torch_threads": tch::get_num_threads(),
    });
    ssl_cli::record_args(&mut config, args, &out)?;
    // --resume refuses settings that would change the run; a longer
    // --epochs is allowed and said.
    if let Some(note) = ssl_cli::check_resume_in(&out, &config, args.run.resume)? {
        if main {
            eprintln!("{note}");
        }
    }
    if ssl_cli::print_config(&args.run, &config) {
        return Ok(None);
    }
    if main {
        write_json_atomic(&out.join("config.json"), &config)?;
    }
    let mut vs = nn::VarStore::new(device);
    let model = ssl_core::config::build_with("the BERT model", &args.run.set, || {
        BertForMaskedLm::new(&vs.root(), &pretrain_cfg)
    })?;
    let mut method = TextPretrainer { model, objective, pad: tok.special.pad };
    let source =
        TextSource::new(&packed.train, tok.special, masking.clone(), objective, args.batch_size, seed);
    let monitor = HeldoutMonitor {
        source: TextSource::new(&packed.heldout, tok.special, masking.clone(), objective, 64, 12345),
        device,
    };
    let trainer = Trainer::new(train_cfg, device, &out, config).with_stop(ssl_cli::stop_flag()?);
    let summary = trainer.fit_with_monitor(&mut method, &mut vs, &source, args.run.resume, Some(&monitor))?;
    if !main {
        // Rank 0 evaluates, exports and reports; the other ranks are done.
        return Ok(None);
    }
    let (heldout_top1, heldout_loss) = monitor.measure(&method)?;

    // transformers-loadable export: config.json, model.safetensors, tokenizer.json.
    let hf = out.join("hf");
    std::fs::create_dir_all(&hf)?;
    ssl_text::hf::save_weights(&vs, &cfg, &hf.join("model.safetensors"))?;
    write_json_atomic(&hf.join("config.json"), &cfg.hf_config_json(tok.special.pad))?;
    tok.save(&hf.join("tokenizer.json"))?;
    write_check_logits(&method.model, &packed, tok.special.pad, &out.join("check_logits.safetensors"))?;

    let d = match &labeled {
        Some(dir) => {
            eprintln!(
                "evaluating the pretrained and a randomly initialised encoder on {} ...",
                dir.display()
            );
            Some(downstream(&vs, &cfg, &tok, dir, &ft, &args.finetune_fractions, &out)?)
        }
        None => None,
    };
    let wall = started.elapsed().as_secs_f64();
    let mut report = json!({
        "objective": objective,
        "mlm_top1": heldout_top1,
        "heldout_loss": heldout_loss,
        "heldout_sequences": packed.heldout.len(),
        "wall_s": wall,
        "device": device_name(device),
        "train": summary,
        "tokens_per_s": summary.samples_per_s,
        "vocab_size": tok.vocab_size(),
        "model": cfg,
        "pretrain_dropout": args.dropout,
    });
    let what = if objective == Objective::Mlm { "masked-token" } else { "next-token" };
    let heldout_line = if packed.heldout.is_empty() {
        format!(
            "no held-out text: every {}th document is held out, and the corpus has {}",
            pack_cfg.holdout_every, packed.documents
        )
    } else {
        format!("held-out {what} top-1: {:.2}%", 100.0 * heldout_top1)
    };
    let mut headline = format!(
        "{} on {} ({} epochs, {:.0} s, {}, {:.0} tokens/s)\n  {heldout_line}",
        method_name(objective),
        corpus_name,
        summary.epochs,
        wall,
        device_name(device),
        summary.samples_per_s,
    );
    let Some(d) = d else {
        // No labelled folder: the pretraining figures alone.
        write_json_atomic(&out.join("report.json"), &report)?;
        let html = ssl_cli::write_page(&out, &ssl_core::html_report::Extras::default());
        println!("\n{headline}");
        println!("report: {} and {html}", out.join("report.json").display());
        return Ok(Some(ssl_cli::Finished { dir: out, report }));
    };
    add_downstream(&mut report, &mut headline, &d);
    let finetune_config = json!(ft);
    let finetune = (!d.finetune.is_empty()).then_some((d.finetune.as_slice(), finetune_config));
    let extras = ssl_core::html_report::Extras { scatters: d.scatters.clone(), pictures: Vec::new() };
    Ok(Some(ssl_cli::finish_run(out, report, &headline, (&d.ssl, &d.random_init), finetune, &extras)?))
}

/// Rust's MLM logits for the first two held-out (or training) sequences,
/// for `tools/golden/check_hf_export.py` to compare with transformers'.
fn write_check_logits(
    model: &BertForMaskedLm,
    packed: &ssl_text::pack::PackedCorpus,
    pad: i64,
    path: &std::path::Path,
) -> Result<()> {
    let set = if packed.heldout.len() >= 2 { &packed.heldout } else { &packed.train };
    let n = set.len().min(2);
    let t = set.seq_len.min(32);
    let ids: Vec<i64> = (0..n).flat_map(|i| set.sequence(i).0[..t].iter().map(|&x| i64::from(x))).collect();
    let device = model.bert.word_embeddings().device();
    let ids = tch::Tensor::from_slice(&ids).view([n as i64, t as i64]);
    let mask = ids.ne(pad).to_kind(tch::Kind::Int64);
    let logits = tch::no_grad(|| {
        model.logits(&ids.to_device(device), None, Some(&mask.to_device(device)), false, false)
    })?
    .to_device(tch::Device::Cpu)
    .to_kind(tch::Kind::Float);
    tch::Tensor::write_safetensors(&[("input_ids", ids), ("logits", logits)], path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn method_name(o: Objective) -> &'static str {
    match o {
        Objective::Mlm => "BERT masked-token pre-training",
        Objective::Clm => "GPT-style next-token pre-training",
    }
}
