//! OpenAI response bodies: whole responses and streamed chunks of both endpoints.

use serde_json::{json, Value};

use super::engine::Finish;

/// Which endpoint's shapes to produce, and the fields every object of one response shares.
#[derive(Clone, Debug)]
pub struct Shape {
    pub kind: Endpoint,
    pub id: String,
    pub created: u64,
    pub model: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

pub fn usage(f: &Finish) -> Value {
    json!({
        "prompt_tokens": f.prompt_tokens,
        "completion_tokens": f.completion_tokens,
        "total_tokens": f.prompt_tokens + f.completion_tokens,
    })
}

/// llama.cpp-server-style timings (an extension clients ignore).
pub fn timings(f: &Finish) -> Value {
    json!({
        "prompt_n": f.stats.n_prompt,
        "prompt_ms": f.stats.prompt_ms,
        "prompt_per_second": f.stats.prompt_tps,
        "predicted_n": f.stats.n_decode,
        "predicted_ms": f.stats.decode_ms,
        "predicted_per_second": f.stats.decode_tps,
    })
}

impl Shape {
    fn object(&self, streamed: bool) -> &'static str {
        match (self.kind, streamed) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    /// The whole (non-streamed) response.
    pub fn full(&self, text: String, f: &Finish) -> Value {
        let choice = match self.kind {
            Endpoint::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": f.reason.as_str(),
            }),
            Endpoint::Completion => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": f.reason.as_str(),
            }),
        };
        json!({
            "id": self.id,
            "object": self.object(false),
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": usage(f),
            "timings": timings(f),
        })
    }

    fn chunk(&self, choice: Option<Value>, include_usage: bool) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": self.object(true),
            "created": self.created,
            "model": self.model,
            "choices": choice.map(|c| vec![c]).unwrap_or_default(),
        });
        if include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// Chunks sent before any text: the chat API announces the assistant role.
    pub fn stream_start(&self, include_usage: bool) -> Vec<Value> {
        match self.kind {
            Endpoint::Chat => vec![self.chunk(
                Some(json!({
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": null,
                    "finish_reason": null,
                })),
                include_usage,
            )],
            Endpoint::Completion => Vec::new(),
        }
    }

    pub fn stream_text(&self, text: &str, include_usage: bool) -> Value {
        let choice = match self.kind {
            Endpoint::Chat => json!({
                "index": 0,
                "delta": {"content": text},
                "logprobs": null,
                "finish_reason": null,
            }),
            Endpoint::Completion => json!({
                "index": 0,
                "text": text,
                "logprobs": null,
                "finish_reason": null,
            }),
        };
        self.chunk(Some(choice), include_usage)
    }

    /// The closing chunk with the finish reason, then (when asked) a usage-only chunk.
    pub fn stream_end(&self, f: &Finish, include_usage: bool) -> Vec<Value> {
        let choice = match self.kind {
            Endpoint::Chat => json!({
                "index": 0,
                "delta": {},
                "logprobs": null,
                "finish_reason": f.reason.as_str(),
            }),
            Endpoint::Completion => json!({
                "index": 0,
                "text": "",
                "logprobs": null,
                "finish_reason": f.reason.as_str(),
            }),
        };
        let mut out = vec![self.chunk(Some(choice), include_usage)];
        if include_usage {
            let mut u = self.chunk(None, false);
            u["usage"] = usage(f);
            u["timings"] = timings(f);
            out.push(u);
        }
        out
    }
}
