//! Dynamic partitioning's MetadataExtraction: a JQ query (run by `jaq`, a JQ
//! implementation in Rust) over each JSON record, whose output object's members are the
//! record's partition keys (`!{partitionKeyFromQuery:KEY}` in the prefix). Pure: bytes
//! in, keys out. Evaluation is not bounded here (jaq has no step budget and recurses on
//! the stack): the server runs it only in a worker process, [`super::query_sandbox`].

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::{read, Val};

/// One record's partition keys: (name, value) in the query's order.
pub type PartitionKeys = Vec<(String, String)>;

/// How deeply a record's JSON may nest before it is refused unparsed (jaq's parser
/// recurses once per level).
pub const MAX_RECORD_DEPTH: usize = 64;
/// The longest query text accepted (AWS's ProcessorParameterValue limit).
pub const MAX_QUERY_CHARS: usize = 5_120;
/// The largest query output read back as partition keys.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// A compiled MetadataExtractionQuery.
pub struct PartitionQuery {
    filter: jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>,
}

impl PartitionQuery {
    pub fn compile(code: &str) -> Result<Self, String> {
        if code.chars().count() > MAX_QUERY_CHARS {
            return Err(format!("MetadataExtractionQuery is longer than {MAX_QUERY_CHARS} characters."));
        }
        if nesting_exceeds(code.as_bytes(), MAX_RECORD_DEPTH) {
            return Err(format!("MetadataExtractionQuery nests deeper than {MAX_RECORD_DEPTH} levels."));
        }
        let defs = jaq_core::defs().chain(jaq_std::defs()).chain(jaq_json::defs());
        let funs = jaq_core::funs().chain(jaq_std::funs()).chain(jaq_json::funs());
        let arena = Arena::default();
        let modules = Loader::new(defs)
            .load(&arena, File { code, path: () })
            .map_err(|_| format!("MetadataExtractionQuery '{code}' is not a valid JQ expression."))?;
        let filter = Compiler::default().with_funs(funs).compile(modules).map_err(|_| {
            format!("MetadataExtractionQuery '{code}' does not compile (an unknown function or variable?).")
        })?;
        Ok(PartitionQuery { filter })
    }

    /// The partition keys of one record: the query's single output, an object whose
    /// members are strings, numbers or booleans.
    pub fn keys(&self, record: &[u8]) -> Result<PartitionKeys, String> {
        if nesting_exceeds(record, MAX_RECORD_DEPTH) {
            return Err(format!("the record nests deeper than {MAX_RECORD_DEPTH} levels"));
        }
        let input = read::parse_single(record).map_err(|_| "the record is not JSON".to_string())?;
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        let mut outputs = self.filter.id.run((ctx, input)).map(unwrap_valr);
        let first = match outputs.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Err(format!("the query failed on the record: {e:?}")),
            None => return Err("the query gave no output for the record".into()),
        };
        if outputs.next().is_some() {
            return Err("the query gave more than one output for the record".into());
        }
        let text = first.to_string();
        if text.len() > MAX_OUTPUT_BYTES {
            return Err(format!("the query's output is over {MAX_OUTPUT_BYTES} bytes"));
        }
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|_| "the query's output is not an object of partition keys".to_string())?;
        object
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k, s)),
                serde_json::Value::Number(n) => Ok((k, n.to_string())),
                serde_json::Value::Bool(b) => Ok((k, b.to_string())),
                other => Err(format!("partition key '{k}' is {other}, not a string or number")),
            })
            .collect()
    }
}

/// Whether `text` opens more than `max` brackets or braces (outside JSON strings)
/// without closing them: a linear scan, so a record is judged before any recursive
/// parser sees it.
pub fn nesting_exceeds(text: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' | b'(' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a":[1,{"b":"[[[[[[[["}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(!nesting_exceeds(br#"{"a":"\"[[[[[["}"#, 1));
        assert!(nesting_exceeds(&vec![b'['; 20_000], MAX_RECORD_DEPTH));
        let q = PartitionQuery::compile("{c: .c}").unwrap();
        let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
        assert!(q.keys(deep.as_bytes()).unwrap_err().contains("nests deeper"));
        assert!(PartitionQuery::compile(&"(".repeat(6000)).is_err());
    }

    #[test]
    fn a_query_gives_a_records_partition_keys() {
        let q = PartitionQuery::compile(r#"{camera: .camera, day: (.ts | strftime("%Y-%m-%d")), n: .n}"#).unwrap();
        let keys = q.keys(br#"{"camera":"door","ts":1796025909,"n":3}"#).unwrap();
        assert_eq!(
            keys,
            vec![("camera".into(), "door".into()), ("day".into(), "2026-11-30".into()), ("n".into(), "3".into())]
        );
        assert!(q.keys(b"not json").is_err());
        assert!(PartitionQuery::compile("{camera: .camera").is_err());
        assert!(PartitionQuery::compile("{x: nosuchfn}").is_err());
        let nested = PartitionQuery::compile("{c: .camera}").unwrap();
        assert!(nested.keys(br#"{"camera":{"id":1}}"#).is_err());
        let many = PartitionQuery::compile(".[]").unwrap();
        assert!(many.keys(br#"[{"a":"1"},{"a":"2"}]"#).is_err());
    }
}
