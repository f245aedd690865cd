//! OpenAI request bodies: parsing, validation, and conversion to an engine [`GenRequest`].
//! Unknown fields are ignored (clients send many); known fields with unusable values and
//! features the server does not have (`n > 1`, `logprobs`, tools, images) are a 400.

use serde::Deserialize;
use serde_json::Value;

use crate::sample::SamplerConfig;
use crate::tokenizer::chat::{render, ChatMessage, ChatOptions};
use crate::tokenizer::Tokenizer;

use super::engine::GenRequest;
use super::error::ApiError;

/// Sampling defaults for fields a request leaves out (from the `serve` command line).
#[derive(Clone, Debug)]
pub struct Defaults {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    /// `None`: up to the end of the context.
    pub max_tokens: Option<usize>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            max_tokens: None,
        }
    }
}

/// Generation fields shared by both endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct Sampling {
    pub max_tokens: Option<i64>,
    /// The newer name of `max_tokens` in the chat API.
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    /// Extensions also accepted by llama.cpp's server.
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub repeat_penalty: Option<f64>,
    /// Negative: a random seed (as llama.cpp's -1).
    pub seed: Option<i64>,
    /// A string or a list of strings.
    pub stop: Option<Value>,
    pub n: Option<i64>,
    pub logprobs: Option<Value>,
    pub ignore_eos: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize)]
pub struct InMessage {
    pub role: String,
    /// A string, a list of `{"type": "text", "text": ...}` parts, or null.
    #[serde(default)]
    pub content: Value,
}

#[derive(Debug, Default, Deserialize)]
pub struct TemplateKwargs {
    pub enable_thinking: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<InMessage>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub sampling: Sampling,
    #[serde(default)]
    pub tools: Option<Value>,
    #[serde(default)]
    pub response_format: Option<Value>,
    #[serde(default)]
    pub chat_template_kwargs: Option<TemplateKwargs>,
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    pub model: Option<String>,
    /// A string, a one-element list of strings, or a list of token ids.
    pub prompt: Value,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    pub sampling: Sampling,
    #[serde(default)]
    pub echo: Option<bool>,
    #[serde(default)]
    pub suffix: Option<Value>,
    #[serde(default)]
    pub best_of: Option<i64>,
}

/// Parses a JSON body, turning any syntax or type error into a 400 that says where.
pub fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; expected a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

fn stop_strings(v: &Option<Value>) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::bad_request("`stop` must be a string or a list of at most 4 strings")
            .param("stop")
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) if a.len() <= 4 => a
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

fn in_range(
    v: Option<f64>,
    name: &'static str,
    lo: f64,
    hi: f64,
    lo_open: bool,
) -> Result<Option<f32>, ApiError> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x <= hi && (x > lo || (!lo_open && x == lo)) => {
            Ok(Some(x as f32))
        }
        Some(x) => Err(ApiError::bad_request(format!(
            "`{name}` is {x}; it must be in {}{lo}, {hi}]",
            if lo_open { "(" } else { "[" }
        ))
        .param(name)),
    }
}

impl Sampling {
    /// Checks the fields and builds the engine request for an already tokenized prompt.
    /// `n_ctx` bounds prompt plus output: a prompt that does not leave room for one token is
    /// a 400 (`context_length_exceeded`); `max_tokens` is clamped to the room left.
    pub fn to_request(
        &self,
        id: String,
        prompt: Vec<u32>,
        n_ctx: usize,
        d: &Defaults,
    ) -> Result<GenRequest, ApiError> {
        if let Some(n) = self.n {
            if n != 1 {
                return Err(ApiError::bad_request(format!(
                    "`n` is {n}; this server generates one choice per request (n = 1)"
                ))
                .param("n"));
            }
        }
        match &self.logprobs {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(_) => {
                return Err(
                    ApiError::bad_request("`logprobs` is not supported by this server")
                        .param("logprobs"),
                )
            }
        }
        let temperature = in_range(self.temperature, "temperature", 0.0, 2.0, false)?;
        let top_p = in_range(self.top_p, "top_p", 0.0, 1.0, true)?;
        let min_p = in_range(self.min_p, "min_p", 0.0, 1.0, false)?;
        let repeat_penalty = in_range(self.repeat_penalty, "repeat_penalty", 0.0, 10.0, true)?;
        let top_k = match self.top_k {
            None => None,
            Some(k) if k >= 0 => Some(k as usize),
            Some(k) => {
                return Err(
                    ApiError::bad_request(format!("`top_k` is {k}; it must be 0 or more"))
                        .param("top_k"),
                )
            }
        };
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            None => None,
            Some(m) if m >= 1 => Some(usize::try_from(m).unwrap_or(usize::MAX)),
            Some(m) => {
                return Err(ApiError::bad_request(format!(
                    "`max_tokens` is {m}; it must be at least 1"
                ))
                .param("max_tokens"))
            }
        };
        let stop = stop_strings(&self.stop)?;
        if prompt.is_empty() {
            return Err(ApiError::bad_request("the prompt is empty").param("prompt"));
        }
        if prompt.len() >= n_ctx {
            return Err(ApiError::bad_request(format!(
                "the prompt is {} tokens long but the model's context holds {n_ctx} tokens \
                 (prompt plus output); shorten the prompt",
                prompt.len()
            ))
            .code("context_length_exceeded"));
        }
        let room = n_ctx - prompt.len();
        let max_tokens = max_tokens.or(d.max_tokens).unwrap_or(room).min(room);
        let seed = match self.seed {
            Some(s) if s >= 0 => s as u64,
            _ => rand::random(),
        };
        Ok(GenRequest {
            id,
            prompt,
            max_tokens,
            sampling: SamplerConfig {
                temperature: temperature.unwrap_or(d.temperature),
                top_k: top_k.unwrap_or(d.top_k),
                top_p: top_p.unwrap_or(d.top_p),
                min_p: min_p.unwrap_or(d.min_p),
                repeat_penalty: repeat_penalty.unwrap_or(d.repeat_penalty),
                repeat_last_n: d.repeat_last_n,
                seed,
            },
            stop,
            ignore_eos: self.ignore_eos.unwrap_or(false),
        })
    }
}

fn message_text(i: usize, m: &InMessage) -> Result<String, ApiError> {
    match &m.content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                match (p.get("type").and_then(Value::as_str), p.get("text")) {
                    (Some("text"), Some(Value::String(t))) => out.push_str(t),
                    (Some(ty), _) => {
                        return Err(ApiError::bad_request(format!(
                            "messages[{i}]: content part of type {ty:?} is not supported (text only)"
                        ))
                        .param("messages"))
                    }
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "messages[{i}]: each content part must be {{\"type\": \"text\", \"text\": ...}}"
                        ))
                        .param("messages"))
                    }
                }
            }
            Ok(out)
        }
        _ => Err(ApiError::bad_request(format!(
            "messages[{i}].content must be a string or a list of text parts"
        ))
        .param("messages")),
    }
}

impl ChatRequest {
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .map(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The conversation rendered with the model's chat template, ready to tokenize.
    pub fn render(&self, tok: &Tokenizer) -> Result<String, ApiError> {
        if matches!(&self.tools, Some(Value::Array(a)) if !a.is_empty()) {
            return Err(
                ApiError::bad_request("tools are not supported by this server").param("tools"),
            );
        }
        if let Some(rf) = &self.response_format {
            let ty = rf.get("type").and_then(Value::as_str);
            if ty != Some("text") {
                return Err(ApiError::bad_request(
                    "response_format other than {\"type\": \"text\"} is not supported",
                )
                .param("response_format"));
            }
        }
        if self.messages.is_empty() {
            return Err(ApiError::bad_request("`messages` is empty").param("messages"));
        }
        let mut msgs = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                "tool" => "tool",
                other => {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}].role is {other:?}; expected system, developer, user, assistant or tool"
                    ))
                    .param("messages"))
                }
            };
            msgs.push(ChatMessage::new(role, message_text(i, m)?));
        }
        let opts = ChatOptions {
            enable_thinking: self
                .chat_template_kwargs
                .as_ref()
                .and_then(|k| k.enable_thinking),
            bos_token: tok
                .bos()
                .and_then(|b| tok.token_text(b))
                .unwrap_or("")
                .to_string(),
            eos_token: tok
                .eos()
                .and_then(|e| tok.token_text(e))
                .unwrap_or("")
                .to_string(),
            ..Default::default()
        };
        render(tok.chat_template(), &msgs, &opts).map_err(|e| {
            ApiError::bad_request(format!("the chat template failed on these messages: {e}"))
                .param("messages")
        })
    }
}

impl CompletionRequest {
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .map(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The prompt as tokens: text is tokenized like llama.cpp's server does (BOS added if the
    /// model wants it, special tokens parsed); a list of ids is taken as is.
    pub fn tokens(&self, tok: &Tokenizer) -> Result<Vec<u32>, ApiError> {
        if self.echo == Some(true) {
            return Err(
                ApiError::bad_request("`echo` is not supported by this server").param("echo"),
            );
        }
        if !matches!(self.suffix, None | Some(Value::Null)) {
            return Err(
                ApiError::bad_request("`suffix` is not supported by this server").param("suffix"),
            );
        }
        if matches!(self.best_of, Some(b) if b != 1) {
            return Err(ApiError::bad_request("`best_of` must be 1").param("best_of"));
        }
        let text = |s: &str| {
            tok.tokenize(s, tok.add_bos(), true).map_err(|e| {
                ApiError::bad_request(format!("the prompt cannot be tokenized: {e}"))
                    .param("prompt")
            })
        };
        let bad = || {
            ApiError::bad_request(
                "`prompt` must be a string, a list with one string, or a list of token ids",
            )
            .param("prompt")
        };
        match &self.prompt {
            Value::String(s) => text(s),
            Value::Array(a) if a.len() == 1 && a[0].is_string() => {
                text(a[0].as_str().unwrap_or(""))
            }
            Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => a
                .iter()
                .map(|v| match v.as_u64() {
                    Some(t) if (t as usize) < tok.n_vocab() => Ok(t as u32),
                    _ => Err(ApiError::bad_request(format!(
                        "prompt token {v} is not a token id of this model (0..{})",
                        tok.n_vocab()
                    ))
                    .param("prompt")),
                })
                .collect(),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(json: &str) -> Sampling {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_prompt_that_fills_the_context_is_rejected_with_context_length_exceeded() {
        let e = sampling("{}")
            .to_request("x".into(), vec![1; 8], 8, &Defaults::default())
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.code, Some("context_length_exceeded"));
        assert!(e.message.contains("8 tokens"), "{}", e.message);
    }

    #[test]
    fn max_tokens_is_clamped_to_the_room_left_in_the_context() {
        let r = sampling(r#"{"max_tokens": 100}"#)
            .to_request("x".into(), vec![1; 6], 8, &Defaults::default())
            .unwrap();
        assert_eq!(r.max_tokens, 2);
        let r = sampling("{}")
            .to_request("x".into(), vec![1; 3], 8, &Defaults::default())
            .unwrap();
        assert_eq!(r.max_tokens, 5);
    }

    #[test]
    fn out_of_range_sampling_values_name_the_field() {
        for (body, field) in [
            (r#"{"temperature": -1}"#, "temperature"),
            (r#"{"temperature": 3}"#, "temperature"),
            (r#"{"top_p": 0}"#, "top_p"),
            (r#"{"max_tokens": 0}"#, "max_tokens"),
            (r#"{"n": 2}"#, "n"),
            (r#"{"stop": 5}"#, "stop"),
            (r#"{"stop": ["a","b","c","d","e"]}"#, "stop"),
            (r#"{"logprobs": true}"#, "logprobs"),
            (r#"{"top_k": -2}"#, "top_k"),
        ] {
            let e = sampling(body)
                .to_request("x".into(), vec![1], 8, &Defaults::default())
                .unwrap_err();
            assert_eq!(e.param, Some(field), "{body}");
        }
    }

    #[test]
    fn request_values_override_defaults_and_a_given_seed_is_kept() {
        let r = sampling(r#"{"temperature": 0, "top_p": 0.5, "seed": 7, "stop": "x"}"#)
            .to_request("x".into(), vec![1], 8, &Defaults::default())
            .unwrap();
        assert_eq!(r.sampling.temperature, 0.0);
        assert_eq!(r.sampling.top_p, 0.5);
        assert_eq!(r.sampling.seed, 7);
        assert_eq!(r.stop, vec!["x".to_string()]);
    }

    #[test]
    fn malformed_json_is_a_bad_request_that_says_where() {
        let e = parse_body::<ChatRequest>(b"{\"messages\": [").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("line 1"), "{}", e.message);
        let e = parse_body::<ChatRequest>(b"{}").unwrap_err();
        assert!(e.message.contains("messages"), "{}", e.message);
        let e = parse_body::<ChatRequest>(b"").unwrap_err();
        assert_eq!(e.status, 400);
    }
}
