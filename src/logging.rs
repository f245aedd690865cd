//! Logging set-up: everything goes through `tracing` to stderr; `RUST_LOG` picks the level.

/// Installs the stderr subscriber once. Safe to call more than once (later calls do nothing).
pub fn init() {
    init_verbosity(0);
}

/// [`init`] with a default level raised by `-v` flags: 0 info, 1 debug, 2+ trace.
pub fn init_verbosity(verbose: u8) {
    let level = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
