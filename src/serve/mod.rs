//! `hybrid-run serve`: an OpenAI-compatible HTTP server in front of one model.
//!
//! The model lives on one dedicated engine thread ([`engine`]) that owns the memory-mapped
//! GGUF file and whatever [`Generator`] was built from it, and runs one request at a time
//! from a FIFO queue. HTTP handlers ([`routes`]) validate and tokenize requests ([`api`]),
//! queue them, and turn the engine's events into JSON or server-sent events ([`sse`]).
//! A handler that goes away (client disconnected) drops its event receiver; the engine sees
//! the closed channel at the next token and stops that generation.
//!
//! The engine is backend-agnostic: it runs whatever a [`GeneratorFactory`] builds from the
//! opened file. [`load::cpu_factory`] builds the CPU engine; GPU placement and speculative
//! decoding plug in as other factories without touching the server.

pub mod api;
pub mod engine;
pub mod error;
pub mod generator;
pub mod gpu_generator;
pub mod load;
pub mod respond;
pub mod routes;
pub mod sse;
pub mod stop;

pub use engine::{Engine, EngineHandle, EngineOptions, Event, Finish, FinishReason, GenRequest};
pub use error::{ApiError, ServeError};
pub use generator::{CpuGenerator, Generator, GeneratorError, GeneratorFactory, SpecConfig};
pub use routes::{router, AppState, ServerConfig};
