//! Dynamic partitioning's MetadataExtraction: a JQ query (run by `jaq`, a JQ
//! implementation in Rust) over each JSON record, whose output object's members are the
//! record's partition keys (`!{partitionKeyFromQuery:KEY}` in the prefix). Pure: bytes
//! in, keys out.

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
use jaq_json::{read, Val};

/// A compiled MetadataExtractionQuery.
pub struct PartitionQuery {
    filter: jaq_core::compile::Filter<jaq_core::Native<data::JustLut<Val>>>,
}

impl PartitionQuery {
    pub fn compile(code: &str) -> Result<Self, String> {
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
    pub fn keys(&self, record: &[u8]) -> Result<Vec<(String, String)>, String> {
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
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&first.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

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
