//! Tests of the tokenizer on a tiny vocabulary and on SmolLM2's, against
//! llama.cpp's ids.

use std::sync::OnceLock;

use proptest::prelude::*;

use super::*;
use crate::GgufWriter;
use crate::test_support::{add_tiny_tokenizer, read_reference, smollm2_path, tiny_id};

fn tiny_tokenizer(pre: &str) -> Result<Tokenizer> {
    let mut writer = GgufWriter::new();
    add_tiny_tokenizer(&mut writer, pre);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tok.gguf");
    writer.write(&path).unwrap();
    Tokenizer::from_gguf(&GgufFile::open(&path)?)
}

#[test]
fn tiny_vocab_applies_merges() {
    let tokenizer = tiny_tokenizer("gpt2").unwrap();
    let ids = tokenizer.encode("ab ab b", false).unwrap();
    assert_eq!(ids, vec![tiny_id("ab"), tiny_id("Ġab"), tiny_id("Ġb")]);
    assert_eq!(tokenizer.decode(&ids, false).unwrap(), "ab ab b");
    assert_eq!(tokenizer.vocab_size(), 3 + 256 + 3);
    assert_eq!(tokenizer.bos_id(), Some(1));
    assert_eq!(tokenizer.eos_ids(), &[2]);
    assert_eq!(tokenizer.token_text(tiny_id("Ġab")).as_deref(), Some("Ġab"));
}

#[test]
fn tiny_vocab_parses_special_only_on_request() {
    let tokenizer = tiny_tokenizer("gpt2").unwrap();
    let text = "<|im_start|>ab<|im_end|>";
    let parsed = tokenizer.encode(text, true).unwrap();
    assert_eq!(parsed, vec![1, tiny_id("ab"), 2]);
    let literal = tokenizer.encode(text, false).unwrap();
    assert!(literal.len() > 3, "{literal:?}");
    assert!(!literal.contains(&1));
    assert_eq!(tokenizer.decode(&literal, false).unwrap(), text);
    assert_eq!(tokenizer.decode(&parsed, true).unwrap(), "ab");
}

#[test]
fn unknown_pre_type_is_named() {
    let message = format!("{:#}", tiny_tokenizer("bogus-pre").unwrap_err());
    assert!(
        message.contains("unknown pre-tokenizer type `bogus-pre`"),
        "{message}"
    );
}

#[test]
fn malformed_merge_is_named() {
    let mut writer = GgufWriter::new();
    add_tiny_tokenizer(&mut writer, "gpt2");
    writer.add_str_array("tokenizer.ggml.merges", &["a b", "ab"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tok.gguf");
    writer.write(&path).unwrap();
    let err = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("merge 1 \"ab\" in `tokenizer.ggml.merges` lacks a space"),
        "{message}"
    );
}

#[test]
fn every_known_pre_type_builds() {
    for pre in ["default", "llama-bpe", "qwen2", "smollm", "gpt-2", "dbrx"] {
        let tokenizer = tiny_tokenizer(pre).unwrap_or_else(|e| panic!("{pre}: {e:#}"));
        let ids = tokenizer.encode("ab 12, b's\n\n", true).unwrap();
        assert_eq!(
            tokenizer.decode(&ids, false).unwrap(),
            "ab 12, b's\n\n",
            "{pre}"
        );
    }
}

#[test]
fn decode_rejects_unknown_id() {
    let tokenizer = tiny_tokenizer("gpt2").unwrap();
    let message = tokenizer
        .decode(&[5, 100_000], false)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("token id 100000 is outside the vocabulary"),
        "{message}"
    );
}

#[test]
fn merge_splits_at_first_inner_space() {
    assert_eq!(split_merge("Ġ t"), Some(("Ġ".into(), "t".into())));
    assert_eq!(split_merge("  a"), Some((" ".into(), "a".into())));
    assert_eq!(split_merge("ab"), None);
}

fn smollm2_tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        let file = GgufFile::open(smollm2_path()).unwrap();
        Tokenizer::from_gguf(&file).unwrap()
    })
}

#[test]
fn smollm2_matches_llama_cpp_ids() {
    let tokenizer = smollm2_tokenizer();
    let cases = read_reference("smollm2_tokenizer.jsonl");
    assert!(cases.len() >= 20, "only {} reference cases", cases.len());
    let mut mismatches = Vec::new();
    for case in &cases {
        let text = case["text"].as_str().unwrap();
        let special = case["special"].as_bool().unwrap();
        let expected: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let ids = tokenizer.encode(text, special).unwrap();
        if ids != expected {
            mismatches.push(format!(
                "{text:?} (special: {special}): got {ids:?}, expected {expected:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn smollm2_decodes_reference_texts() {
    let tokenizer = smollm2_tokenizer();
    for case in read_reference("smollm2_tokenizer.jsonl") {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
    }
}

#[test]
fn smollm2_special_tokens() {
    let tokenizer = smollm2_tokenizer();
    assert_eq!(tokenizer.vocab_size(), 49152);
    assert_eq!(tokenizer.bos_id(), Some(1));
    assert_eq!(tokenizer.eos_ids(), &[2]);
    assert_eq!(tokenizer.token_text(1).as_deref(), Some("<|im_start|>"));
    assert_eq!(tokenizer.token_text(2).as_deref(), Some("<|im_end|>"));
    assert_eq!(tokenizer.token_id("<|im_end|>"), Some(2));
    assert_eq!(
        tokenizer.decode(&[1, 4093, 198, 6004, 2], true).unwrap(),
        "user\nhi"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn smollm2_round_trips_any_text(text in "\\PC{0,40}|[ a-z0-9.,'\n\t]{0,40}") {
        let tokenizer = smollm2_tokenizer();
        let ids = tokenizer.encode(&text, false).unwrap();
        prop_assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
    }
}
