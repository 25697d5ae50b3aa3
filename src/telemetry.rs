//! Structured logs via tracing: level from `RUST_LOG` or `log.level`,
//! format from `log.format` (pretty locally, JSON in production), to
//! stdout or to `log.file`, rotated by size with `log.keep_files` kept.
//! No line is longer than `log.max_line_bytes`, whatever a request sent:
//! a caller cannot make the log grow faster than its own request rate.

use std::io::{self, Write};
use std::sync::Mutex;

use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber (once; later calls are ignored). Fails
/// only when `log.file` cannot be opened, with the path and the cause.
pub fn init_subscriber(c: &LogConfig) -> Result<(), String> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&c.level));
    let max = c.max_line_bytes;
    let sink = if c.file.is_empty() {
        Sink::Stdout
    } else {
        Sink::File(Mutex::new(open_rotating(c)?))
    };
    let writer = Capped {
        sink: std::sync::Arc::new(sink),
        max,
    };
    // Colour only for a person at a terminal: never in a file, a pipe or
    // a container's captured output, and never with NO_COLOR set.
    let ansi = c.file.is_empty()
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    let _ = match c.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Compact => builder.compact().try_init(),
        LogFormat::Pretty => builder.pretty().try_init(),
    };
    Ok(())
}

/// `log.file`, rotated when it passes `max_file_mb`: `app.log` becomes
/// `app.log.1`, the older ones move up, past `keep_files` they go.
/// Whether `log.file` can be opened, checked without creating anything:
/// an existing file must open for appending; otherwise its nearest
/// existing ancestor must be a writable directory (the rest is created).
pub fn check_file(c: &LogConfig) -> Result<(), String> {
    if c.file.is_empty() {
        return Ok(());
    }
    let path = std::path::absolute(&c.file).map_err(|e| format!("log.file {:?}: {e}", c.file))?;
    let bad = |why: String| Err(format!("log.file {}: {why}", path.display()));
    if let Ok(m) = std::fs::metadata(&path) {
        if m.is_dir() {
            return bad("is a directory".into());
        }
        return match std::fs::OpenOptions::new().append(true).open(&path) {
            Ok(_) => Ok(()),
            Err(e) => bad(e.to_string()),
        };
    }
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.exists()) {
        dir = d.parent();
    }
    match dir.map(std::fs::metadata) {
        Some(Ok(m)) if !m.is_dir() => bad(format!(
            "{} is not a directory",
            dir.unwrap_or(&path).display()
        )),
        Some(Ok(m)) if m.permissions().readonly() => bad(format!(
            "{} is not writable",
            dir.unwrap_or(&path).display()
        )),
        Some(Ok(_)) => Ok(()),
        Some(Err(e)) => bad(e.to_string()),
        None => bad("no directory to create it in".into()),
    }
}

pub fn open_rotating(c: &LogConfig) -> Result<FileRotate<AppendCount>, String> {
    let path = std::path::absolute(&c.file).map_err(|e| format!("log.file {:?}: {e}", c.file))?;
    // FileRotate panics where it cannot create or open: check first.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("log.file {}: {e}", path.display()))?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("log.file {}: {e}", path.display()))?;
    Ok(FileRotate::new(
        path,
        AppendCount::new(c.keep_files),
        ContentLimit::BytesSurpassed(c.max_file_mb.saturating_mul(1 << 20)),
        Compression::None,
        None,
    ))
}

enum Sink {
    Stdout,
    File(Mutex<FileRotate<AppendCount>>),
}

/// Hands each event's line to the sink, cut to `max` bytes.
#[derive(Clone)]
struct Capped {
    sink: std::sync::Arc<Sink>,
    max: usize,
}

impl<'a> MakeWriter<'a> for Capped {
    type Writer = LineWriter<'a>;
    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            sink: &self.sink,
            max: self.max,
        }
    }
}

struct LineWriter<'a> {
    sink: &'a Sink,
    max: usize,
}

impl Write for LineWriter<'_> {
    /// The fmt layer writes an event as one buffer: cut it here.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let line = cap_line(buf, self.max);
        match self.sink {
            Sink::Stdout => io::stdout().lock().write_all(&line)?,
            Sink::File(f) => f
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_all(&line)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.sink {
            Sink::Stdout => io::stdout().flush(),
            Sink::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).flush(),
        }
    }
}

/// A log line of at most `max` bytes (and its newline). A JSON line stays
/// JSON: its cut text goes into a `truncated` object, so a log shipper
/// still parses it.
pub fn cap_line(buf: &[u8], max: usize) -> std::borrow::Cow<'_, [u8]> {
    if buf.len() <= max + 1 {
        return std::borrow::Cow::Borrowed(buf);
    }
    let mut take = max.saturating_sub(120);
    loop {
        let keep = String::from_utf8_lossy(&buf[..take]);
        // The lossy read may end in a broken character: drop it.
        let keep = keep.trim_end_matches('\u{FFFD}');
        let out = if buf.first() == Some(&b'{') {
            let text = serde_json::to_string(keep).unwrap_or_default();
            // The fields a shipper routes on, copied from the line's start
            // (the JSON format writes them first).
            let mut head = String::new();
            for field in ["timestamp", "level", "target"] {
                if let Some(v) = json_str_field(keep, field) {
                    head.push_str(&format!("\"{field}\":{v},"));
                }
            }
            format!(
                "{{{head}\"truncated\":{{\"bytes\":{},\"start\":{text}}}}}\n",
                buf.len()
            )
        } else {
            format!("{keep} ... [log line cut: {} bytes]\n", buf.len())
        };
        // JSON escaping can grow the text: take less until it fits.
        if out.len() <= max + 1 || take == 0 {
            return std::borrow::Cow::Owned(out.into_bytes());
        }
        take = take.saturating_sub(out.len() - max);
    }
}

/// `"field":"value"` of a flat JSON text, the value as written (quoted),
/// when it holds no escapes.
fn json_str_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    let key = format!("\"{field}\":\"");
    let at = text.find(&key)? + key.len() - 1;
    let rest = &text[at + 1..];
    let end = rest.find('"')?;
    let value = &rest[..end];
    (!value.contains('\\')).then(|| &text[at..at + end + 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_and_json_stays_json() {
        let short = b"short line\n";
        assert_eq!(&*cap_line(short, 1024), short);
        let long = format!("{}\n", "x".repeat(10_000));
        let cut = cap_line(long.as_bytes(), 1024);
        assert!(cut.len() <= 1025, "{}", cut.len());
        assert!(cut.ends_with(b"\n"));
        assert!(String::from_utf8_lossy(&cut).contains("10001 bytes"));
        let json = format!("{{\"message\":\"{}\"}}\n", "\"é".repeat(5000));
        let cut = cap_line(json.as_bytes(), 2048);
        assert!(cut.len() <= 2049);
        let v: serde_json::Value = serde_json::from_slice(&cut).unwrap();
        assert_eq!(v["truncated"]["bytes"], json.len());
        let line = format!(
            "{{\"timestamp\":\"2026-12-06T00:00:00Z\",\"level\":\"WARN\",\"message\":\"{}\",\"target\":\"x\"}}\n",
            "m".repeat(5000)
        );
        let cut = cap_line(line.as_bytes(), 1024);
        let v: serde_json::Value = serde_json::from_slice(&cut).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["timestamp"], "2026-12-06T00:00:00Z");
        assert!(v.get("target").is_none(), "past the cut: {v}");
    }

    #[test]
    fn the_file_rotates_by_size_keeping_a_count() {
        let dir = std::env::temp_dir().join(format!("fg-logrot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = LogConfig {
            format: LogFormat::Json,
            level: "info".into(),
            file: dir.join("fraudgate.log").display().to_string(),
            max_file_mb: 1,
            keep_files: 2,
            max_line_bytes: 8192,
        };
        let mut f = open_rotating(&c).unwrap();
        let line = format!("{}\n", "y".repeat(1000));
        for _ in 0..5000 {
            f.write_all(line.as_bytes()).unwrap();
        }
        f.flush().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["fraudgate.log", "fraudgate.log.1", "fraudgate.log.2"]
        );
        for n in &names {
            let len = std::fs::metadata(dir.join(n)).unwrap().len();
            assert!(len <= (1 << 20) + 1001, "{n}: {len}");
        }
        let _ = std::fs::remove_dir_all(&dir);
        // A file that cannot be opened is an error, not a panic.
        let bad = LogConfig {
            file: "/proc/no/such/dir/x.log".into(),
            ..c
        };
        assert!(open_rotating(&bad).is_err());
    }
}
