//! Logging set-up: everything goes through `tracing` to stderr; `RUST_LOG` picks the level.

/// Installs the stderr subscriber once. Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
