//! Object compression as Firehose writes it (pure): GZIP (one gzip member), ZIP (an
//! archive of one deflated entry), Snappy (the Snappy framing format) and HADOOP_SNAPPY
//! (Hadoop's block format: a big-endian u32 of the block's uncompressed length, then a
//! u32 length and the raw Snappy bytes of each chunk), and ZSTD (one Zstandard frame,
//! what Kinesis channels write).

use std::io::Write;

use super::settings::Compression;

/// Hadoop's default block size for its Snappy codec.
const HADOOP_BLOCK: usize = 256 * 1024;

/// `data` in `format` (uncompressed: `data` itself, not copied).
pub fn compress(format: Compression, data: Vec<u8>) -> std::io::Result<Vec<u8>> {
    compress_named(format, data, "data")
}

/// As [`compress`]; `entry` names the one file of a ZIP archive.
pub fn compress_named(format: Compression, data: Vec<u8>, entry: &str) -> std::io::Result<Vec<u8>> {
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
        Compression::Zip => zip_one(entry, data),
        Compression::Zstd => zstd::bulk::compress(data, ZSTD_LEVEL),
    }
}

/// zstd's default level: its own balance of speed and size.
const ZSTD_LEVEL: i32 = 3;

/// A ZIP archive (APPNOTE 6.3.x, sections 4.3.7, 4.3.12, 4.3.16) of one deflated file:
/// local header, data, central directory entry, end of central directory. Objects stay
/// far below ZIP's 4 GiB limits (a buffer is at most 128 MiB).
fn zip_one(name: &str, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut deflater =
        flate2::write::DeflateEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
    deflater.write_all(data)?;
    let packed = deflater.finish()?;
    let too_big = || std::io::Error::other("an object over 4 GiB cannot be a plain ZIP");
    let (crc, packed_len, plain_len) = (
        crc32fast::hash(data),
        u32::try_from(packed.len()).map_err(|_| too_big())?,
        u32::try_from(data.len()).map_err(|_| too_big())?,
    );
    let name = name.as_bytes();
    let name_len = u16::try_from(name.len()).map_err(|_| std::io::Error::other("entry name too long"))?;
    // 1980-01-01 00:00: the archive's time is in the object's key already.
    let (dos_time, dos_date): (u16, u16) = (0, (1 << 5) | 1);
    let mut out = Vec::with_capacity(packed.len() + 2 * name.len() + 100);
    let common = |out: &mut Vec<u8>| {
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0 (deflate)
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&8u16.to_le_bytes()); // method: deflate
        out.extend_from_slice(&dos_time.to_le_bytes());
        out.extend_from_slice(&dos_date.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&packed_len.to_le_bytes());
        out.extend_from_slice(&plain_len.to_le_bytes());
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra field length
    };
    out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    common(&mut out);
    out.extend_from_slice(name);
    out.extend_from_slice(&packed);
    let central_at = out.len();
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    out.extend_from_slice(&20u16.to_le_bytes()); // version made by
    common(&mut out);
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out.extend_from_slice(&0u16.to_le_bytes()); // disk number
    out.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    out.extend_from_slice(&0u32.to_le_bytes()); // the local header's offset
    out.extend_from_slice(name);
    let central_len = (out.len() - central_at) as u32;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]); // this disk, the directory's disk
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&central_len.to_le_bytes());
    out.extend_from_slice(&u32::try_from(central_at).map_err(|_| too_big())?.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn sample() -> Vec<u8> {
        (0..600_000u32).flat_map(|i| format!("{{\"frame\":{i}}}\n").into_bytes()).take(600_000).collect()
    }

    #[test]
    fn gzip_snappy_and_zstd_round_trip() {
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
        let zst = compress(Compression::Zstd, data.clone()).unwrap();
        assert_eq!(&zst[..4], &[0x28, 0xb5, 0x2f, 0xfd], "a Zstandard frame");
        assert_eq!(zstd::bulk::decompress(&zst, data.len()).unwrap(), data);
    }

    #[test]
    fn zip_is_one_deflated_entry() {
        let data = sample();
        let z = compress_named(Compression::Zip, data.clone(), "events-1").unwrap();
        assert_eq!(&z[..4], b"PK\x03\x04");
        let packed_len = u32::from_le_bytes(z[18..22].try_into().unwrap()) as usize;
        let name_len = u16::from_le_bytes(z[26..28].try_into().unwrap()) as usize;
        assert_eq!(&z[30..30 + name_len], b"events-1");
        let at = 30 + name_len;
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&z[at..at + packed_len]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(u32::from_le_bytes(z[14..18].try_into().unwrap()), crc32fast::hash(&data));
        let eocd = z.len() - 22;
        assert_eq!(&z[eocd..eocd + 4], b"PK\x05\x06");
        let central_at = u32::from_le_bytes(z[eocd + 16..eocd + 20].try_into().unwrap()) as usize;
        assert_eq!(&z[central_at..central_at + 4], b"PK\x01\x02");
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
