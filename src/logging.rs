//! Where groupcast's log records go.
//!
//! The code logs through `tracing`, never on the per-message path and never
//! a message's contents. What happens to the records is the embedder's
//! choice: a Rust host installs its own subscriber; the `groupcast` binary
//! calls [`init`] with `info` as its default; the C and PHP hosts call
//! [`init`] with no default, so a library embedded in them logs nothing
//! unless `GROUPCAST_LOG` (or `RUST_LOG`) asks for it; in Python, with no
//! subscriber installed, records reach the `logging` module under the
//! logger `groupcast` (tracing hands them to the `log` crate).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The variable that sets the filter (`info`, `groupcast=debug`, ...),
/// read before `RUST_LOG`.
pub const LOG_VARIABLE: &str = "GROUPCAST_LOG";

/// How records are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line for people: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line, for machines.
    Json,
}

/// The filter the environment asks for (`GROUPCAST_LOG`, else `RUST_LOG`),
/// else `default`; `None` when neither is set.
fn filter(default: Option<&str>) -> Option<EnvFilter> {
    let from_env = [LOG_VARIABLE, "RUST_LOG"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()));
    let directives = from_env.as_deref().or(default)?;
    Some(EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info")))
}

/// Writes records to standard error, filtered by `GROUPCAST_LOG` (else
/// `RUST_LOG`, else `default`; with neither, nothing is installed). Does
/// nothing when the process already has a subscriber. Returns whether this
/// call installed one.
pub fn init(default: Option<&str>, format: LogFormat) -> bool {
    let Some(filter) = filter(default) else {
        return false;
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.try_init().is_ok(),
        LogFormat::Json => builder.json().try_init().is_ok(),
    }
}
