//! Object keys as Firehose names them (pure).
//!
//! ```text
//! key = PREFIX + TIME + NAME-VERSION-YYYY-MM-DD-HH-MM-SS-UUID + EXTENSION
//! ```
//!
//! - `PREFIX` is the destination's `Prefix` with its expressions evaluated:
//!   `!{timestamp:PATTERN}` (a Java `DateTimeFormatter` pattern: `yyyy`, `MM`, `dd`,
//!   `HH`, `mm`, `ss`, literals and `'quoted text'`), `!{firehose:random-string}` (11
//!   characters), `!{firehose:error-output-type}` (only in `ErrorOutputPrefix`) and
//!   `!{partitionKeyFromQuery:KEY}` (dynamic partitioning).
//! - `TIME` is `YYYY/MM/DD/HH/`, added only when the prefix has no `!{timestamp:…}`.
//! - An `ErrorOutputPrefix` left empty is `!{firehose:error-output-type}/` then the time.
//! - The time is the arrival time of the oldest record in the object, in UTC.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// One piece of a parsed prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Timestamp(Vec<TimeField>),
    RandomString,
    ErrorOutputType,
    PartitionKey(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TimeField {
    Year(usize),
    Month(usize),
    Day(usize),
    Hour(usize),
    Minute(usize),
    Second(usize),
    Literal(String),
}

/// A prefix, parsed once when the stream is created or updated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PrefixTemplate {
    pieces: Vec<Piece>,
}

/// Values the expressions of one object take.
pub struct KeyContext<'a> {
    pub arrival_ms: i64,
    pub error_output_type: Option<&'a str>,
    pub partition_keys: &'a [(String, String)],
    pub random: &'a (dyn Fn() -> String + Sync),
}

impl PrefixTemplate {
    /// Parses `prefix`; `error_prefix` allows `!{firehose:error-output-type}`.
    pub fn parse(prefix: &str, error_prefix: bool) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = prefix;
        while let Some(at) = rest.find("!{") {
            if at > 0 {
                pieces.push(Piece::Text(rest[..at].to_string()));
            }
            let end = rest[at..]
                .find('}')
                .ok_or_else(|| format!("The expression at '{}' has no closing '}}'.", &rest[at..]))?;
            let expr = &rest[at + 2..at + end];
            pieces.push(parse_expression(expr, error_prefix)?);
            rest = &rest[at + end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(PrefixTemplate { pieces })
    }

    pub fn has_expressions(&self) -> bool {
        self.pieces.iter().any(|p| !matches!(p, Piece::Text(_)))
    }

    fn has_timestamp(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Timestamp(_)))
    }

    pub fn has_error_output_type(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::ErrorOutputType))
    }

    pub fn partition_keys(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::PartitionKey(k) => Some(k.as_str()),
            _ => None,
        })
    }

    fn render(&self, ctx: &KeyContext<'_>) -> Result<String, String> {
        let at = time_of(ctx.arrival_ms);
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Timestamp(fields) => format_time(&mut out, fields, &at),
                Piece::RandomString => out.extend((ctx.random)().chars().filter(char::is_ascii_alphanumeric).take(11)),
                Piece::ErrorOutputType => out.push_str(ctx.error_output_type.unwrap_or("")),
                Piece::PartitionKey(k) => {
                    let v = ctx
                        .partition_keys
                        .iter()
                        .find(|(name, _)| name == k)
                        .map(|(_, v)| v.as_str())
                        .ok_or_else(|| format!("the record has no partition key '{k}'"))?;
                    out.push_str(v);
                }
            }
        }
        Ok(out)
    }
}

fn parse_expression(expr: &str, error_prefix: bool) -> Result<Piece, String> {
    let (namespace, arg) =
        expr.split_once(':').ok_or_else(|| format!("'!{{{expr}}}' is not a namespace:value expression."))?;
    match namespace.trim() {
        "timestamp" => Ok(Piece::Timestamp(parse_time_pattern(arg)?)),
        "firehose" => match arg.trim() {
            "random-string" => Ok(Piece::RandomString),
            "error-output-type" if error_prefix => Ok(Piece::ErrorOutputType),
            "error-output-type" => Err("!{firehose:error-output-type} may appear only in ErrorOutputPrefix.".into()),
            other => Err(format!("'{other}' is not a firehose expression (random-string, error-output-type).")),
        },
        "partitionKeyFromQuery" | "partitionKeyFromLambda" if error_prefix => {
            Err("ErrorOutputPrefix cannot contain partitionKeyFrom expressions.".into())
        }
        "partitionKeyFromQuery" => {
            let key = arg.trim();
            if key.is_empty() {
                return Err("!{partitionKeyFromQuery:} needs a key name.".into());
            }
            Ok(Piece::PartitionKey(key.to_string()))
        }
        other => Err(format!("'{other}' is not an expression namespace (timestamp, firehose, partitionKeyFromQuery).")),
    }
}

fn parse_time_pattern(pattern: &str) -> Result<Vec<TimeField>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let end =
                chars[i + 1..].iter().position(|&x| x == '\'').ok_or("an unterminated quote in a timestamp pattern")?;
            fields.push(TimeField::Literal(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let field = match c {
            'y' | 'u' => TimeField::Year(run),
            'M' => TimeField::Month(run),
            'd' => TimeField::Day(run),
            'H' => TimeField::Hour(run),
            'm' => TimeField::Minute(run),
            's' => TimeField::Second(run),
            c if c.is_ascii_alphabetic() => {
                return Err(format!("'{c}' in the timestamp pattern '{pattern}' is not supported (y, M, d, H, m, s)."))
            }
            _ => TimeField::Literal(chars[i..i + run].iter().collect()),
        };
        fields.push(field);
        i += run;
    }
    Ok(fields)
}

fn time_of(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn format_time(out: &mut String, fields: &[TimeField], t: &DateTime<Utc>) {
    use std::fmt::Write;
    for f in fields {
        let _ = match f {
            TimeField::Year(2) => write!(out, "{:02}", t.year().rem_euclid(100)),
            TimeField::Year(n) => write!(out, "{:0width$}", t.year(), width = *n),
            TimeField::Month(n) => write!(out, "{:0width$}", t.month(), width = *n),
            TimeField::Day(n) => write!(out, "{:0width$}", t.day(), width = *n),
            TimeField::Hour(n) => write!(out, "{:0width$}", t.hour(), width = *n),
            TimeField::Minute(n) => write!(out, "{:0width$}", t.minute(), width = *n),
            TimeField::Second(n) => write!(out, "{:0width$}", t.second(), width = *n),
            TimeField::Literal(s) => write!(out, "{s}"),
        };
    }
}

/// How a stream names its objects.
#[derive(Debug, Clone)]
pub struct KeyNaming {
    pub stream_name: String,
    pub version: u64,
    prefix: PrefixTemplate,
    error_prefix: PrefixTemplate,
    extension: String,
}

impl KeyNaming {
    /// `prefix` and `error_prefix` as the destination gives them; `extension` is the
    /// `FileExtension` if set, else the compression's.
    pub fn new(
        stream_name: &str,
        version: u64,
        prefix: Option<&str>,
        error_prefix: Option<&str>,
        extension: &str,
    ) -> Result<Self, String> {
        let prefix = PrefixTemplate::parse(prefix.unwrap_or(""), false)?;
        let error_prefix = match error_prefix.filter(|p| !p.is_empty()) {
            Some(p) => PrefixTemplate::parse(p, true)?,
            None => PrefixTemplate::parse("!{firehose:error-output-type}/", true)?,
        };
        if prefix.has_expressions() && error_prefix == PrefixTemplate::parse("!{firehose:error-output-type}/", true)? {
            // AWS: a prefix with expressions needs an ErrorOutputPrefix of its own.
            return Err("ErrorOutputPrefix must be specified when Prefix contains expressions.".into());
        }
        Ok(KeyNaming { stream_name: stream_name.into(), version, prefix, error_prefix, extension: extension.into() })
    }

    pub fn partition_keys(&self) -> Vec<String> {
        self.prefix.partition_keys().map(str::to_string).collect()
    }

    /// The key of an object of delivered data.
    pub fn data_key(&self, ctx: &KeyContext<'_>) -> Result<String, String> {
        self.key(&self.prefix, ctx)
    }

    /// The key of an object of data that failed (`error_output_type` such as
    /// `processing-failed` or `http-endpoint-failed`).
    pub fn error_key(&self, ctx: &KeyContext<'_>) -> Result<String, String> {
        self.key(&self.error_prefix, ctx)
    }

    fn key(&self, template: &PrefixTemplate, ctx: &KeyContext<'_>) -> Result<String, String> {
        let mut key = template.render(ctx)?;
        let at = time_of(ctx.arrival_ms);
        if !template.has_timestamp() {
            key.push_str(&at.format("%Y/%m/%d/%H/").to_string());
        }
        key.push_str(&format!(
            "{}-{}-{}-{}{}",
            self.stream_name,
            self.version,
            at.format("%Y-%m-%d-%H-%M-%S"),
            (ctx.random)(),
            self.extension
        ));
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-30 08:05:09.250 UTC
    const AT: i64 = 1_796_025_909_250;

    fn ctx<'a>(partition_keys: &'a [(String, String)], random: &'a (dyn Fn() -> String + Sync)) -> KeyContext<'a> {
        KeyContext { arrival_ms: AT, error_output_type: Some("processing-failed"), partition_keys, random }
    }

    #[test]
    fn default_keys_carry_the_hour_and_the_stream() {
        let r = || "3f1c2e9a-0000-4000-8000-000000000001".to_string();
        let n = KeyNaming::new("events", 1, None, None, ".gz").unwrap();
        assert_eq!(
            n.data_key(&ctx(&[], &r)).unwrap(),
            "2026/11/30/08/events-1-2026-11-30-08-05-09-3f1c2e9a-0000-4000-8000-000000000001.gz"
        );
        let n = KeyNaming::new("events", 3, Some("cams/"), None, "").unwrap();
        assert!(n.data_key(&ctx(&[], &r)).unwrap().starts_with("cams/2026/11/30/08/events-3-"));
        assert!(n.error_key(&ctx(&[], &r)).unwrap().starts_with("processing-failed/2026/11/30/08/events-3-"));
    }

    #[test]
    fn expressions_replace_the_time_prefix() {
        let r = || "abcdefghijklmnop".to_string();
        let n = KeyNaming::new(
            "s",
            1,
            Some("y=!{timestamp:yyyy}/m=!{timestamp:MM}/d=!{timestamp:dd}/!{firehose:random-string}/"),
            Some("errors/!{firehose:error-output-type}/!{timestamp:yyyy-MM-dd'T'HH}/"),
            "",
        )
        .unwrap();
        let key = n.data_key(&ctx(&[], &r)).unwrap();
        assert!(key.starts_with("y=2026/m=11/d=30/abcdefghijk/s-1-2026-11-30-08-05-09-"), "{key}");
        let key = n.error_key(&ctx(&[], &r)).unwrap();
        assert!(key.starts_with("errors/processing-failed/2026-11-30T08/s-1-"), "{key}");
    }

    #[test]
    fn partition_keys_fill_their_expressions() {
        let r = || "u".to_string();
        let n = KeyNaming::new("s", 1, Some("cam=!{partitionKeyFromQuery:camera}/"), Some("err/"), "").unwrap();
        assert_eq!(n.partition_keys(), vec!["camera".to_string()]);
        let keys = vec![("camera".to_string(), "door".to_string())];
        assert!(n.data_key(&ctx(&keys, &r)).unwrap().starts_with("cam=door/2026/11/30/08/"));
        assert!(n.data_key(&ctx(&[], &r)).is_err());
    }

    #[test]
    fn bad_expressions_are_refused() {
        assert!(KeyNaming::new("s", 1, Some("!{timestamp:yyyy}"), None, "").is_err(), "needs an error prefix");
        assert!(KeyNaming::new("s", 1, Some("!{firehose:error-output-type}"), Some("e/"), "").is_err());
        assert!(KeyNaming::new("s", 1, Some("!{nope:x}"), Some("e/"), "").is_err());
        assert!(KeyNaming::new("s", 1, Some("!{timestamp:yyyy"), Some("e/"), "").is_err());
        assert!(KeyNaming::new("s", 1, Some("!{timestamp:EEE}"), Some("e/"), "").is_err());
        assert!(KeyNaming::new("s", 1, Some("a/"), Some("!{partitionKeyFromQuery:x}/"), "").is_err());
    }
}
