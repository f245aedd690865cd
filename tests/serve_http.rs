//! `hybrid-run serve` over real HTTP on loopback with the tiny synthetic model: both
//! endpoints streamed and whole, concurrency, disconnects, bad input, context limits, API keys.

mod serve_common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_common::*;

fn chat_body(content: &str, max_tokens: u64) -> Value {
    json!({
        "model": "anything",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

#[test]
fn a_whole_chat_answer_equals_the_run_command_output_for_the_same_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let srv = Server::start(&model, &[]);
    let r = post(
        srv.addr,
        "/v1/chat/completions",
        &chat_body("Tell me a story", 12),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    let text = answer_text(&v);

    let out = Command::new(BIN)
        .arg("-m")
        .arg(&model)
        .args([
            "-p",
            "Tell me a story",
            "--chat",
            "--temp",
            "0",
            "-n",
            "12",
            "-t",
            "1",
            "--no-display-prompt",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text, cli.strip_suffix('\n').unwrap_or(&cli));

    let u = &v["usage"];
    let (p, c) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && c > 0 && c <= 12, "{u}");
    assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c);
    if v["choices"][0]["finish_reason"] == "length" {
        assert_eq!(c, 12);
    }
}

#[test]
fn usage_counts_the_exact_prompt_and_generated_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &[]);
    // Token ids go in as they are (no BOS added), and ignore_eos makes the length exact.
    let r = post(
        srv.addr,
        "/v1/completions",
        &json!({"prompt": [5, 17, 300, 42, 9], "max_tokens": 7, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["object"], "text_completion");
    let h = srv.health();
    assert_eq!(h["requests"]["prompt_tokens"], 5);
    assert_eq!(h["requests"]["completion_tokens"], 7);
    assert_eq!(h["requests"]["completed"], 1);
}

#[test]
fn a_streamed_chat_answer_equals_the_whole_answer() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &[]);
    let mut body = chat_body("What is the weather like?", 24);
    let whole = post(srv.addr, "/v1/chat/completions", &body).json();
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(srv.addr, "/v1/chat/completions", &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let datas = r.sse_data();
    let (text, finish, usage) = stream_text(&datas);
    assert_eq!(text, answer_text(&whole));
    assert_eq!(
        finish.as_deref(),
        whole["choices"][0]["finish_reason"].as_str()
    );
    assert_eq!(usage.as_ref(), Some(&whole["usage"]));
    let first: Value = serde_json::from_str(&datas[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let ids: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap()["id"].clone())
        .collect();
    assert!(ids.iter().all(|i| i == &ids[0] && i.is_string()), "{ids:?}");
    assert!(datas[..datas.len() - 1]
        .iter()
        .all(|d| serde_json::from_str::<Value>(d).unwrap()["object"] == "chat.completion.chunk"));
}

#[test]
fn streamed_and_whole_completions_agree_and_models_lists_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &["--alias", "tiny-test"]);
    let body = json!({"prompt": "Once upon a time", "max_tokens": 20, "temperature": 0});
    let whole = post(srv.addr, "/v1/completions", &body).json();
    assert_eq!(whole["model"], "tiny-test");
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let r = post(srv.addr, "/v1/completions", &sbody);
    let (text, finish, usage) = stream_text(&r.sse_data());
    assert_eq!(text, answer_text(&whole));
    assert_eq!(
        finish.as_deref(),
        whole["choices"][0]["finish_reason"].as_str()
    );
    assert!(usage.is_none(), "usage sent without include_usage");

    let m = request(srv.addr, "GET", "/v1/models", &[], b"").json();
    assert_eq!(m["object"], "list");
    assert_eq!(m["data"][0]["id"], "tiny-test");
    assert_eq!(m["data"][0]["object"], "model");
}

#[test]
fn concurrent_requests_all_complete_with_the_answers_they_get_alone() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &[]);
    let prompts: Vec<String> = (0..8)
        .map(|i| format!("Request number {i}: say something about {}", i * 7))
        .collect();
    let ask = |addr, p: &str, stream: bool| -> String {
        let mut b = chat_body(p, 16);
        if stream {
            b["stream"] = json!(true);
            let r = post(addr, "/v1/chat/completions", &b);
            assert_eq!(r.status, 200);
            stream_text(&r.sse_data()).0
        } else {
            let r = post(addr, "/v1/chat/completions", &b);
            assert_eq!(r.status, 200, "{}", r.text());
            answer_text(&r.json())
        }
    };
    let addr = srv.addr;
    let together: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| s.spawn(move || ask(addr, p, i % 2 == 0)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let alone: Vec<String> = prompts.iter().map(|p| ask(addr, p, false)).collect();
    assert_eq!(together, alone);
    // Distinct prompts should not all give the same text (that would hide mixing).
    assert!(alone.iter().any(|a| a != &alone[0]), "{alone:?}");
    let h = srv.wait_idle(Duration::from_secs(10));
    assert_eq!(h["requests"]["completed"], 16);
    assert_eq!(h["requests"]["cancelled"], 0);
}

#[test]
fn a_client_that_hangs_up_mid_stream_cancels_its_generation() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &[]);
    let max = 3000;
    let body = json!({
        "prompt": "Count forever:", "max_tokens": max, "temperature": 0,
        "ignore_eos": true, "stream": true,
    });
    let mut s = EventStream::open(srv.addr, "/v1/completions", &body);
    assert_eq!(s.status, 200);
    for _ in 0..3 {
        assert!(s.next_data().is_some());
    }
    let t_close = Instant::now();
    s.disconnect();
    let h = srv.wait_idle(Duration::from_secs(20));
    let idle_after = t_close.elapsed();
    assert_eq!(h["requests"]["cancelled"], 1, "{h}");
    assert_eq!(h["requests"]["completed"], 0, "{h}");
    let generated = h["requests"]["completion_tokens"].as_u64().unwrap();
    assert!(
        generated < 200,
        "{generated} of {max} tokens generated after the hang-up"
    );
    eprintln!("cancelled after {generated} tokens, idle {idle_after:?} after the hang-up");
    // The engine is free again: a short request is answered at once.
    let r = post(
        srv.addr,
        "/v1/completions",
        &json!({"prompt": "hi", "max_tokens": 2, "temperature": 0}),
    );
    assert_eq!(r.status, 200);
    assert!(srv.log().contains("generation cancelled"));
}

#[test]
fn a_request_queued_behind_another_is_dropped_when_its_client_hangs_up() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &[]);
    let long = json!({"prompt": "a", "max_tokens": 400, "temperature": 0, "ignore_eos": true, "stream": true});
    let mut first = EventStream::open(srv.addr, "/v1/completions", &long);
    assert!(first.next_data().is_some());
    let queued = EventStream::open(srv.addr, "/v1/completions", &long);
    queued.disconnect();
    let mut n = 1;
    while first.next_data().is_some() {
        n += 1;
    }
    assert!(n > 100, "{n} events");
    let h = srv.wait_idle(Duration::from_secs(20));
    assert_eq!(h["requests"]["completed"], 1, "{h}");
    assert_eq!(h["requests"]["cancelled"], 1, "{h}");
    assert_eq!(h["requests"]["completion_tokens"], 400, "{h}");
}

#[test]
fn a_full_queue_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &["--max-queue", "1"]);
    let long = json!({"prompt": "a", "max_tokens": 300, "temperature": 0, "ignore_eos": true, "stream": true});
    let mut running = EventStream::open(srv.addr, "/v1/completions", &long);
    assert!(running.next_data().is_some());
    let mut waiting = EventStream::open(srv.addr, "/v1/completions", &long);
    let r = post(
        srv.addr,
        "/v1/completions",
        &json!({"prompt": "b", "max_tokens": 1}),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "server_busy");
    while running.next_data().is_some() {}
    let (_, finish, _) =
        stream_text(&std::iter::from_fn(|| waiting.next_data()).collect::<Vec<_>>());
    assert_eq!(finish.as_deref(), Some("length"));
}

fn assert_400(r: &Response, what: &str) -> Value {
    assert_eq!(r.status, 400, "{what}: {}", r.text());
    let v = r.json();
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no message in {v}"));
    assert!(!msg.is_empty());
    assert_eq!(v["error"]["type"], "invalid_request_error", "{what}");
    v
}

#[test]
fn malformed_requests_get_400_with_an_openai_error_and_the_server_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(&tiny_model(dir.path()), &[]);
    let deep = "[".repeat(10_000);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("truncated JSON", br#"{"messages": [{"role": "user""#.to_vec()),
        ("not JSON", b"hello there".to_vec()),
        ("empty body", Vec::new()),
        ("invalid UTF-8", vec![b'{', 0xff, 0xfe, b'}']),
        ("deep nesting", deep.into_bytes()),
        ("array body", b"[1,2,3]".to_vec()),
        ("no messages", br#"{"model": "x"}"#.to_vec()),
        ("messages not a list", br#"{"messages": "hi"}"#.to_vec()),
        ("empty messages", br#"{"messages": []}"#.to_vec()),
        ("bad role", br#"{"messages": [{"role": "wizard", "content": "x"}]}"#.to_vec()),
        ("content a number", br#"{"messages": [{"role": "user", "content": 5}]}"#.to_vec()),
        ("image part", br#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#.to_vec()),
        ("temperature a string", br#"{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#.to_vec()),
        ("temperature out of range", br#"{"messages": [{"role": "user", "content": "x"}], "temperature": 1e300}"#.to_vec()),
        ("max_tokens negative", br#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": -5}"#.to_vec()),
        ("max_tokens huge", br#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": 1e30}"#.to_vec()),
        ("n = 3", br#"{"messages": [{"role": "user", "content": "x"}], "n": 3}"#.to_vec()),
        ("stop a number", br#"{"messages": [{"role": "user", "content": "x"}], "stop": 1}"#.to_vec()),
        ("tools", br#"{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}"#.to_vec()),
    ];
    for (what, body) in &bad {
        assert_400(
            &request(srv.addr, "POST", "/v1/chat/completions", &[], body),
            what,
        );
    }
    let bad_completions: Vec<(&str, Value)> = vec![
        ("no prompt", json!({"max_tokens": 3})),
        ("prompt object", json!({"prompt": {"a": 1}})),
        (
            "token out of vocabulary",
            json!({"prompt": [1, 2, 99999999]}),
        ),
        ("negative token", json!({"prompt": [-1]})),
        ("two prompts", json!({"prompt": ["a", "b"]})),
        ("empty prompt", json!({"prompt": ""})),
        ("echo", json!({"prompt": "a", "echo": true})),
    ];
    for (what, body) in &bad_completions {
        assert_400(&post(srv.addr, "/v1/completions", body), what);
    }
    let r = request(srv.addr, "POST", "/v1/nothing", &[], b"{}");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"]["message"].is_string());
    let r = request(srv.addr, "GET", "/v1/chat/completions", &[], b"");
    assert_eq!(r.status, 405);
    // Still alive and answering.
    assert!(srv.is_running());
    let r = post(
        srv.addr,
        "/v1/chat/completions",
        &chat_body("still there?", 3),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
    assert_eq!(srv.health()["requests"]["failed"], 0);
}

#[test]
fn a_prompt_longer_than_the_context_gets_a_400_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &["-c", "64"]);
    let long = "many words in a row ".repeat(40);
    for (path, body) in [
        ("/v1/chat/completions", chat_body(&long, 4)),
        ("/v1/completions", json!({"prompt": long, "max_tokens": 4})),
    ] {
        let v = assert_400(&post(srv.addr, path, &body), path);
        assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("64 tokens") && msg.contains("prompt"), "{msg}");
    }
    // A prompt that fits is answered, its output clamped to the room left.
    let r = post(
        srv.addr,
        "/v1/completions",
        &json!({"prompt": vec![1; 60], "max_tokens": 100, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[test]
fn the_api_key_guards_the_v1_routes_but_not_health() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &["--api-key", "sekret-123"]);
    let body = chat_body("hi", 2).to_string();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", "sekret-123")],
    ] {
        let r = request(
            srv.addr,
            "POST",
            "/v1/chat/completions",
            &headers,
            body.as_bytes(),
        );
        assert_eq!(r.status, 401, "{headers:?}: {}", r.text());
        assert_eq!(r.json()["error"]["type"], "authentication_error");
        let r = request(srv.addr, "GET", "/v1/models", &headers, b"");
        assert_eq!(r.status, 401);
    }
    let ok = [("Authorization", "Bearer sekret-123")];
    assert_eq!(
        request(
            srv.addr,
            "POST",
            "/v1/chat/completions",
            &ok,
            body.as_bytes()
        )
        .status,
        200
    );
    assert_eq!(request(srv.addr, "GET", "/v1/models", &ok, b"").status, 200);
    assert_eq!(request(srv.addr, "GET", "/health", &[], b"").status, 200);
    // The key is never echoed in the log.
    assert!(!srv.log().contains("sekret-123"));
}

#[test]
fn stop_strings_end_the_answer_just_before_the_match() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &[]);
    let base =
        json!({"prompt": "The list:", "max_tokens": 40, "temperature": 0, "ignore_eos": true});
    let full = answer_text(&post(srv.addr, "/v1/completions", &base).json());
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() > 12, "answer too short to test: {full:?}");
    let stop: String = chars[8..11].iter().collect();
    let cut = &full[..full.find(&stop).unwrap()];
    for stream in [false, true] {
        let mut b = base.clone();
        b["stop"] = json!(["never-appears-xyz", stop]);
        b["stream"] = json!(stream);
        let r = post(srv.addr, "/v1/completions", &b);
        let (text, finish) = if stream {
            let (t, f, _) = stream_text(&r.sse_data());
            (t, f.unwrap())
        } else {
            let v = r.json();
            (
                answer_text(&v),
                v["choices"][0]["finish_reason"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        };
        assert_eq!(text, cut, "stream={stream} stop={stop:?} full={full:?}");
        assert_eq!(finish, "stop");
    }
}

#[test]
fn a_seed_reproduces_a_sampled_answer() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &[]);
    let body = json!({"prompt": "Random:", "max_tokens": 24, "temperature": 1.0, "top_p": 0.9, "seed": 1234, "ignore_eos": true});
    let a = answer_text(&post(srv.addr, "/v1/completions", &body).json());
    let b = answer_text(&post(srv.addr, "/v1/completions", &body).json());
    assert_eq!(a, b);
    let greedy = answer_text(
        &post(
            srv.addr,
            "/v1/completions",
            &json!({"prompt": "Random:", "max_tokens": 24, "temperature": 0, "ignore_eos": true}),
        )
        .json(),
    );
    let others: Vec<String> = (0..4)
        .map(|s| {
            let mut b = body.clone();
            b["seed"] = json!(s);
            answer_text(&post(srv.addr, "/v1/completions", &b).json())
        })
        .collect();
    assert!(
        others.iter().chain([&a]).any(|o| o != &greedy),
        "sampling never left the greedy path"
    );
}
