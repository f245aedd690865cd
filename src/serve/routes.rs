//! HTTP routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`,
//! `GET /health` (the `/v1` routes are also served without the prefix, as llama.cpp does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::api::{parse_body, ChatRequest, CompletionRequest, Defaults, Sampling};
use super::engine::{EngineHandle, Event, SubmitError};
use super::error::ApiError;
use super::respond::{Endpoint, Shape};
use super::sse::stream_response;

/// Largest request body accepted (a full 262K-token prompt is about 1 MiB of text).
pub const MAX_BODY_BYTES: usize = 32 << 20;

#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// When set, `/v1` routes need `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// The model id reported and echoed; default: `general.name` or the file stem.
    pub model_alias: Option<String>,
    pub defaults: Defaults,
}

#[derive(Clone)]
pub struct AppState {
    engine: EngineHandle,
    cfg: Arc<ServerConfig>,
    next_id: Arc<AtomicU64>,
    started: u64,
}

impl AppState {
    pub fn new(engine: EngineHandle, cfg: ServerConfig) -> AppState {
        AppState {
            engine,
            cfg: Arc::new(cfg),
            next_id: Arc::new(AtomicU64::new(1)),
            started: now(),
        }
    }

    fn model_id(&self) -> String {
        self.cfg
            .model_alias
            .clone()
            .unwrap_or_else(|| self.engine.info().model_name.clone())
    }

    fn new_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        format!("{prefix}-{n}-{:08x}", rand::random::<u32>())
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.cfg.api_key else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same_secret(g.as_bytes(), key.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("invalid API key")),
        None => Err(ApiError::unauthorized(
            "missing API key: send the header `Authorization: Bearer <key>`",
        )),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "no such route; see /v1/chat/completions, /v1/completions, /v1/models, /health",
    )
}

async fn health(State(state): State<AppState>) -> Response {
    let m = state.engine.metrics();
    Json(json!({
        "status": "ok",
        "model": state.model_id(),
        "n_ctx": state.engine.info().n_ctx,
        "requests": m,
    }))
    .into_response()
}

async fn models(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let info = state.engine.info();
    Ok(Json(json!({
        "object": "list",
        "data": [{
            "id": state.model_id(),
            "object": "model",
            "created": state.started,
            "owned_by": "hybrid-run",
            "meta": {
                "path": info.model_path.display().to_string(),
                "n_ctx": info.n_ctx,
                "n_vocab": info.tokenizer.n_vocab(),
            },
        }],
    }))
    .into_response())
}

/// Queues a tokenized prompt and answers with a stream or a whole response.
fn serve(
    state: &AppState,
    kind: Endpoint,
    prompt: Vec<u32>,
    sampling: &Sampling,
    stream: bool,
    include_usage: bool,
) -> Result<Answer, ApiError> {
    let id = state.new_id(match kind {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completion => "cmpl",
    });
    let req = sampling.to_request(
        id.clone(),
        prompt,
        state.engine.info().n_ctx,
        &state.cfg.defaults,
    )?;
    let rx = state.engine.submit(req).map_err(|e| match e {
        SubmitError::QueueFull(_) => ApiError::busy(e.to_string()),
        SubmitError::EngineGone => ApiError::internal(e.to_string()),
    })?;
    let shape = Shape {
        kind,
        id,
        created: now(),
        model: state.model_id(),
    };
    if stream {
        Ok(Answer::Stream(stream_response(rx, shape, include_usage)))
    } else {
        Ok(Answer::Full(FullAnswer { rx, shape }))
    }
}

enum Answer {
    /// Already a streaming response.
    Stream(Response),
    /// To be collected before answering.
    Full(FullAnswer),
}

struct FullAnswer {
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    shape: Shape,
}

impl FullAnswer {
    /// Collects the whole answer. If the client goes away, this future is dropped with the
    /// receiver, which cancels the generation.
    async fn collect(mut self) -> Result<Response, ApiError> {
        let mut text = String::new();
        loop {
            match self.rx.recv().await {
                Some(Event::Text(t)) => text.push_str(&t),
                Some(Event::Done(f)) => return Ok(Json(self.shape.full(text, &f)).into_response()),
                Some(Event::Error(msg)) => {
                    return Err(ApiError::internal(format!("generation failed: {msg}")))
                }
                None => {
                    return Err(ApiError::internal(
                        "generation ended unexpectedly (engine failure)",
                    ))
                }
            }
        }
    }
}

async fn answer(a: Answer) -> Result<Response, ApiError> {
    match a {
        Answer::Stream(resp) => Ok(resp),
        Answer::Full(full) => full.collect().await,
    }
}

async fn chat(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let req: ChatRequest = parse_body(&body)?;
    let tok = state.engine.info().tokenizer.clone();
    let text = req.render(&tok)?;
    let prompt = tok
        .tokenize(&text, tok.add_bos(), true)
        .map_err(|e| ApiError::bad_request(format!("the messages cannot be tokenized: {e}")))?;
    let r = serve(
        &state,
        Endpoint::Chat,
        prompt,
        &req.sampling,
        req.stream(),
        req.include_usage(),
    )?;
    answer(r).await
}

async fn completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let req: CompletionRequest = parse_body(&body)?;
    let tok = state.engine.info().tokenizer.clone();
    let prompt = req.tokens(&tok)?;
    let r = serve(
        &state,
        Endpoint::Completion,
        prompt,
        &req.sampling,
        req.stream(),
        req.include_usage(),
    )?;
    answer(r).await
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }
}
