//! Logging set-up: `tracing` with text or JSON output.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

/// Installs the global subscriber, writing to stderr so that command output
/// on stdout (overlay URLs, lists) stays clean. Safe to call more than once
/// (tests): later calls leave the first subscriber in place.
pub fn init(level: &str, format: LogFormat) {
    // Config refuses non-ASCII filters (the parser can panic on them); a
    // caller that did not go through it gets `info` instead.
    let parsed = if level.is_ascii() { EnvFilter::try_new(level).ok() } else { None };
    let mut filter = parsed.unwrap_or_else(|| EnvFilter::new("info"));
    // The migration library narrates every run at info; only its problems matter.
    if !level.contains("refinery")
        && let Ok(directive) = "refinery_core=warn".parse()
    {
        filter = filter.add_directive(directive);
    }
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_span_events(FmtSpan::NONE).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
