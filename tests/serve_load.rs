//! A bounded load test of `hybrid-run serve` on loopback: N requests from 8 concurrent
//! clients, every answer checked against the same request served alone (greedy), so nothing
//! is lost or mixed between requests; prints latency percentiles (`-- --nocapture`). About
//! 5 s on 2 cores with the tiny model.

mod serve_common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use serve_common::*;

const DISTINCT: usize = 25;
const MAX_TOKENS: u64 = 8;

fn body(k: usize, stream: bool) -> Value {
    json!({
        "messages": [{"role": "user", "content": format!("Item {k}: describe the number {}", k * 13 + 1)}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": stream,
        "stream_options": {"include_usage": true},
    })
}

struct Outcome {
    k: usize,
    text: String,
    id: String,
    completion_tokens: u64,
    latency: Duration,
}

fn ask(addr: std::net::SocketAddr, k: usize, stream: bool) -> Outcome {
    let t0 = Instant::now();
    let r = post(addr, "/v1/chat/completions", &body(k, stream));
    let latency = t0.elapsed();
    assert_eq!(r.status, 200, "request {k}: {}", r.text());
    if stream {
        let datas = r.sse_data();
        let (text, _, usage) = stream_text(&datas);
        let first: Value = serde_json::from_str(&datas[0]).unwrap();
        Outcome {
            k,
            text,
            id: first["id"].as_str().unwrap().to_string(),
            completion_tokens: usage.unwrap()["completion_tokens"].as_u64().unwrap(),
            latency,
        }
    } else {
        let v = r.json();
        Outcome {
            k,
            text: answer_text(&v),
            id: v["id"].as_str().unwrap().to_string(),
            completion_tokens: v["usage"]["completion_tokens"].as_u64().unwrap(),
            latency,
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn load(n_requests: usize, concurrency: usize) {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&tiny_model(dir.path()), &["--max-queue", "64"]);
    let addr = srv.addr;
    let alone: Vec<(String, u64)> = (0..DISTINCT)
        .map(|k| {
            let o = ask(addr, k, false);
            (o.text, o.completion_tokens)
        })
        .collect();
    let distinct_texts: HashSet<&String> = alone.iter().map(|(t, _)| t).collect();
    assert!(
        distinct_texts.len() > DISTINCT / 2,
        "too few distinct answers to detect mixing"
    );

    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::with_capacity(n_requests));
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..concurrency {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n_requests {
                    break;
                }
                // Spread the prompts so that neighbours in time ask different things.
                let k = (i * 7) % DISTINCT;
                let o = ask(addr, k, i % 3 != 0);
                results.lock().unwrap().push(o);
            });
        }
    });
    let wall = t0.elapsed();
    let results = results.into_inner().unwrap();
    assert_eq!(results.len(), n_requests, "requests lost");
    let ids: HashSet<&String> = results.iter().map(|o| &o.id).collect();
    assert_eq!(ids.len(), n_requests, "response ids repeat");
    for o in &results {
        assert_eq!(
            o.text, alone[o.k].0,
            "answer of prompt {} differs under load",
            o.k
        );
        assert_eq!(o.completion_tokens, alone[o.k].1);
    }
    let h = srv.wait_idle(Duration::from_secs(30));
    assert_eq!(
        h["requests"]["completed"],
        (n_requests + DISTINCT) as u64,
        "{h}"
    );
    assert_eq!(h["requests"]["failed"], 0, "{h}");
    assert_eq!(h["requests"]["cancelled"], 0, "{h}");

    let mut lat: Vec<Duration> = results.iter().map(|o| o.latency).collect();
    lat.sort();
    let tokens: u64 = results.iter().map(|o| o.completion_tokens).sum();
    eprintln!(
        "load: {n_requests} requests, {concurrency} concurrent, {:.2} s wall, {:.1} req/s, {:.0} generated tok/s | latency p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        wall.as_secs_f64(),
        n_requests as f64 / wall.as_secs_f64(),
        tokens as f64 / wall.as_secs_f64(),
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.9).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3,
    );
}

#[test]
fn two_hundred_requests_from_eight_clients_all_get_their_own_answers() {
    load(200, 8);
}
