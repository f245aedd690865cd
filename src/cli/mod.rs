//! Command-line front end. Each subcommand lives in its own file with a clap `Args`
//! struct and a `run` function; `main.rs` only dispatches.

pub mod bench;
pub mod chat;
pub mod gpu_run;
pub mod info;
pub mod run;
pub mod run_stats;
pub mod serve;
pub mod synth;
pub mod text_sink;
pub mod tokenize;
