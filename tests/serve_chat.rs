//! The terminal chat (`hybrid-run -m MODEL --chat` without `-p`), driven through pipes:
//! history across turns, Ctrl-C (SIGINT) stopping an answer, end of input quitting.

mod serve_common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serve_common::{tiny_model, BIN};

struct Repl {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

fn pump(mut r: impl Read + Send + 'static, buf: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = r.read(&mut b) {
            if n == 0 {
                break;
            }
            buf.lock().unwrap().extend_from_slice(&b[..n]);
        }
    });
}

impl Repl {
    fn start(model: &Path, extra: &[&str]) -> Repl {
        let mut child = Command::new(BIN)
            .arg("-m")
            .arg(model)
            .args(["--chat", "-t", "1", "--temp", "0"])
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().unwrap(), out.clone());
        pump(child.stderr.take().unwrap(), err.clone());
        Repl { child, out, err }
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    fn send(&mut self, s: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(s.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let t0 = Instant::now();
        while !pred(&self.stdout()) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; stdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn sigint(&self) {
        let st = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// Closes stdin (Ctrl-D) and returns the exit code.
    fn finish(mut self) -> (Option<i32>, String, String) {
        drop(self.child.stdin.take());
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(50));
                return (st.code(), self.stdout(), self.stderr());
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = self.child.kill();
                panic!("the chat did not exit on end of input:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Log text without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\u{1b}' {
            for d in it.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What `-p PROMPT --chat` prints for the same single turn.
fn one_shot(model: &Path, prompt: &str, n: usize) -> String {
    let out = Command::new(BIN)
        .arg("-m")
        .arg(model)
        .args([
            "-p",
            prompt,
            "--chat",
            "--temp",
            "0",
            "-t",
            "1",
            "--no-display-prompt",
        ])
        .args(["-n", &n.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = String::from_utf8(out.stdout).unwrap();
    s.strip_suffix('\n').unwrap_or(&s).to_string()
}

#[test]
fn the_terminal_chat_keeps_the_history_across_turns_and_quits_on_end_of_input() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let mut repl = Repl::start(&model, &["-n", "12"]);
    repl.send("Hello there\nAnd what next?\n");
    let (code, out, err) = repl.finish();
    assert_eq!(code, Some(0), "{err}");
    let first = one_shot(&model, "Hello there", 12);
    let body = out
        .strip_prefix("> ")
        .unwrap_or_else(|| panic!("no prompt: {out:?}"));
    assert!(
        body.starts_with(&format!("{first}\n> ")),
        "first answer differs:\n{out:?}\nvs {first:?}"
    );
    assert_eq!(out.matches("\n> ").count(), 2, "{out:?}");
    // The second turn's prompt extended the first turn, answer included: the state was reused.
    let reused: usize = strip_ansi(&err)
        .lines()
        .find_map(|l| l.split("reused=").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no prefix reuse logged:\n{err}"));
    assert!(reused > 12, "reused {reused} tokens");
}

#[test]
fn ctrl_c_stops_the_current_answer_and_the_chat_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    // A prompt whose greedy answer is long, so the interrupt lands mid-answer.
    let (prompt, full) = [
        "Write a long essay",
        "Tell me everything",
        "Count to a thousand",
        "Go on",
    ]
    .iter()
    .map(|p| (p.to_string(), one_shot(&model, p, 600)))
    .find(|(_, a)| a.chars().count() > 300)
    .expect("no prompt gives a long answer");
    let mut repl = Repl::start(&model, &["-n", "600"]);
    repl.send(&format!("{prompt}\n"));
    repl.wait_for("the answer to start", |o| o.len() > 2 + 10);
    repl.sigint();
    repl.wait_for("the stopped marker", |o| o.contains(" [stopped]\n> "));
    // At the prompt, Ctrl-C only prints a hint.
    repl.sigint();
    std::thread::sleep(Duration::from_millis(200));
    repl.send("Short one\n");
    repl.wait_for("the next answer", |o| o.matches("\n> ").count() >= 2);
    let (code, out, err) = repl.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("Ctrl-D to quit"), "{err}");
    let answer = out
        .strip_prefix("> ")
        .and_then(|s| s.split(" [stopped]").next())
        .unwrap();
    assert!(
        full.starts_with(answer),
        "partial answer is not a prefix of the full one"
    );
    assert!(answer.chars().count() < full.chars().count());
}
