//! A generated text task where the unlabelled corpus holds what a small
//! labelled set lacks (`cargo xtask gen-topics`).
//!
//! Documents are bags of pseudo-words (syllable strings, so no licence
//! and no prior knowledge in any tokenizer) about one of `topics` topics.
//! Each topic owns a vocabulary split in two halves: the labelled training
//! documents use only the first half, the test documents mostly (95%) the
//! second, and the unlabelled corpus both. A classifier trained from
//! scratch on the labels never sees most of the words the test documents
//! are made of; an encoder pretrained on the corpus has seen both halves
//! together in the same documents, which is what masked-token prediction
//! learns from. 40% of each document's words come from a filler
//! vocabulary shared by every topic, drawn with Zipf-like frequencies;
//! topic words are drawn uniformly.

use rand::distributions::{Distribution, WeightedIndex};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// The task's shape.
#[derive(Clone, Debug, Serialize)]
pub struct TopicSpec {
    /// Topics (classes).
    pub topics: usize,
    /// Words of each topic (split in two halves).
    pub words_per_topic: usize,
    /// Filler words shared by every topic.
    pub filler_words: usize,
    /// Unlabelled corpus documents.
    pub corpus_docs: usize,
    /// Labelled training documents.
    pub train_docs: usize,
    /// Labelled test documents.
    pub test_docs: usize,
    /// Words per document, at least and at most.
    pub doc_len: (usize, usize),
    /// Share of a document's words drawn from its topic (the rest: filler).
    pub topic_share: f64,
    /// Share of a labelled training document's topic words drawn from the
    /// first half.
    pub train_first_share: f64,
    /// Share of a test document's topic words drawn from the first half.
    pub test_first_share: f64,
    /// Seed of every draw.
    pub seed: u64,
}

impl Default for TopicSpec {
    fn default() -> Self {
        Self {
            topics: 4,
            words_per_topic: 24,
            filler_words: 200,
            corpus_docs: 20_000,
            train_docs: 2_000,
            test_docs: 1_000,
            doc_len: (12, 28),
            topic_share: 0.6,
            train_first_share: 1.0,
            test_first_share: 0.05,
            seed: 0,
        }
    }
}

/// The generated task: the corpus (one document per line) and labelled
/// `(text, label)` pairs; labels are `topic-0`, `topic-1`, ….
pub struct TopicTask {
    /// Unlabelled documents.
    pub corpus: Vec<String>,
    /// Labelled training documents.
    pub train: Vec<(String, String)>,
    /// Labelled test documents.
    pub test: Vec<(String, String)>,
}

const ONSETS: &[&str] =
    &["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "kl"];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ou"];
const CODAS: &[&str] = &["", "", "n", "r", "s", "l", "m"];

/// `n` distinct pseudo-words of two or three syllables.
fn pseudo_words(n: usize, rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let syllables = rng.gen_range(2..=3);
        let w: String = (0..syllables)
            .map(|_| {
                format!(
                    "{}{}{}",
                    ONSETS.choose(rng).expect("non-empty"),
                    VOWELS.choose(rng).expect("non-empty"),
                    CODAS.choose(rng).expect("non-empty")
                )
            })
            .collect();
        if seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

/// Zipf-like weights 1/(rank + 1) over `n` words.
fn zipf(n: usize) -> WeightedIndex<f64> {
    WeightedIndex::new((0..n).map(|r| 1.0 / (r as f64 + 1.0))).expect("positive weights")
}

/// Generates the task; the same spec gives the same task.
pub fn generate(spec: &TopicSpec) -> TopicTask {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let all = pseudo_words(spec.topics * spec.words_per_topic + spec.filler_words, &mut rng);
    let (topic_words, filler) = all.split_at(spec.topics * spec.words_per_topic);
    let half = spec.words_per_topic / 2;
    let halves: Vec<[&[String]; 2]> = topic_words
        .chunks(spec.words_per_topic)
        .map(|t| {
            let (a, b) = t.split_at(half);
            [a, b]
        })
        .collect();
    let filler_zipf = zipf(filler.len());
    // `first`: the share of topic words from the first half.
    let doc = |topic: usize, first: f64, rng: &mut ChaCha8Rng| -> String {
        let len = rng.gen_range(spec.doc_len.0..=spec.doc_len.1);
        let words: Vec<&str> = (0..len)
            .map(|_| {
                if rng.gen_bool(spec.topic_share) {
                    let h = usize::from(!rng.gen_bool(first));
                    halves[topic][h][rng.gen_range(0..half)].as_str()
                } else {
                    filler[filler_zipf.sample(rng)].as_str()
                }
            })
            .collect();
        words.join(" ")
    };
    let label = |t: usize| format!("topic-{t}");
    // Topics drawn at random: packing joins neighbouring documents, and the
    // held-out stream takes every 20th.
    let corpus = (0..spec.corpus_docs).map(|_| doc(rng.gen_range(0..spec.topics), 0.5, &mut rng)).collect();
    let mut train: Vec<(String, String)> = (0..spec.train_docs)
        .map(|i| (doc(i % spec.topics, spec.train_first_share, &mut rng), label(i % spec.topics)))
        .collect();
    let mut test: Vec<(String, String)> = (0..spec.test_docs)
        .map(|i| (doc(i % spec.topics, spec.test_first_share, &mut rng), label(i % spec.topics)))
        .collect();
    train.shuffle(&mut rng);
    test.shuffle(&mut rng);
    TopicTask { corpus, train, test }
}

/// Writes `DIR/corpus.txt`, `DIR/labeled/train.jsonl`,
/// `DIR/labeled/test.jsonl` and `DIR/spec.json`.
pub fn write(task: &TopicTask, spec: &TopicSpec, dir: &std::path::Path) -> crate::Result<()> {
    let io = |p: &std::path::Path, e| crate::Error::io(p, e);
    std::fs::create_dir_all(dir.join("labeled")).map_err(|e| io(dir, e))?;
    let corpus = dir.join("corpus.txt");
    std::fs::write(&corpus, task.corpus.join("\n") + "\n").map_err(|e| io(&corpus, e))?;
    for (name, set) in [("train", &task.train), ("test", &task.test)] {
        let p = dir.join("labeled").join(format!("{name}.jsonl"));
        let text: String =
            set.iter().map(|(t, l)| serde_json::json!({"text": t, "label": l}).to_string() + "\n").collect();
        std::fs::write(&p, text).map_err(|e| io(&p, e))?;
    }
    let p = dir.join("spec.json");
    let json = serde_json::to_string_pretty(spec).unwrap_or_default();
    std::fs::write(&p, json + "\n").map_err(|e| io(&p, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> TopicSpec {
        TopicSpec { corpus_docs: 400, train_docs: 200, test_docs: 100, ..TopicSpec::default() }
    }

    #[test]
    fn the_same_spec_gives_the_same_task_and_classes_are_balanced() {
        let (a, b) = (generate(&small()), generate(&small()));
        assert_eq!(a.corpus, b.corpus);
        assert_eq!(a.train, b.train);
        let c = generate(&TopicSpec { seed: 1, ..small() });
        assert_ne!(a.corpus, c.corpus);
        for t in 0..4 {
            assert_eq!(a.train.iter().filter(|(_, l)| *l == format!("topic-{t}")).count(), 50);
        }
        assert!(a.corpus.iter().all(|d| (12..=28).contains(&d.split(' ').count())));
    }

    #[test]
    fn training_and_test_documents_use_different_halves_of_a_topic() {
        let spec = small();
        let task = generate(&spec);
        let vocab = |docs: &[(String, String)], topic: &str| -> std::collections::HashSet<String> {
            docs.iter()
                .filter(|(_, l)| l == topic)
                .flat_map(|(t, _)| t.split(' ').map(String::from))
                .collect()
        };
        let corpus: std::collections::HashSet<String> =
            task.corpus.iter().flat_map(|d| d.split(' ').map(String::from)).collect();
        let (tr, te) = (vocab(&task.train, "topic-0"), vocab(&task.test, "topic-0"));
        // Test words that training never shows, but the corpus does.
        let unseen: Vec<&String> = te.difference(&tr).collect();
        // The test documents' second-half words: never in training.
        assert!(
            unseen.len() >= spec.words_per_topic / 2 - 2,
            "{} test words unseen in training",
            unseen.len()
        );
        assert!(unseen.iter().filter(|w| corpus.contains(**w)).count() * 10 > unseen.len() * 9);
    }
}
