//! The Qwen3.5 chat template rendered by minijinja must equal Jinja2's rendering
//! (scripts/chat-oracle.py, the engine llama-cpp-python uses), errors included.

mod tokenizer_common;

use hybrid_run::tokenizer::chat::{render, ChatMessage, ChatOptions};
use tokenizer_common::data_file;

#[test]
fn qwen35_template_renders_exactly_like_jinja2() {
    let test = "qwen35_template_renders_exactly_like_jinja2";
    let (Some(t), Some(j)) = (
        data_file(test, "Qwen3.5-4B.jinja"),
        data_file(test, "chat-oracle.json"),
    ) else {
        return;
    };
    let template = std::fs::read_to_string(t).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(j).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for (i, c) in cases.iter().enumerate() {
        let messages: Vec<ChatMessage> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let opts = ChatOptions {
            add_generation_prompt: c
                .get("add_generation_prompt")
                .and_then(|v| v.as_bool())
                .unwrap_or(true),
            enable_thinking: c.get("enable_thinking").and_then(|v| v.as_bool()),
            ..Default::default()
        };
        let got = render(Some(&template), &messages, &opts);
        match (
            c.get("expected").and_then(|v| v.as_str()),
            c.get("error").and_then(|v| v.as_str()),
        ) {
            (Some(want), _) => assert_eq!(got.unwrap(), want, "case {i}"),
            (None, Some(msg)) => {
                let err = got.expect_err(&format!("case {i} should fail with {msg:?}"));
                assert!(
                    err.to_string().contains(msg),
                    "case {i}: {err} lacks {msg:?}"
                );
            }
            _ => panic!("case {i} has neither expected nor error"),
        }
    }
}

#[test]
fn no_thinking_and_system_prompt_give_the_documented_qwen_prompt() {
    let test = "no_thinking_and_system_prompt_give_the_documented_qwen_prompt";
    let Some(t) = data_file(test, "Qwen3.5-4B.jinja") else {
        return;
    };
    let template = std::fs::read_to_string(t).unwrap();
    let opts = ChatOptions {
        system: Some("Be brief.".into()),
        enable_thinking: Some(false),
        ..Default::default()
    };
    let got = render(Some(&template), &[ChatMessage::new("user", "Hi")], &opts).unwrap();
    // spec gguf-file-format.md §2 "Chat prompt"
    assert_eq!(
        got,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
}
