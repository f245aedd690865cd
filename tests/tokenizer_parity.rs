//! Exact parity with llama.cpp's tokenizer:
//! * the 50 `ggml-vocab-qwen35` test vectors (and the qwen2 ones) from llama.cpp's test suite;
//! * at least 2,500 generated strings tokenized by llama.cpp with the real 248K Qwen3.5/3.6 vocab
//!   (fixed seed), plus 1,000 with a fresh seed each run (`scripts/tokenizer-oracle.py`).

mod tokenizer_common;

use tokenizer_common::{b64decode, data_file, load_tokenizer, split_inp};

fn check_vectors(test: &str, vocab: &str) {
    let (Some(g), Some(inp), Some(out)) = (
        data_file(test, vocab),
        data_file(test, &format!("{vocab}.inp")),
        data_file(test, &format!("{vocab}.out")),
    ) else {
        return;
    };
    let tok = load_tokenizer(&g);
    let inputs = split_inp(&std::fs::read_to_string(inp).unwrap());
    let outputs: Vec<String> = std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        inputs.len() >= 40,
        "{vocab}.inp holds only {} cases",
        inputs.len()
    );
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{vocab}: .inp and .out disagree in length"
    );
    let mut bad = Vec::new();
    for (i, (s, o)) in inputs.iter().zip(&outputs).enumerate() {
        let want: Vec<u32> = o.split_whitespace().map(|x| x.parse().unwrap()).collect();
        let got = tok.tokenize(s, false, false).unwrap();
        if got != want {
            bad.push(format!("case {i} {s:?}: got {got:?} want {want:?}"));
        }
        assert_eq!(
            tok.detokenize(&got, false).unwrap(),
            s.as_bytes(),
            "round trip of case {i}"
        );
    }
    assert!(
        bad.is_empty(),
        "{} of {} cases differ:\n{}",
        bad.len(),
        inputs.len(),
        bad.join("\n")
    );
}

#[test]
fn qwen35_test_vectors_match_llama_cpp() {
    check_vectors(
        "qwen35_test_vectors_match_llama_cpp",
        "ggml-vocab-qwen35.gguf",
    );
}

#[test]
fn qwen2_test_vectors_match_llama_cpp() {
    check_vectors(
        "qwen2_test_vectors_match_llama_cpp",
        "ggml-vocab-qwen2.gguf",
    );
}

fn check_oracle(test: &str, file: &str) {
    let (Some(g), Some(j)) = (data_file(test, "qwen36-vocab.gguf"), data_file(test, file)) else {
        return;
    };
    let tok = load_tokenizer(&g);
    assert_eq!(tok.n_vocab(), 248320);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(j).unwrap()).unwrap();
    println!("{file}: seed {}", doc["seed"]);
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 1000, "only {} cases", cases.len());
    let mut bad = Vec::new();
    let mut round_trips = 0;
    for (i, c) in cases.iter().enumerate() {
        let input = b64decode(c["input"].as_str().unwrap());
        let ps = c["parse_special"].as_bool().unwrap();
        let want: Vec<u32> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tok.tokenize_bytes(&input, false, ps).unwrap();
        if got != want {
            bad.push(format!(
                "case {i} {:?} parse_special={ps}:\n  got  {got:?}\n  want {want:?}",
                String::from_utf8_lossy(&input)
            ));
            continue;
        }
        let detok = tok.detokenize(&got, false).unwrap();
        assert_eq!(
            detok,
            b64decode(c["detok"].as_str().unwrap()),
            "detokenize of case {i}"
        );
        let detok_sp = tok.detokenize(&got, true).unwrap();
        assert_eq!(
            detok_sp,
            b64decode(c["detok_special"].as_str().unwrap()),
            "special detok {i}"
        );
        if std::str::from_utf8(&input).is_ok() {
            // With special rendering every token gives back its text: an exact round trip.
            assert_eq!(detok_sp, input, "detokenize(tokenize(s)) != s for case {i}");
            round_trips += 1;
        }
    }
    println!(
        "{file}: {} cases, {round_trips} exact round trips",
        cases.len()
    );
    assert!(
        bad.is_empty(),
        "{} of {} cases differ:\n{}",
        bad.len(),
        cases.len(),
        bad[..bad.len().min(10)].join("\n")
    );
}

#[test]
fn generated_strings_match_llama_cpp_with_the_real_qwen36_vocab() {
    check_oracle(
        "generated_strings_match_llama_cpp_with_the_real_qwen36_vocab",
        "tokenizer-oracle.json",
    );
}

#[test]
fn fresh_random_strings_match_llama_cpp_with_the_real_qwen36_vocab() {
    check_oracle(
        "fresh_random_strings_match_llama_cpp_with_the_real_qwen36_vocab",
        "tokenizer-oracle-fresh.json",
    );
}

#[test]
fn qwen36_vocab_has_the_documented_special_tokens_and_eog_set() {
    let test = "qwen36_vocab_has_the_documented_special_tokens_and_eog_set";
    let Some(g) = data_file(test, "qwen36-vocab.gguf") else {
        return;
    };
    let tok = load_tokenizer(&g);
    for (text, id) in [
        ("<|endoftext|>", 248044),
        ("<|im_start|>", 248045),
        ("<|im_end|>", 248046),
        ("<|vision_pad|>", 248055),
        ("<tool_call>", 248058),
        ("<|fim_pad|>", 248063),
        ("<|file_sep|>", 248065),
        ("<think>", 248068),
        ("</think>", 248069),
    ] {
        assert_eq!(tok.token_id(text), Some(id), "{text}");
    }
    let eog: Vec<u32> = tok.eog_ids().iter().copied().collect();
    assert_eq!(eog, vec![248044, 248046, 248063, 248064, 248065]);
    assert!(tok.is_eog(248046) && !tok.is_eog(248045));
    assert_eq!(tok.eos(), Some(248046));
    assert!(tok
        .chat_template()
        .is_some_and(|t| t.contains("enable_thinking")));
}

#[test]
fn input_decoding_beyond_u10ffff_is_an_error_not_a_crash() {
    let test = "input_decoding_beyond_u10ffff_is_an_error_not_a_crash";
    let Some(g) = data_file(test, "ggml-vocab-qwen35.gguf") else {
        return;
    };
    let tok = load_tokenizer(&g);
    let err = tok
        .tokenize_bytes(b"ok \xf7\xbf\xbf\xbf", false, false)
        .unwrap_err();
    assert!(err.to_string().contains("U+1FFFFF"), "{err}");
}

#[test]
fn streaming_detokenization_never_emits_a_partial_character() {
    let test = "streaming_detokenization_never_emits_a_partial_character";
    let Some(g) = data_file(test, "qwen36-vocab.gguf") else {
        return;
    };
    let tok = load_tokenizer(&g);
    // Emoji and rare CJK split into several byte-level tokens each.
    let text = "🦙🧑🏿‍💻 𠀀𪚥 naïve 中文<|im_end|>";
    let ids = tok.tokenize(text, false, true).unwrap();
    assert!(ids.len() > text.chars().count() / 2);
    let mut dec = hybrid_run::tokenizer::StreamDecoder::new();
    let mut shown = String::new();
    let mut held_back = 0;
    for &id in &ids {
        let piece = tok.token_to_piece(id, false).unwrap();
        let out = dec.push(piece);
        assert!(
            !out.contains('\u{FFFD}'),
            "partial character emitted after token {id}"
        );
        if !dec.pending().is_empty() {
            held_back += 1;
        }
        shown.push_str(&out);
    }
    shown.push_str(&dec.finish());
    assert!(held_back > 0, "the text should exercise held-back bytes");
    // The control token renders nothing without special rendering.
    assert_eq!(shown, text.trim_end_matches("<|im_end|>"));
}
