//! Tokenizers: HF `tokenizer.json` files made by Python's `tokenizers`
//! (`tools/golden/tokenizers_hf.py`) give Python's ids here; a WordPiece
//! tokenizer trained here behaves as BERT's (lower-casing, punctuation
//! split, special ids, `##` pieces not starting words) and survives a save
//! and load; bad files and corpora are refused naming the file.

use ssl_text::corpus::Corpus;
use ssl_text::tokenizer::{TextTokenizer, SPECIAL_TOKENS};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn hf_tokenizer_files_give_pythons_ids() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("hf_tokenizers_expected.json")).unwrap())
            .unwrap();
    for name in ["hf_wordpiece.json", "hf_bpe.json"] {
        let tok = TextTokenizer::load(&fixture(name)).unwrap();
        for row in expected[name].as_array().unwrap() {
            let text = row["text"].as_str().unwrap();
            let want: Vec<u32> =
                row["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(tok.encode_with_special(text).unwrap(), want, "{name}: {text}");
        }
    }
    let bpe = TextTokenizer::load(&fixture("hf_bpe.json")).unwrap();
    assert_eq!(bpe.special.mask, i64::from(bpe.token_to_id("<mask>").unwrap()));
}

fn small_corpus(dir: &std::path::Path) -> PathBuf {
    let words = ["learning", "representations", "without", "labels", "is", "useful", "for", "many", "tasks"];
    let mut text = String::new();
    for i in 0..300 {
        let line: Vec<&str> = (0..8).map(|k| words[(i * 7 + k * 3) % words.len()]).collect();
        text.push_str(&line.join(" "));
        text.push_str(if i % 2 == 0 { ".\n" } else { "!\n" });
    }
    let p = dir.join("c.txt");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn trained_wordpiece_behaves_like_bert() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = Corpus::open(&small_corpus(dir.path()), false).unwrap();
    let tok = TextTokenizer::train_wordpiece(&corpus, 200, 2).unwrap();
    for (i, t) in SPECIAL_TOKENS.iter().enumerate() {
        assert_eq!(tok.token_to_id(t), Some(i as u32), "{t}");
    }
    assert_eq!((tok.special.pad, tok.special.cls, tok.special.sep, tok.special.mask), (0, 2, 3, 4));
    assert!(tok.vocab_size() <= 200);
    let e = tok.encode_batch(&["Learning LABELS!", "learning labels !"]).unwrap();
    assert_eq!(e[0].ids, e[1].ids, "lower-cased, punctuation split off");
    assert_eq!(tok.id_to_token(e[0].ids[0]).as_deref(), Some("learning"));
    // A word never seen is split into pieces; only the first starts the word.
    let unseen = tok.encode_batch(&["labelsful"]).unwrap().remove(0);
    assert!(unseen.ids.len() > 1);
    assert!(unseen.word_start[0]);
    assert!(unseen.word_start[1..].iter().all(|&s| !s));
    let with = tok.encode_with_special("useful tasks").unwrap();
    assert_eq!((with[0], *with.last().unwrap()), (2, 3));

    let path = dir.path().join("tokenizer.json");
    tok.save(&path).unwrap();
    let again = TextTokenizer::load(&path).unwrap();
    assert_eq!(
        again.encode_batch(&["Learning LABELS!"]).unwrap(),
        tok.encode_batch(&["Learning LABELS!"]).unwrap()
    );
    assert_eq!(again.special, tok.special);
}

/// Training is deterministic: the same corpus gives the same ids, so a
/// seeded run is repeatable. (The crate's trainer gives the same pieces but
/// numbers them in hash-map order, which differs between runs.)
#[test]
fn training_twice_gives_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    let fortunes = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/fortunes/corpus.txt"),
    )
    .unwrap();
    let p = dir.path().join("c.txt");
    std::fs::write(&p, fortunes.lines().take(3000).collect::<Vec<_>>().join("\n")).unwrap();
    let corpus = Corpus::open(&p, false).unwrap();
    let vocab = |t: &TextTokenizer| -> Vec<String> {
        (0..t.vocab_size() as u32).map(|i| t.id_to_token(i).unwrap()).collect()
    };
    let tok = TextTokenizer::train_wordpiece(&corpus, 1000, 2).unwrap();
    let first = vocab(&tok);
    assert_eq!(first.len(), 1000);
    // The `##` pieces are ordinary pieces, not special tokens matched in
    // the raw text: a literal "##s" is split at its punctuation.
    let pieces = |t: &str| -> Vec<String> {
        tok.encode_batch(&[t]).unwrap()[0].ids.iter().map(|&i| tok.id_to_token(i).unwrap()).collect()
    };
    assert!(first.contains(&"##s".to_string()));
    assert_eq!(pieces("##s"), ["#", "#", "s"]);
    for _ in 0..2 {
        assert_eq!(vocab(&TextTokenizer::train_wordpiece(&corpus, 1000, 2).unwrap()), first);
    }
}

#[test]
fn bad_tokenizer_files_and_corpora_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("tokenizer.json");
    std::fs::write(&bad, b"{\"version\": \"1.0\", \"model\": 42").unwrap();
    let err = TextTokenizer::load(&bad).unwrap_err().to_string();
    assert!(err.contains("tokenizer.json") && err.contains("not a valid tokenizer.json"), "{err}");
    let err = TextTokenizer::load(&dir.path().join("missing.json")).unwrap_err().to_string();
    assert!(err.contains("missing.json"), "{err}");

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, b"\n\n").unwrap();
    let err = TextTokenizer::train_wordpiece(&Corpus::open(&empty, false).unwrap(), 100, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty.txt") && err.contains("empty corpus"), "{err}");
    let binary = dir.path().join("bin.txt");
    std::fs::write(&binary, b"good line\n\xfe\xfe\n").unwrap();
    let err = TextTokenizer::train_wordpiece(&Corpus::open(&binary, false).unwrap(), 100, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bin.txt:2") && err.contains("UTF-8"), "{err}");
}
