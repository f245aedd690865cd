//! Server-sent events: turns a request's engine events into `data: {json}\n\n` frames, ending
//! with `data: [DONE]`. The body owns the event receiver, so when hyper drops the body (the
//! client went away and a write failed) the engine sees the closed channel and stops.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

use super::engine::Event;
use super::error::ApiError;
use super::respond::Shape;

/// One SSE frame carrying a JSON object.
pub fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

pub const DONE: &[u8] = b"data: [DONE]\n\n";

struct State {
    rx: UnboundedReceiver<Event>,
    shape: Shape,
    include_usage: bool,
    pending: VecDeque<Bytes>,
    finished: bool,
}

impl State {
    /// Waits for the next engine event and queues the frames it becomes.
    async fn fill(&mut self) {
        match self.rx.recv().await {
            Some(Event::Text(t)) => self
                .pending
                .push_back(frame(&self.shape.stream_text(&t, self.include_usage))),
            Some(Event::Done(f)) => {
                for v in self.shape.stream_end(&f, self.include_usage) {
                    self.pending.push_back(frame(&v));
                }
                self.pending.push_back(Bytes::from_static(DONE));
                self.finished = true;
            }
            Some(Event::Error(msg)) => {
                let e = ApiError::internal(format!("generation failed: {msg}"));
                self.pending.push_back(frame(&e.body()));
                self.pending.push_back(Bytes::from_static(DONE));
                self.finished = true;
            }
            None => {
                let e = ApiError::internal("generation ended unexpectedly (engine failure)");
                self.pending.push_back(frame(&e.body()));
                self.pending.push_back(Bytes::from_static(DONE));
                self.finished = true;
            }
        }
    }
}

/// The streaming response for one queued request.
pub fn stream_response(
    rx: UnboundedReceiver<Event>,
    shape: Shape,
    include_usage: bool,
) -> Response {
    let mut pending = VecDeque::new();
    for v in shape.stream_start(include_usage) {
        pending.push_back(frame(&v));
    }
    let st = State {
        rx,
        shape,
        include_usage,
        pending,
        finished: false,
    };
    let body = stream::unfold(st, |mut st| async move {
        loop {
            if let Some(b) = st.pending.pop_front() {
                return Some((Ok::<Bytes, Infallible>(b), st));
            }
            if st.finished {
                return None;
            }
            st.fill().await;
        }
    });
    let mut resp = (StatusCode::OK, Body::from_stream(body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
