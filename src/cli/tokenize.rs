//! `hybrid-run tokenize`: tokenize text with a GGUF model's tokenizer, like llama.cpp's
//! `llama-tokenize` (special tokens parsed by default, no BOS for Qwen).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;

use crate::gguf::GgufFile;
use crate::tokenizer::Tokenizer;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// GGUF model (or vocab-only GGUF) whose tokenizer to use.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Text to tokenize; `-` or absent reads standard input.
    pub text: Option<String>,
    /// Read the text from a file instead.
    #[arg(short = 'f', long = "file", conflicts_with = "text")]
    pub file: Option<PathBuf>,
    /// Print one `id -> 'piece'` line per token instead of the id list.
    #[arg(long)]
    pub pieces: bool,
    /// Treat special-token text such as `<|im_start|>` as plain text.
    #[arg(long)]
    pub no_parse_special: bool,
    /// Add BOS/EOS if the model asks for them (Qwen does not).
    #[arg(long)]
    pub add_special: bool,
    /// Also print the number of tokens.
    #[arg(long)]
    pub show_count: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let gguf =
        GgufFile::open(&args.model).with_context(|| format!("opening {}", args.model.display()))?;
    let tok = Tokenizer::from_gguf(&gguf)
        .with_context(|| format!("reading the tokenizer of {}", args.model.display()))?;
    let text: Vec<u8> = match (&args.file, &args.text) {
        (Some(f), _) => std::fs::read(f).with_context(|| format!("reading {}", f.display()))?,
        (None, Some(t)) if t != "-" => t.clone().into_bytes(),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading standard input")?;
            buf
        }
    };
    let ids = tok.tokenize_bytes(&text, args.add_special, !args.no_parse_special)?;
    let mut out = std::io::stdout().lock();
    if args.pieces {
        for &id in &ids {
            let piece = tok.token_to_piece(id, true)?;
            writeln!(out, "{id:6} -> '{}'", String::from_utf8_lossy(piece))?;
        }
    } else {
        let list: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "[{}]", list.join(", "))?;
    }
    if args.show_count {
        writeln!(out, "Total number of tokens: {}", ids.len())?;
    }
    Ok(())
}
