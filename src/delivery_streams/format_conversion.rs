//! Record format conversion: JSON records to one Parquet file per object (pure: bytes
//! in, bytes out), by the `arrow-json` decoder and the `parquet` writer.
//!
//! AWS reads the schema from a Glue table (`SchemaConfiguration.DatabaseName` and
//! `TableName`); Kinescope reads it from its configuration file,
//! `[tables.DATABASE.TABLE] columns = [{ name = "camera", type = "string" }, …]`, with
//! the Hive type names Glue uses: string, varchar, char, boolean, tinyint, smallint, int,
//! bigint, float, double, date, timestamp. Column names match JSON member names exactly;
//! members not in the schema are ignored (OpenXJsonSerDe's default), missing ones are
//! null. A record that does not fit the schema fails alone and goes to the error prefix
//! (`format-conversion-failed`).

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel};
use parquet::file::properties::WriterProperties;

/// One column of a table, as the configuration gives it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A table's columns as an Arrow schema (all nullable).
pub fn schema(columns: &[Column]) -> Result<Arc<Schema>, String> {
    if columns.is_empty() {
        return Err("a table needs at least one column".into());
    }
    let fields = columns
        .iter()
        .map(|c| {
            let t = c.kind.to_ascii_lowercase();
            let base = t.split('(').next().unwrap_or(&t).trim();
            let data_type = match base {
                "string" | "varchar" | "char" => DataType::Utf8,
                "boolean" => DataType::Boolean,
                "tinyint" => DataType::Int8,
                "smallint" => DataType::Int16,
                "int" | "integer" => DataType::Int32,
                "bigint" => DataType::Int64,
                "float" => DataType::Float32,
                "double" => DataType::Float64,
                "date" => DataType::Date32,
                "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, None),
                other => {
                    return Err(format!("column '{}' has type '{other}', which Kinescope does not convert yet", c.name))
                }
            };
            Ok(Field::new(&c.name, data_type, true))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// `ParquetSerDe.Compression`.
pub fn parquet_compression(name: Option<&str>) -> Result<Compression, String> {
    match name.unwrap_or("SNAPPY") {
        "SNAPPY" => Ok(Compression::SNAPPY),
        "GZIP" => Ok(Compression::GZIP(GzipLevel::default())),
        "UNCOMPRESSED" => Ok(Compression::UNCOMPRESSED),
        other => Err(format!("ParquetSerDe Compression '{other}' is not UNCOMPRESSED, GZIP or SNAPPY")),
    }
}

/// The records that fit the schema as one Parquet file, and the indexes of those that
/// do not (with why). `None` for the file when no record fits.
pub type Converted = (Option<Vec<u8>>, Vec<(usize, String)>);

pub fn to_parquet(schema: &Arc<Schema>, compression: Compression, records: &[Vec<u8>]) -> Result<Converted, String> {
    let decode = |rows: &[&[u8]]| -> Result<Option<arrow_array::RecordBatch>, String> {
        let mut d = arrow_json::ReaderBuilder::new(schema.clone())
            .with_strict_mode(false)
            .with_batch_size(rows.len().max(1))
            .build_decoder()
            .map_err(|e| e.to_string())?;
        for r in rows {
            // One value per record: a record that is not exactly one JSON object fails.
            let v: serde_json::Value = serde_json::from_slice(r).map_err(|e| format!("not JSON: {e}"))?;
            if !v.is_object() {
                return Err("not a JSON object".into());
            }
            d.decode(r).map_err(|e| e.to_string())?;
            d.decode(b"\n").map_err(|e| e.to_string())?;
        }
        d.flush().map_err(|e| e.to_string())
    };
    let all: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let (batch, failed) = match decode(&all) {
        Ok(batch) => (batch, Vec::new()),
        Err(_) => {
            // Find the records that do not fit, one by one; convert the rest together.
            let mut good = Vec::new();
            let mut failed = Vec::new();
            for (i, r) in records.iter().enumerate() {
                match decode(&[r.as_slice()]) {
                    Ok(_) => good.push(r.as_slice()),
                    Err(e) => failed.push((i, e)),
                }
            }
            (if good.is_empty() { None } else { decode(&good)? }, failed)
        }
    };
    let Some(batch) = batch else { return Ok((None, failed)) };
    let props = WriterProperties::builder().set_compression(compression).build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema.clone(), Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok((Some(out), failed))
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    fn columns() -> Vec<Column> {
        [("camera", "string"), ("score", "double"), ("n", "bigint"), ("at", "timestamp")]
            .iter()
            .map(|(n, t)| Column { name: n.to_string(), kind: t.to_string() })
            .collect()
    }

    #[test]
    fn json_records_become_one_parquet_file() {
        let schema = schema(&columns()).unwrap();
        let records = vec![
            br#"{"camera":"door","score":0.9,"n":1,"at":1796025909000,"extra":[1,2]}"#.to_vec(),
            br#"{"camera":"yard","n":2}"#.to_vec(),
            br#"{"camera":"gate","n":"three"}"#.to_vec(),
            b"not json".to_vec(),
        ];
        let (file, failed) = to_parquet(&schema, Compression::SNAPPY, &records).unwrap();
        assert_eq!(failed.iter().map(|(i, _)| *i).collect::<Vec<_>>(), vec![2, 3]);
        let reader = SerializedFileReader::new(bytes::Bytes::from(file.unwrap())).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
        let names: Vec<String> =
            reader.metadata().file_metadata().schema_descr().columns().iter().map(|c| c.name().to_string()).collect();
        assert_eq!(names, vec!["camera", "score", "n", "at"]);
    }

    #[test]
    fn unknown_types_are_refused() {
        assert!(schema(&[Column { name: "x".into(), kind: "map<string,int>".into() }]).is_err());
        assert!(schema(&[]).is_err());
        assert!(parquet_compression(Some("LZO")).is_err());
    }
}
