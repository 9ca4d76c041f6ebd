//! Logging: CRIU's `-v0..-v4` and `-o FILE` on top of tracing.
//!
//! Levels follow CRIU's (criu/include/log.h): 0 prints nothing but the command's own messages,
//! 1 errors, 2 (the default) warnings too, 3 information, 4 debug; cryo adds 5 for trace. From
//! level 3 on, every line starts with the time since cryo started, as CRIU's `(00.000123)`.
//! Errors and warnings read `Error (where): ...` and `Warn  (where): ...`, the words CRIU's
//! tools (zdtm's grep_errors) look for. Spans show as `dump{pid=1}: task{pid=2}: `.
//!
//! Without `-o` the log goes to stderr; `-o -` sends it to stdout; `-o FILE` writes FILE
//! (created 0600 and truncated as CRIU does, relative to the work directory), and then errors go to stderr too.

use anyhow::Context;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The target of the final error message of a failed command: written to a log file, never
/// copied to stderr (main prints it there itself).
pub const SUMMARY_TARGET: &str = "cryo::summary";

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error (no `-o`).
    Stderr,
    /// Standard output (`-o -`).
    Stdout,
    /// A file (`-o FILE`), already resolved against the work directory.
    File(PathBuf),
}

/// What [`init`] set up.
#[derive(Debug, Clone, Copy)]
pub struct Logging {
    /// The log is a file or stdout, not stderr: errors must also be shown on stderr.
    pub separate_from_stderr: bool,
    /// The log keeps error messages (verbosity 1 or more).
    pub keeps_errors: bool,
}

/// The tracing level for a CRIU verbosity.
pub fn level_filter(verbosity: u32) -> LevelFilter {
    match verbosity {
        0 => LevelFilter::OFF,
        1 => LevelFilter::ERROR,
        2 => LevelFilter::WARN,
        3 => LevelFilter::INFO,
        4 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// CRIU's line format.
struct CriuFormat {
    start: Instant,
    timestamps: bool,
}

impl<S, N> FormatEvent<S, N> for CriuFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        if self.timestamps {
            let t = self.start.elapsed();
            write!(writer, "({:02}.{:06}) ", t.as_secs(), t.subsec_micros())?;
        }
        let meta = event.metadata();
        let target = if meta.target() == SUMMARY_TARGET {
            "cryo"
        } else {
            meta.target()
        };
        match *meta.level() {
            Level::ERROR => write!(writer, "Error ({target}): ")?,
            Level::WARN => write!(writer, "Warn  ({target}): ")?,
            _ => {}
        }
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                write!(writer, "{}", span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, "{{{fields}}}")?;
                    }
                }
                write!(writer, ": ")?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Install the global subscriber for `verbosity` and `target`; `start` is time zero of the
/// timestamps.
pub fn init(verbosity: u32, target: &LogTarget, start: Instant) -> anyhow::Result<Logging> {
    let level = level_filter(verbosity);
    let writer = match target {
        LogTarget::Stderr => BoxMakeWriter::new(io::stderr),
        LogTarget::Stdout => BoxMakeWriter::new(io::stdout),
        LogTarget::File(path) => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("can't create log file {}", path.display()))?;
            BoxMakeWriter::new(Mutex::new(file))
        }
    };
    let separate = *target != LogTarget::Stderr;
    let main_layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .event_format(CriuFormat {
            start,
            timestamps: verbosity >= 3,
        })
        .with_writer(writer)
        .with_filter(level);
    // With the log elsewhere, errors are shown on stderr as well (but not the final summary,
    // which main prints there itself).
    let stderr_errors = separate.then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(CriuFormat {
                start,
                timestamps: false,
            })
            .with_writer(io::stderr)
            .with_filter(FilterFn::new(|meta| {
                *meta.level() == Level::ERROR && meta.target() != SUMMARY_TARGET
            }))
    });
    tracing_subscriber::registry()
        .with(main_layer)
        .with(stderr_errors)
        .try_init()
        .context("can't set up logging")?;
    Ok(Logging {
        separate_from_stderr: separate,
        keeps_errors: level >= LevelFilter::ERROR,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criu_levels() {
        assert_eq!(level_filter(0), LevelFilter::OFF);
        assert_eq!(level_filter(1), LevelFilter::ERROR);
        assert_eq!(level_filter(2), LevelFilter::WARN);
        assert_eq!(level_filter(3), LevelFilter::INFO);
        assert_eq!(level_filter(4), LevelFilter::DEBUG);
        assert_eq!(level_filter(9), LevelFilter::TRACE);
    }
}
