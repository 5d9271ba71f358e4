//! Python Banyan's routing spec: the CSV file that tells a multi-backplane
//! component ([`crate::multi`]) which backplanes to use.
//!
//! ```text
//! backplane_name,ip_address,subscriber_port,subscriber_topic,publisher_port
//! BP1,192.168.2.190,43125,"[echo]",43124
//! BP2,192.168.2.180,43125,"[notice,run_motors]",43124
//! BP3,192.168.2.177,,"[]",43124
//! ```
//!
//! - The header line is required; columns may come in any order (Banyan
//!   reads the file with `csv.DictReader`). Blank lines are skipped.
//! - `backplane_name`: unique, non-empty.
//! - `ip_address`: IP address or host name of the backplane.
//! - `subscriber_port` / `publisher_port`: a port 1–65535, or **empty** when
//!   the component does not subscribe to / publish on that backplane.
//! - `subscriber_topic`: `[t1,t2,…]` (quote it, it contains commas), no
//!   spaces, no empty topics. Ignored when `subscriber_port` is empty (as in
//!   Banyan). Each topic is a prefix subscription, as everywhere in Banyan.
//!
//! **Differences from Python Banyan 3.17** (deliberate; each is what its
//! docs promise or a clear error instead of a crash or surprise):
//! - `"[]"` subscribes to **nothing**. Banyan splits it into `[""]` and so
//!   subscribes to *everything*. To receive everything, call
//!   [`MultiComponent::subscribe`](crate::multi::MultiComponent::subscribe)
//!   with `""`.
//! - Every problem is reported with the line and column: bad ports, missing
//!   columns, a topic list without brackets or with an empty entry (`[a,,b]`,
//!   `[a,]`, which Banyan silently turns into subscribe-to-everything),
//!   duplicate names, an empty file.
//! - A UTF-8 byte-order mark (Excel's "CSV UTF-8") is an error rather than
//!   a confusing missing-column error; Python Banyan cannot read such a file
//!   either, so keeping specs BOM-free keeps them usable by both.

use std::path::{Path, PathBuf};

/// Column names, in Banyan's order.
pub const COLUMNS: [&str; 5] = [
    "backplane_name",
    "ip_address",
    "subscriber_port",
    "subscriber_topic",
    "publisher_port",
];

/// Errors reading a routing spec. Lines are 1-based file lines.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file cannot be read: check the path and permissions.
    #[error("cannot read routing spec {path}: {source}")]
    Io {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file starts with a UTF-8 byte-order mark: save it as plain CSV
    /// (not "CSV UTF-8"); Python Banyan cannot read it either.
    #[error(
        "line 1: the file starts with a UTF-8 byte-order mark; save it as plain CSV without BOM"
    )]
    Bom,
    /// The header lacks a column: the first line must name all of
    /// `backplane_name,ip_address,subscriber_port,subscriber_topic,publisher_port`.
    #[error("line 1: header has no `{column}` column (expected {})", COLUMNS.join(","))]
    MissingColumn {
        /// The missing column.
        column: &'static str,
    },
    /// A row has a different number of fields than the header: check for
    /// unquoted commas (quote topic lists: `"[a,b]"`).
    #[error(
        "line {line}: {found} fields, the header has {expected} (quote topic lists like \"[a,b]\")"
    )]
    FieldCount {
        /// The line.
        line: u64,
        /// Fields found.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// The CSV itself is malformed (bad quoting or invalid UTF-8).
    #[error("line {line}: malformed CSV: {source}")]
    Csv {
        /// The line (0 if unknown).
        line: u64,
        /// What the CSV reader said.
        source: csv::Error,
    },
    /// A field has a bad value; the message says what is expected.
    #[error("line {line}, column `{column}`: {problem} (found {value:?})")]
    Field {
        /// The line.
        line: u64,
        /// The column.
        column: &'static str,
        /// The value found.
        value: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Two rows have the same `backplane_name`: names must be unique.
    #[error("line {line}: duplicate backplane_name {name:?} (first used on line {first_line})")]
    DuplicateName {
        /// The name.
        name: String,
        /// The line of the duplicate.
        line: u64,
        /// The line where it was first used.
        first_line: u64,
    },
    /// The spec has a header but no backplanes.
    #[error("the routing spec lists no backplanes")]
    Empty,
}

/// One backplane of a routing spec.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// Unique name.
    pub name: String,
    /// IP address or host name.
    pub address: String,
    /// Port to subscribe on, if the component subscribes there.
    pub subscriber_port: Option<u16>,
    /// Topics to subscribe to (only used with a subscriber port).
    pub topics: Vec<String>,
    /// Port to publish on, if the component publishes there.
    pub publisher_port: Option<u16>,
}

impl Entry {
    /// An entry; use `None` for an absent side.
    pub fn new(
        name: impl Into<String>,
        address: impl Into<String>,
        subscriber_port: Option<u16>,
        topics: Vec<String>,
        publisher_port: Option<u16>,
    ) -> Entry {
        Entry {
            name: name.into(),
            address: address.into(),
            subscriber_port,
            topics,
            publisher_port,
        }
    }
}

/// A parsed routing spec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Spec {
    /// The backplanes, in file order.
    pub entries: Vec<Entry>,
}

fn port(line: u64, column: &'static str, value: &str) -> Result<Option<u16>, Error> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => Err(Error::Field {
            line,
            column,
            value: value.to_owned(),
            problem: "expected a port number 1-65535 or an empty field",
        }),
    }
}

fn topics(line: u64, value: &str) -> Result<Vec<String>, Error> {
    let bad = |problem| Error::Field {
        line,
        column: "subscriber_topic",
        value: value.to_owned(),
        problem,
    };
    let inner = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .ok_or_else(|| bad("a topic list must look like [t1,t2] (quoted in the CSV)"))?;
    if inner.contains(char::is_whitespace) {
        return Err(bad("topics may not contain spaces"));
    }
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    let list: Vec<String> = inner.split(',').map(str::to_owned).collect();
    if list.iter().any(|t| t.is_empty() || t.contains(['[', ']'])) {
        return Err(bad("empty topic or stray bracket in the list"));
    }
    Ok(list)
}

impl Spec {
    /// Parses a routing spec from text.
    ///
    /// # Errors
    /// Any [`Error`] but `Io`, naming the line and column.
    pub fn parse(text: &str) -> Result<Spec, Error> {
        if text.starts_with('\u{feff}') {
            return Err(Error::Bom);
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(text.as_bytes());
        let headers = reader
            .headers()
            .map_err(|source| Error::Csv { line: 1, source })?
            .clone();
        let mut index = [0usize; 5];
        for (slot, column) in index.iter_mut().zip(COLUMNS) {
            *slot = headers
                .iter()
                .position(|h| h.trim() == column)
                .ok_or(Error::MissingColumn { column })?;
        }
        let mut entries: Vec<(Entry, u64)> = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|source| Error::Csv {
                line: source.position().map_or(0, |p| p.line()),
                source,
            })?;
            let line = record.position().map_or(0, |p| p.line());
            if record.len() != headers.len() {
                return Err(Error::FieldCount {
                    line,
                    found: record.len(),
                    expected: headers.len(),
                });
            }
            let field = |i: usize| index.get(i).and_then(|&c| record.get(c)).unwrap_or("");
            let name = field(0).trim().to_owned();
            if name.is_empty() {
                return Err(Error::Field {
                    line,
                    column: "backplane_name",
                    value: field(0).to_owned(),
                    problem: "a backplane needs a name",
                });
            }
            if let Some((_, first_line)) = entries.iter().find(|(e, _)| e.name == name) {
                return Err(Error::DuplicateName {
                    name,
                    line,
                    first_line: *first_line,
                });
            }
            let address = field(1).trim().to_owned();
            let subscriber_port = port(line, "subscriber_port", field(2))?;
            let publisher_port = port(line, "publisher_port", field(4))?;
            if address.is_empty() && (subscriber_port.is_some() || publisher_port.is_some()) {
                return Err(Error::Field {
                    line,
                    column: "ip_address",
                    value: String::new(),
                    problem: "an IP address or host name is needed",
                });
            }
            let topics = if subscriber_port.is_some() {
                topics(line, field(3).trim())?
            } else {
                Vec::new()
            };
            entries.push((
                Entry {
                    name,
                    address,
                    subscriber_port,
                    topics,
                    publisher_port,
                },
                line,
            ));
        }
        if entries.is_empty() {
            return Err(Error::Empty);
        }
        Ok(Spec {
            entries: entries.into_iter().map(|(e, _)| e).collect(),
        })
    }

    /// Reads and parses a routing spec file.
    ///
    /// # Errors
    /// [`Error::Io`] or a parse error.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Spec, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Spec::parse(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str =
        "backplane_name,ip_address,subscriber_port,subscriber_topic,publisher_port\n";

    #[test]
    fn banyan_example_spec_parses() {
        // Banyan's multi_driver_spec.csv, with made-up addresses.
        let text = format!(
            "{HEADER}BP1,10.0.0.1,43127,\"[reply]\",43126\nBP2,10.0.0.1,43125,\"[reply]\",43124\n\
             BP3,10.0.0.2,43125,\"[]\",43124\nBP4,10.0.0.3,43125,\"[run_motors,light_leds]\",\n\
             BP5,10.0.0.4,,\"[run_motors,light_leds]\",43124\n\n"
        );
        let spec = Spec::parse(&text).unwrap();
        assert_eq!(spec.entries.len(), 5);
        assert_eq!(
            spec.entries[3],
            Entry::new(
                "BP4",
                "10.0.0.3",
                Some(43125),
                vec!["run_motors".into(), "light_leds".into()],
                None
            )
        );
        assert_eq!(spec.entries[2].topics, Vec::<String>::new());
        assert_eq!(spec.entries[4].subscriber_port, None);
        assert_eq!(spec.entries[4].topics, Vec::<String>::new());
    }

    #[test]
    fn columns_in_any_order() {
        let spec = Spec::parse(
            "publisher_port,subscriber_topic,subscriber_port,ip_address,backplane_name\n43124,[a],43125,h,X\n",
        )
        .unwrap();
        assert_eq!(
            spec.entries[0],
            Entry::new("X", "h", Some(43125), vec!["a".into()], Some(43124))
        );
    }

    fn err(body: &str) -> String {
        Spec::parse(&format!("{HEADER}{body}"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(
            err("A,h,43125,\"[a]\",43124\nA,h,1,\"[b]\",2\n"),
            "line 3: duplicate backplane_name \"A\" (first used on line 2)"
        );
        assert_eq!(
            err("A,h,70000,\"[a]\",43124\n"),
            "line 2, column `subscriber_port`: expected a port number 1-65535 or an empty field (found \"70000\")"
        );
        assert_eq!(
            err("A,h,43125,\"[a]\",x1\n"),
            "line 2, column `publisher_port`: expected a port number 1-65535 or an empty field (found \"x1\")"
        );
        assert!(err("A,h,43125,a,43124\n")
            .starts_with("line 2, column `subscriber_topic`: a topic list"));
        assert!(err("A,h,43125,\"[a, b]\",43124\n").contains("spaces"));
        assert!(err("A,h,43125,\"[a,]\",43124\n").contains("empty topic"));
        assert_eq!(
            err("A,h,43125,[a,b],43124\n"),
            "line 2: 6 fields, the header has 5 (quote topic lists like \"[a,b]\")"
        );
        assert!(err(",h,43125,\"[a]\",43124\n").contains("needs a name"));
        assert_eq!(err(""), "the routing spec lists no backplanes");
        assert_eq!(
            Spec::parse("backplane_name,ip_address,subscriber_port,publisher_port\nA,h,1,2\n")
                .unwrap_err()
                .to_string(),
            "line 1: header has no `subscriber_topic` column (expected backplane_name,ip_address,subscriber_port,subscriber_topic,publisher_port)"
        );
        assert!(matches!(
            Spec::parse(&format!("\u{feff}{HEADER}A,h,1,\"[a]\",2\n")),
            Err(Error::Bom)
        ));
        assert!(matches!(
            Spec::from_path("/nonexistent/spec.csv"),
            Err(Error::Io { .. })
        ));
    }
}
