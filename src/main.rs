use clap::{Parser, Subcommand};
use hybrid_run::cli;

/// Run qwen35 GGUF models on one GPU plus the CPU beside it.
#[derive(Parser, Debug)]
#[command(
    name = "hybrid-run",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: cli::run::Args,
    /// More log output (-v debug, -vv trace); RUST_LOG, when set, takes precedence.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure prefill and decode throughput on random tokens (like llama-bench).
    Bench(cli::bench::Args),
    /// Print architecture, dimensions, quant types and the size breakdown of a GGUF model.
    Info(cli::info::Args),
    /// OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models).
    Serve(cli::serve::Args),
    /// Write a random-weight qwen35 GGUF model (presets tiny, small, 27b).
    Synth(cli::synth::Args),
    /// Print the token ids of a text, like llama.cpp's llama-tokenize.
    Tokenize(cli::tokenize::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    hybrid_run::logging::init_verbosity(cli.verbose);
    let result = match cli.command {
        Some(Command::Bench(a)) => cli::bench::run(a),
        Some(Command::Info(a)) => cli::info::run(a),
        Some(Command::Serve(a)) => cli::serve::run(a),
        Some(Command::Synth(a)) => cli::synth::run(a),
        Some(Command::Tokenize(a)) => cli::tokenize::run(a),
        None => cli::run::run(cli.run),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The cause chain on one line, no backtrace: these are user-facing errors. Causes
            // whose text an outer message already includes are not repeated.
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("error: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}
