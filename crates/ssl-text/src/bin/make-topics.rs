//! `make-topics`: writes the generated topic task (`ssl_text::topics`): an
//! unlabelled corpus of pseudo-word documents and a labelled set whose
//! training and test documents draw on different halves of each topic's
//! words, so that only the corpus links them. `cargo xtask gen-topics`
//! runs it; then `cargo xtask train-text --corpus DIR/corpus.txt --labeled
//! DIR/labeled`.

use anyhow::Result;
use clap::Parser;
use ssl_text::topics::{generate, write, TopicSpec};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Generate the topic task: a corpus that holds what a small labelled set lacks")]
struct Args {
    /// Output folder (corpus.txt, labeled/train.jsonl, labeled/test.jsonl, spec.json).
    #[arg(long, default_value = "runs/data/topics")]
    out: PathBuf,
    /// Unlabelled corpus documents.
    #[arg(long, default_value_t = TopicSpec::default().corpus_docs)]
    corpus_docs: usize,
    /// Labelled training documents.
    #[arg(long, default_value_t = TopicSpec::default().train_docs)]
    train_docs: usize,
    /// Labelled test documents.
    #[arg(long, default_value_t = TopicSpec::default().test_docs)]
    test_docs: usize,
    /// Topics (classes).
    #[arg(long, default_value_t = TopicSpec::default().topics)]
    topics: usize,
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if a.topics < 2 || a.train_docs < a.topics || a.test_docs < a.topics {
        anyhow::bail!("need at least 2 topics and a labelled document of each topic in train and test");
    }
    let spec = TopicSpec {
        topics: a.topics,
        corpus_docs: a.corpus_docs,
        train_docs: a.train_docs,
        test_docs: a.test_docs,
        seed: a.seed,
        ..TopicSpec::default()
    };
    let task = generate(&spec);
    write(&task, &spec, &a.out)?;
    println!(
        "{}: {} corpus documents, {} training and {} test documents over {} topics",
        a.out.display(),
        task.corpus.len(),
        task.train.len(),
        task.test.len(),
        spec.topics
    );
    Ok(())
}
