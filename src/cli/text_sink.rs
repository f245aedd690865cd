//! Streaming generated tokens to stdout as text, shared by the CPU and GPU run paths.

use std::io::{self, StdoutLock, Write};

use crate::tokenizer::{StreamDecoder, Tokenizer};

/// Prints the prompt (optionally), then each token's text as soon as its UTF-8 is complete,
/// and remembers the token ids for `--stats-json`.
pub struct TextSink<'t> {
    tok: &'t Tokenizer,
    dec: StreamDecoder,
    out: StdoutLock<'static>,
    io_err: Option<io::Error>,
    pub ids: Vec<u32>,
}

impl<'t> TextSink<'t> {
    pub fn new(
        tok: &'t Tokenizer,
        rendered_prompt: &str,
        display_prompt: bool,
    ) -> io::Result<Self> {
        let mut out = io::stdout().lock();
        if display_prompt {
            write!(out, "{rendered_prompt}")?;
            out.flush()?;
        }
        Ok(TextSink {
            tok,
            dec: StreamDecoder::new(),
            out,
            io_err: None,
            ids: Vec::new(),
        })
    }

    /// The decoding loop's `on_token`: false stops generation (stdout went away).
    pub fn push(&mut self, t: u32) -> bool {
        self.ids.push(t);
        let piece = self.tok.token_to_piece(t, false).unwrap_or(&[]);
        let s = self.dec.push(piece);
        if let Err(e) = self
            .out
            .write_all(s.as_bytes())
            .and_then(|_| self.out.flush())
        {
            self.io_err = Some(e);
            return false;
        }
        true
    }

    /// Flushes held-back bytes and a final newline; returns the ids, or the first write error.
    pub fn finish(mut self) -> io::Result<Vec<u32>> {
        if let Some(e) = self.io_err.take() {
            return Err(e);
        }
        let rest = self.dec.finish();
        write!(self.out, "{rest}")?;
        writeln!(self.out)?;
        Ok(self.ids)
    }
}
