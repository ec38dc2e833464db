//! Log output: `logfmt` (the Prometheus exporters' default) or `json`, at a chosen level.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Installs the global subscriber writing to stderr. Call once, from `main`.
pub fn init(format: Format, level: Level) {
    let level = match level {
        Level::Debug => tracing::Level::DEBUG,
        Level::Info => tracing::Level::INFO,
        Level::Warn => tracing::Level::WARN,
        Level::Error => tracing::Level::ERROR,
    };
    // Only tickr's own events: the libraries' debug chatter is not an operator's concern.
    let filter = tracing_subscriber::filter::Targets::new().with_target("tickr", level);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level);
    use tracing_subscriber::layer::SubscriberExt as _;
    let result = match format {
        // Without `with_target(false)`, the module path would overwrite tickr's `target` field.
        Format::Json => tracing::subscriber::set_global_default(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_target(false)
                .finish()
                .with(filter),
        ),
        Format::Logfmt => tracing::subscriber::set_global_default(
            builder.event_format(Logfmt).finish().with(filter),
        ),
    };
    let _ = result;
}

/// `ts=… level=… caller=… msg="…" key=value …`, one event per line.
pub struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let now = humanize_now();
        write!(
            w,
            "ts={now} level={} caller={}",
            meta.level().as_str().to_ascii_lowercase(),
            meta.target()
        )?;
        let mut visitor = Fields {
            line: String::new(),
            message: None,
        };
        event.record(&mut visitor);
        if let Some(msg) = visitor.message {
            write!(w, " msg={}", quote(&msg))?;
        }
        writeln!(w, "{}", visitor.line)
    }
}

struct Fields {
    line: String,
    message: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = Some(text);
        } else {
            let _ = write!(self.line, " {}={}", field.name(), quote(&text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            let _ = write!(self.line, " {}={}", field.name(), quote(value));
        }
    }
}

/// Quotes a logfmt value when it needs it.
pub fn quote(v: &str) -> String {
    if !v.is_empty()
        && !v.contains(|c: char| c.is_whitespace() || c == '"' || c == '=' || c.is_control())
    {
        return v.to_owned();
    }
    format!("{v:?}")
}

/// RFC 3339 UTC with milliseconds, without pulling in a date crate.
fn humanize_now() -> String {
    rfc3339(crate::time::unix_now())
}

/// Unix seconds as RFC 3339 UTC with milliseconds, e.g. `2026-11-21T04:47:09.019Z`.
pub fn rfc3339(unix: f64) -> String {
    let millis = (unix * 1000.0).round() as i64;
    let (secs, ms) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_236_429.019), "2026-11-21T04:47:09.019Z");
        assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.500Z");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("x=\"y\""), "\"x=\\\"y\\\"\"");
    }
}
