//! Object compression as Firehose writes it (pure): GZIP (one gzip member), Snappy
//! (the Snappy framing format) and HADOOP_SNAPPY (Hadoop's block format: a big-endian
//! u32 of the block's uncompressed length, then a u32 length and the raw Snappy bytes
//! of each chunk). ZIP is not written yet; the settings refuse it.

use std::io::Write;

use super::settings::Compression;

/// Hadoop's default block size for its Snappy codec.
const HADOOP_BLOCK: usize = 256 * 1024;

/// `data` in `format` (uncompressed: `data` itself, not copied).
pub fn compress(format: Compression, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    if format == Compression::Uncompressed {
        return Ok(data);
    }
    let data = &data[..];
    match format {
        Compression::Uncompressed => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
            e.write_all(data)?;
            e.finish()
        }
        Compression::Snappy => {
            let mut e = snap::write::FrameEncoder::new(Vec::with_capacity(data.len() / 2));
            e.write_all(data)?;
            e.into_inner().map_err(|e| std::io::Error::other(e.to_string()))
        }
        Compression::HadoopSnappy => {
            let mut out = Vec::with_capacity(data.len() / 2 + 16);
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(HADOOP_BLOCK) {
                let compressed = encoder.compress_vec(block).map_err(|e| std::io::Error::other(e.to_string()))?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        Compression::Zip => Err(std::io::Error::other("ZIP compression is not supported yet")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn sample() -> Vec<u8> {
        (0..600_000u32).flat_map(|i| format!("{{\"frame\":{i}}}\n").into_bytes()).take(600_000).collect()
    }

    #[test]
    fn gzip_and_snappy_round_trip() {
        let data = sample();
        let gz = compress(Compression::Gzip, data.clone()).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let sn = compress(Compression::Snappy, data.clone()).unwrap();
        let mut back = Vec::new();
        snap::read::FrameDecoder::new(&sn[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(compress(Compression::Uncompressed, data.clone()).unwrap(), data);
    }

    #[test]
    fn hadoop_snappy_is_length_prefixed_blocks() {
        let data = sample();
        let out = compress(Compression::HadoopSnappy, data.clone()).unwrap();
        let (mut at, mut back) = (0, Vec::new());
        while at < out.len() {
            let raw = u32::from_be_bytes(out[at..at + 4].try_into().unwrap()) as usize;
            let len = u32::from_be_bytes(out[at + 4..at + 8].try_into().unwrap()) as usize;
            let block = snap::raw::Decoder::new().decompress_vec(&out[at + 8..at + 8 + len]).unwrap();
            assert_eq!(block.len(), raw);
            back.extend(block);
            at += 8 + len;
        }
        assert_eq!(back, data);
    }
}
