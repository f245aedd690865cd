//! Helpers for the HTTP server tests: a `hybrid-run serve` child process on a loopback port
//! and a small HTTP/1.1 client over `TcpStream` (so tests control every byte, and can hang
//! up mid-stream).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_hybrid-run");

/// The tiny synthetic model, written once per test binary run into `dir`.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("tiny-q8_0.gguf");
    if !path.exists() {
        let out = Command::new(BIN)
            .args([
                "synth", "--preset", "tiny", "--quant", "q8_0", "--seed", "3", "-o",
            ])
            .arg(&path)
            .output()
            .expect("running hybrid-run synth");
        assert!(
            out.status.success(),
            "synth failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    path
}

/// A running server; killed on drop.
pub struct Server {
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `hybrid-run serve -m model --port 0 -t 1 <extra>` and waits until it listens.
    pub fn start(model: &Path, extra: &[&str]) -> Server {
        Server::start_env(model, extra, &[])
    }

    pub fn start_env(model: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("-m")
            .arg(model)
            .args(["--port", "0", "-t", "1", "--no-progress"])
            .args(extra)
            .env_remove("HYBRID_RUN_API_KEY")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning hybrid-run serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://") {
                    let rest = &line[i + "listening on http://".len()..];
                    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().expect("listen address"),
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start:\n{}", log.lock().unwrap());
            }
        };
        Server { addr, child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn health(&self) -> Value {
        let r = request(self.addr, "GET", "/health", &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Polls /health until no request is queued or running.
    pub fn wait_idle(&self, limit: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            let h = self.health();
            if h["requests"]["busy"] == false && h["requests"]["queued"] == 0 {
                return h;
            }
            assert!(
                t0.elapsed() < limit,
                "server still busy after {limit:?}: {h}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of an SSE body, in order.
    pub fn sse_data(&self) -> Vec<String> {
        parse_sse(&self.text())
    }
}

pub fn parse_sse(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(str::to_string)
        .collect()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connecting to the server");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    s
}

fn write_request(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s.flush().unwrap();
}

/// Reads the status line and headers.
fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    (status, headers)
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
}

/// Reads one chunk of a chunked body; `None` at the end.
fn read_chunk(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
    let mut buf = vec![0u8; n + 2];
    r.read_exact(&mut buf).ok()?;
    buf.truncate(n);
    if n == 0 {
        None
    } else {
        Some(buf)
    }
}

/// One complete request/response exchange.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = connect(addr);
    write_request(&mut s, method, path, headers, body);
    let mut r = BufReader::new(s);
    let (status, hdrs) = read_head(&mut r);
    let mut out = Vec::new();
    if is_chunked(&hdrs) {
        while let Some(c) = read_chunk(&mut r) {
            out.extend(c);
        }
    } else {
        r.read_to_end(&mut out).unwrap();
    }
    Response {
        status,
        headers: hdrs,
        body: out,
    }
}

pub fn post(addr: SocketAddr, path: &str, body: &Value) -> Response {
    request(addr, "POST", path, &[], body.to_string().as_bytes())
}

/// A streamed response read event by event.
pub struct EventStream {
    pub status: u16,
    reader: BufReader<TcpStream>,
    buf: String,
}

impl EventStream {
    pub fn open(addr: SocketAddr, path: &str, body: &Value) -> EventStream {
        let mut s = connect(addr);
        write_request(&mut s, "POST", path, &[], body.to_string().as_bytes());
        let mut reader = BufReader::new(s);
        let (status, headers) = read_head(&mut reader);
        assert!(is_chunked(&headers), "stream is not chunked: {headers:?}");
        EventStream {
            status,
            reader,
            buf: String::new(),
        }
    }

    /// The next `data:` payload, `None` at the end of the body.
    pub fn next_data(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.find("\n\n") {
                let ev: String = self.buf.drain(..i + 2).collect();
                if let Some(d) = ev.lines().find_map(|l| l.strip_prefix("data: ")) {
                    return Some(d.to_string());
                }
                continue;
            }
            let c = read_chunk(&mut self.reader)?;
            self.buf.push_str(&String::from_utf8_lossy(&c));
        }
    }

    /// Hangs up without reading the rest.
    pub fn disconnect(self) {
        let s = self.reader.into_inner();
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
}

/// The text of a non-streamed chat or completion response.
pub fn answer_text(v: &Value) -> String {
    let c = &v["choices"][0];
    c["message"]["content"]
        .as_str()
        .or_else(|| c["text"].as_str())
        .unwrap_or_else(|| panic!("no text in {v}"))
        .to_string()
}

/// The concatenated text of a streamed response's chunks, its finish reason, and the final
/// usage object if one came. Panics unless the stream ends with `[DONE]`.
pub fn stream_text(datas: &[String]) -> (String, Option<String>, Option<Value>) {
    assert_eq!(
        datas.last().map(String::as_str),
        Some("[DONE]"),
        "stream did not end with [DONE]: {datas:?}"
    );
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    for d in &datas[..datas.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap_or_else(|e| panic!("bad chunk {d:?}: {e}"));
        assert!(v.get("error").is_none(), "error in stream: {v}");
        if let Some(c) = v["choices"].as_array().and_then(|a| a.first()) {
            if let Some(t) = c["delta"]["content"]
                .as_str()
                .or_else(|| c["text"].as_str())
            {
                text.push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        }
        if v["usage"].is_object() {
            usage = Some(v["usage"].clone());
        }
    }
    (text, finish, usage)
}
