//! Tests of chat template rendering, including SmolLM2's template against
//! the prompts llama.cpp was given.

use super::*;
use crate::GgufFile;
use crate::test_support::{read_reference, smollm2_path};
use crate::tokenizer::Tokenizer;

#[test]
fn chatml_fallback_renders() {
    let template = ChatTemplate::new(None, "", "<|im_end|>").unwrap();
    let messages = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
    ];
    let prompt = template.render(&messages, true).unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let without = template.render(&messages, false).unwrap();
    assert!(without.ends_with("Hi<|im_end|>\n"), "{without:?}");
}

#[test]
fn special_token_texts_are_visible() {
    let source = "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}";
    let template = ChatTemplate::new(Some(source), "<s>", "</s>").unwrap();
    let prompt = template
        .render(&[ChatMessage::new("user", "a")], false)
        .unwrap();
    assert_eq!(prompt, "<s>a</s>");
}

#[test]
fn python_string_methods_work() {
    let source = "{% for m in messages %}{{ m['content'].strip().upper() }}{% endfor %}";
    let template = ChatTemplate::new(Some(source), "", "").unwrap();
    let prompt = template
        .render(&[ChatMessage::new("user", "  hi  ")], false)
        .unwrap();
    assert_eq!(prompt, "HI");
}

#[test]
fn blocks_are_trimmed_like_transformers() {
    let source = "{% for m in messages %}\n  {% if m.role == 'user' %}\n{{ m.content }}\n  {% endif %}\n{% endfor %}";
    let template = ChatTemplate::new(Some(source), "", "").unwrap();
    let prompt = template
        .render(&[ChatMessage::new("user", "x")], false)
        .unwrap();
    assert_eq!(prompt, "x\n");
}

#[test]
fn raise_exception_fails_rendering() {
    let source = "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}";
    let template = ChatTemplate::new(Some(source), "", "").unwrap();
    let err = template
        .render(&[ChatMessage::new("assistant", "x")], false)
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("first message must be from the user"),
        "{err:#}"
    );
}

#[test]
fn invalid_template_is_rejected() {
    let err = ChatTemplate::new(Some("{% for %}"), "", "").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("chat template: failed to compile"),
        "{err}"
    );
}

#[test]
fn smollm2_template_reproduces_reference_prompts() {
    let file = GgufFile::open(smollm2_path()).unwrap();
    let source = file.get_str("tokenizer.chat_template").unwrap();
    assert!(source.is_some(), "SmolLM2's GGUF has a chat template");
    let template = ChatTemplate::new(source, "<|im_start|>", "<|im_end|>").unwrap();
    let tokenizer = Tokenizer::from_gguf(&file).unwrap();

    let cases = read_reference("smollm2_q4_1_greedy.jsonl");
    assert!(!cases.is_empty());
    for case in cases {
        let user = case["user"].as_str().unwrap();
        let prompt = template
            .render(&[ChatMessage::new("user", user)], true)
            .unwrap();
        assert_eq!(
            prompt,
            case["prompt"].as_str().unwrap(),
            "prompt for {user:?}"
        );

        let expected: Vec<u32> = serde_json::from_value(case["prompt_tokens"].clone()).unwrap();
        assert_eq!(
            tokenizer.encode(&prompt, true).unwrap(),
            expected,
            "tokens for {user:?}"
        );
    }
}
