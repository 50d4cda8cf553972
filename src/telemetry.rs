//! Logging: tracing with `RUST_LOG` (EnvFilter syntax), default `info`, to stderr, as text or
//! as JSON lines, written off the request path by a thread of its own (see [`init_with`]).
//!
//! Many logged values come from requests (the path, a source name, a delivery id, a refusal's
//! reason), so no field value may write a control character: a newline would forge a log line,
//! an ESC would send commands to the terminal of whoever reads the log. The text format escapes
//! them in every field value, span fields included ([`EscapedFields`]); the JSON format is
//! escaped by serde, and [`JsonControls`] escapes the two kinds serde leaves raw.

use std::fmt;
use std::io;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

use crate::config::LogFormat;

/// Lines that may wait for the log writer; beyond, new lines are dropped (and counted) rather
/// than make a request wait for stderr.
const LOG_BUFFER_LINES: usize = 16 * 1024;

/// The log writer's count of dropped lines, once installed.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Lines the log writer dropped because its buffer was full (a flood, or a stalled stderr).
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}

/// Installs the global subscriber (text); a second call (tests) is a no-op. The writer's
/// thread is never told to stop: the last lines of a test may be lost.
pub fn init() {
    if let Some(guard) = init_with(LogFormat::Text) {
        std::mem::forget(guard);
    }
}

/// Installs the global subscriber in this format; a second call is a no-op (`None`).
///
/// Lines are formatted on the thread that logs and written by a thread of their own, in
/// batches, through a bounded buffer: a request never waits for stderr. Keep the guard until
/// the process ends: dropping it writes what is left.
pub fn init_with(format: LogFormat) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let writer = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .thread_name("fxhook-log");
    let (installed, guard) = match format {
        LogFormat::Text => {
            let (writer, guard) = writer.finish(io::BufWriter::new(io::stderr()));
            let counter = writer.error_counter();
            let installed = builder
                .fmt_fields(EscapedFields)
                .with_writer(writer)
                .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
                .try_init();
            (installed.map(|()| counter), guard)
        }
        LogFormat::Json => {
            let (writer, guard) = writer.finish(JsonControls(io::BufWriter::new(io::stderr())));
            let counter = writer.error_counter();
            let installed = builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_writer(writer)
                .try_init();
            (installed.map(|()| counter), guard)
        }
    };
    let counter = installed.ok()?;
    let _ = DROPPED.set(counter);
    Some(guard)
}

/// Formats fields as tracing's default formatter does (the message bare, then `name=value`),
/// with every control character of a value escaped.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'a> MakeVisitor<Writer<'a>> for EscapedFields {
    type Visitor = EscapingVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> EscapingVisitor<'a> {
        EscapingVisitor {
            writer,
            first: true,
            result: Ok(()),
        }
    }
}

/// The visitor of [`EscapedFields`].
#[derive(Debug)]
pub struct EscapingVisitor<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

/// Field names are italic and the `=` dimmed on a terminal, as tracing's default formatter does
/// (written here, outside the escaped value, so the escaping never touches them).
const ITALIC: &str = "\x1b[3m";
const DIMMED: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

impl EscapingVisitor<'_> {
    fn write_field(&mut self, name: &str, value: &dyn fmt::Debug) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_str(" ")?;
        }
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            if self.writer.has_ansi_escapes() {
                write!(self.writer, "{ITALIC}{name}{RESET}{DIMMED}={RESET}")?;
            } else {
                write!(self.writer, "{name}=")?;
            }
        }
        fmt::write(&mut Escaping(&mut self.writer), format_args!("{value:?}"))
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        // The message bare, other text quoted (as tracing's default formatter writes them).
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `log.*` fields are the metadata of `log` records, already shown as the event's own.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = self.write_field(field.name(), value);
    }
}

impl VisitOutput<fmt::Result> for EscapingVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapingVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// True for what must not reach a log raw: control characters (C0, DEL, C1), the Unicode line
/// and paragraph separators, and the bidirectional controls that reorder what a reader sees.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Writes through to `W`, each character of [`needs_escape`] as Rust writes it in a literal
/// (`\n`, `\r`, `\0`, `\u{1b}`), everything else as it is.
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, mut text: &str) -> fmt::Result {
        // Most text is printable ASCII: one pass over the bytes says so.
        if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return self.0.write_str(text);
        }
        while let Some(at) = text.find(needs_escape) {
            let (clean, rest) = text.split_at(at);
            self.0.write_str(clean)?;
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                write!(self.0, "{}", c.escape_debug())?;
            }
            text = chars.as_str();
        }
        self.0.write_str(text)
    }
}

/// The JSON log writer. serde escapes the C0 controls in strings but writes DEL and the C1
/// controls (U+0080 to U+009F, which some terminals obey as ESC sequences) raw; this writes them
/// as `\u007f` … `\u009f`. Both can only occur inside JSON strings, where that escape means the
/// same character, so every line stays the same JSON value.
pub struct JsonControls<W>(pub W);

impl<W: io::Write> io::Write for JsonControls<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let is_c1 = |pair: &[u8]| pair[0] == 0xc2 && (0x80..=0x9f).contains(&pair[1]);
        if !buf.contains(&0x7f) && !buf.windows(2).any(is_c1) {
            return self.0.write(buf);
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        let mut i = 0;
        while i < buf.len() {
            match buf[i] {
                0x7f => out.extend_from_slice(b"\\u007f"),
                // In UTF-8 a C1 control is 0xc2 then its own code: 0x80..=0x9f.
                0xc2 if buf.get(i + 1).is_some_and(|b| (0x80..=0x9f).contains(b)) => {
                    i += 1;
                    out.extend_from_slice(format!("\\u{:04x}", buf[i]).as_bytes());
                }
                b => out.push(b),
            }
            i += 1;
        }
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = String::new();
        fmt::write(&mut Escaping(&mut out), format_args!("{text}")).unwrap();
        out
    }

    #[test]
    fn control_characters_are_written_as_escapes_and_other_text_as_it_is() {
        assert_eq!(
            escaped("a\nb\r\0\u{1b}[31m\t\u{7f}\u{9b}é中\u{202e}"),
            "a\\nb\\r\\0\\u{1b}[31m\\t\\u{7f}\\u{9b}é中\\u{202e}"
        );
        assert_eq!(escaped("plain text, \\n stays"), "plain text, \\n stays");
    }

    /// A writer into a shared buffer, for a subscriber under test.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn on_a_terminal_field_names_keep_their_colour_and_values_are_escaped() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_ansi(true)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", source = tracing::field::Empty);
            span.record("source", tracing::field::display("x\u{1b}[2Jy"));
            span.in_scope(|| tracing::info!(path = %"/a\nb", "done\r"));
        });
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(
            out.contains("\x1b[3msource\x1b[0m\x1b[2m=\x1b[0mx\\u{1b}[2Jy"),
            "{out:?}"
        );
        assert!(out.contains("done\\r"), "{out:?}");
        assert!(
            out.contains("\x1b[3mpath\x1b[0m\x1b[2m=\x1b[0m/a\\nb"),
            "{out:?}"
        );
        assert!(
            !out.contains("\x1b[2J") && out.matches('\n').count() == 1,
            "{out:?}"
        );
    }

    #[test]
    fn the_json_writer_escapes_del_and_c1_controls_and_keeps_the_line_the_same_json() {
        let line = serde_json::to_string(&serde_json::json!({"path": "a\u{7f}b\u{9b}c é\n"}))
            .unwrap()
            + "\n";
        let mut writer = JsonControls(Vec::new());
        writer.write_all(line.as_bytes()).unwrap();
        let written = String::from_utf8(writer.0).unwrap();
        assert!(!written.contains(['\u{7f}', '\u{9b}']), "{written:?}");
        assert!(written.ends_with("\"}\n") && written.matches('\n').count() == 1);
        let back: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(back["path"], "a\u{7f}b\u{9b}c é\n");
    }
}
