//! `hybrid-run -m MODEL.gguf --chat` without `-p`/`-f`: a conversation in the terminal.
//! The history is re-rendered with the model's chat template each turn; the generator skips
//! the part already in its state when the new prompt extends it. Ctrl-C stops the current
//! answer (at the prompt it only prints a hint), Ctrl-D (end of input) exits.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

use crate::gguf::GgufFile;
use crate::sample::{Sampler, SamplerConfig};
use crate::serve::load::{cpu_factory, with_generator, CpuOptions, SpecChoice};
use crate::serve::Generator;
use crate::tokenizer::chat::{render, ChatMessage, ChatOptions};
use crate::tokenizer::{StreamDecoder, Tokenizer};

use super::run::{resolve_model, Args};

/// Ctrl-C state shared with the signal thread.
#[derive(Default)]
struct Interrupt {
    generating: AtomicBool,
    stop: AtomicBool,
}

/// Routes SIGINT to `flag` for the rest of the process: while an answer is being generated
/// it stops the answer; at the prompt it prints a hint.
fn install_ctrl_c(flag: Arc<Interrupt>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal thread")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            rt.block_on(async move {
                // Registering the handler replaces the default action (exit) for SIGINT.
                let mut first = Some(ready_tx);
                loop {
                    let wait = tokio::signal::ctrl_c();
                    if let Some(tx) = first.take() {
                        let _ = tx.send(());
                    }
                    if wait.await.is_err() {
                        return;
                    }
                    if flag.generating.load(Ordering::SeqCst) {
                        flag.stop.store(true, Ordering::SeqCst);
                    } else {
                        eprint!("\n(Ctrl-D to quit)\n> ");
                        let _ = std::io::stderr().flush();
                    }
                }
            })
        })
        .context("starting the signal thread")?;
    let _ = ready_rx.recv();
    Ok(())
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let path = resolve_model(&a.model)?;
    if a.ctx < 2 {
        anyhow::bail!("-c {} is too small for a conversation", a.ctx);
    }
    let factory = cpu_factory(CpuOptions {
        threads: a.threads.unwrap_or_else(simd::pool::physical_cores).max(1),
        n_ctx: a.ctx,
        n_batch: a.batch.max(1),
        prefault: true,
        reuse_prefix: true,
        spec: SpecChoice {
            draft_n: a.draft_n,
            kind: a.draft,
            adaptive: a.draft_adaptive,
        },
    });
    // The chat REPL runs the CPU engine: weights in huge-page memory.
    with_generator(&path, factory, false, true, |file, gen| {
        conversation(a, file, gen)
    })
    .with_context(|| format!("loading {}", path.display()))?
}

fn conversation(a: &Args, file: &GgufFile, gen: &mut dyn Generator) -> anyhow::Result<()> {
    let tok = Tokenizer::from_gguf(file)?;
    let intr = Arc::new(Interrupt::default());
    install_ctrl_c(intr.clone())?;
    let opts = ChatOptions {
        system: a.system.clone(),
        enable_thinking: a.no_thinking.then_some(false),
        ..Default::default()
    };
    let mut history: Vec<ChatMessage> = Vec::new();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut out = std::io::stdout();
    eprintln!(
        "chat with {} (context {} tokens). Ctrl-C stops an answer, Ctrl-D quits, /clear forgets the conversation.",
        file.path().display(),
        gen.n_ctx()
    );
    let mut turn = 0u64;
    // Everything the model has seen, as text and as the exact tokens fed or generated.
    let mut transcript_text = String::new();
    let mut transcript_tokens: Vec<u32> = Vec::new();
    loop {
        write!(out, "> ")?;
        out.flush()?;
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            writeln!(out)?;
            return Ok(());
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/clear" => {
                history.clear();
                transcript_text.clear();
                transcript_tokens.clear();
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::new("user", line));
        let full = render(tok.chat_template(), &history, &opts)?;
        let prompt = match full.strip_prefix(transcript_text.as_str()) {
            // The new turn extends what the model has seen: feed exactly those tokens again
            // plus the new text, so the generator skips the whole cached prefix.
            Some(rest) if !transcript_text.is_empty() => {
                let mut p = transcript_tokens.clone();
                p.extend(tok.tokenize(rest, false, true)?);
                p
            }
            _ => tok.tokenize(&full, tok.add_bos(), true)?,
        };
        if prompt.len() >= gen.n_ctx() {
            history.pop();
            eprintln!(
                "(the conversation is {} tokens, the context holds {}: /clear to start over, or raise -c)",
                prompt.len(),
                gen.n_ctx()
            );
            continue;
        }
        let prefill = assistant_prefill(tok.chat_template(), &history, &opts, &full);
        let mut sampler = Sampler::new(SamplerConfig {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            repeat_last_n: a.repeat_last_n,
            seed: a.seed.wrapping_add(turn),
        });
        turn += 1;
        let n_predict = a.n_predict.min(gen.n_ctx() - prompt.len());
        let mut dec = StreamDecoder::new();
        let mut answer = String::new();
        let mut answer_tokens: Vec<u32> = Vec::new();
        let mut io_err = None;
        intr.stop.store(false, Ordering::SeqCst);
        intr.generating.store(true, Ordering::SeqCst);
        let res = gen.generate(
            &prompt,
            n_predict,
            &mut sampler,
            &|t| tok.is_eog(t),
            &mut |t| {
                if intr.stop.load(Ordering::SeqCst) {
                    return false;
                }
                let s = dec.push(tok.token_to_piece(t, false).unwrap_or(&[]));
                answer.push_str(&s);
                answer_tokens.push(t);
                if let Err(e) = out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
                    io_err = Some(e);
                    return false;
                }
                true
            },
        );
        intr.generating.store(false, Ordering::SeqCst);
        let tail = dec.finish();
        answer.push_str(&tail);
        write!(out, "{tail}")?;
        if let Some(e) = io_err {
            return Err(e.into());
        }
        let stats = res?;
        intr.stop.store(false, Ordering::SeqCst);
        if stats.stop == "callback" {
            writeln!(out, " [stopped]")?;
        } else {
            writeln!(out)?;
        }
        tracing::debug!(
            prompt = stats.n_prompt,
            generated = stats.n_decode,
            decode_tps = format_args!("{:.1}", stats.decode_tps),
            stop = %stats.stop,
            "answer done"
        );
        transcript_tokens = prompt;
        transcript_tokens.extend_from_slice(&answer_tokens);
        transcript_text = full;
        transcript_text.push_str(&answer);
        history.push(ChatMessage::new("assistant", prefill + &answer));
    }
}

/// The start of the assistant's message that the generation prompt already wrote (Qwen's
/// `<think>\n`): the generation prompt minus the header an assistant message gets. It is
/// stored with the answer so the re-rendered history matches what the model saw.
fn assistant_prefill(
    template: Option<&str>,
    history: &[ChatMessage],
    opts: &ChatOptions,
    with_gen: &str,
) -> String {
    let no_gen = ChatOptions {
        add_generation_prompt: false,
        ..opts.clone()
    };
    const MARK: &str = "\u{1}hybrid-run-marker\u{1}";
    let mut probe = history.to_vec();
    probe.push(ChatMessage::new("assistant", MARK));
    let (Ok(base), Ok(with_mark)) = (
        render(template, history, &no_gen),
        render(template, &probe, &no_gen),
    ) else {
        return String::new();
    };
    // What the template writes before an assistant message's content.
    let header = with_mark
        .strip_prefix(&base)
        .and_then(|rest| rest.find(MARK).map(|i| &rest[..i]));
    match (header, with_gen.strip_prefix(&base)) {
        (Some(h), Some(gen_part)) => gen_part.strip_prefix(h).unwrap_or("").to_string(),
        _ => String::new(),
    }
}
