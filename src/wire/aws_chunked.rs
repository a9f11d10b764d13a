//! `aws-chunked`: the body encoding of S3's streaming uploads, the ones an SDK sends
//! when it does not hash the whole payload before sending it. The request's
//! `x-amz-content-sha256` names the variant:
//!
//! - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: `SIZE;chunk-signature=SIG\r\nDATA\r\n`, each
//!   chunk signed, the signatures chained from the request's own (the seed), ending
//!   with a signed empty chunk and `\r\n`;
//! - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: the same, then trailing headers (a
//!   checksum) and `x-amz-trailer-signature`, chained on from the last chunk's;
//! - `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: `SIZE\r\nDATA\r\n` chunks unsigned, then the
//!   trailing headers (what the JavaScript SDK v3 sends for a stream body).
//!
//! [`Decoder`] is an incremental, pure decoder: fed the body as it arrives, it says
//! which byte ranges of each piece are payload (no copy), checks every chunk signature
//! it can (given a [`ChunkSigner`]) and returns the trailers at the end. It holds at
//! most one header or trailer line, so a hostile body costs bounded memory.

use std::ops::Range;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::sigv4::{constant_time_eq, sha256_hex};

/// The longest chunk header line (`SIZE;chunk-signature=…`) taken.
pub const MAX_HEADER_LINE: usize = 1024;
/// The smallest signed chunk but the last (S3's rule): with the header line bounded,
/// framing can be at most a small fraction of a body.
pub const MIN_SIGNED_CHUNK: u64 = 8192;
/// The longest trailing header line taken.
pub const MAX_TRAILER_LINE: usize = 1024;
/// The most trailing headers taken.
pub const MAX_TRAILERS: usize = 8;

/// The SHA-256 of nothing, which every chunk's string to sign carries.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The variant an `x-amz-content-sha256` value names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`
    Signed,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`
    SignedTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`
    UnsignedTrailer,
}

impl Mode {
    pub fn of(content_sha256: &str) -> Option<Mode> {
        match content_sha256 {
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => Some(Mode::Signed),
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => Some(Mode::SignedTrailer),
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER" => Some(Mode::UnsignedTrailer),
            _ => None,
        }
    }

    fn signed(self) -> bool {
        matches!(self, Mode::Signed | Mode::SignedTrailer)
    }

    fn trailer(self) -> bool {
        matches!(self, Mode::SignedTrailer | Mode::UnsignedTrailer)
    }
}

/// What signs the chunks of one request: its SigV4 signing key, date and scope, and the
/// last signature of the chain (the request's own to begin with).
#[derive(Clone)]
pub struct ChunkSigner {
    key: [u8; 32],
    amz_date: String,
    scope: String,
    previous: String,
}

impl std::fmt::Debug for ChunkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkSigner").field("scope", &self.scope).finish_non_exhaustive()
    }
}

impl ChunkSigner {
    /// `key` is the request's SigV4 signing key, `seed` the signature its headers carry.
    pub fn new(key: [u8; 32], amz_date: &str, scope: &str, seed: &str) -> Self {
        ChunkSigner { key, amz_date: amz_date.into(), scope: scope.into(), previous: seed.into() }
    }

    fn sign(&self, algorithm: &str, tail: &str) -> String {
        let to_sign = format!("{algorithm}\n{}\n{}\n{}\n{tail}", self.amz_date, self.scope, self.previous);
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(to_sign.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The signature of a chunk whose data hashes to `data_sha256` (hex).
    pub fn chunk_signature(&self, data_sha256: &str) -> String {
        self.sign("AWS4-HMAC-SHA256-PAYLOAD", &format!("{EMPTY_SHA256}\n{data_sha256}"))
    }

    /// The signature of the trailing headers, written `name:value\n` each.
    pub fn trailer_signature(&self, canonical_trailers: &str) -> String {
        self.sign("AWS4-HMAC-SHA256-TRAILER", &sha256_hex(canonical_trailers.as_bytes()))
    }

    /// Checks `claimed` against `expected` and moves the chain on.
    fn accept(&mut self, expected: String, claimed: &str) -> Result<(), ChunkedError> {
        if !constant_time_eq(expected.as_bytes(), claimed.as_bytes()) {
            return Err(ChunkedError::SignatureMismatch);
        }
        self.previous = expected;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkedError {
    #[error("malformed aws-chunked body: {0}")]
    Malformed(String),
    #[error("a chunk signature does not match the one computed from the request's signing key")]
    SignatureMismatch,
    #[error("Only the last chunk is allowed to have a size less than {MIN_SIGNED_CHUNK} bytes")]
    ChunkTooSmall,
    #[error("the chunks hold {got} bytes or more, x-amz-decoded-content-length says {declared}")]
    TooLong { got: u64, declared: u64 },
    #[error("the body ended after {got} of the {declared} bytes x-amz-decoded-content-length declares")]
    Incomplete { got: u64, declared: u64 },
}

fn malformed(why: impl Into<String>) -> ChunkedError {
    ChunkedError::Malformed(why.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a `SIZE[;…]` line.
    Header,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data (or the final chunk without trailers): `\r\n` expected, this
    /// many of its bytes seen; `last` after the final chunk.
    DataEnd {
        seen: u8,
        last: bool,
    },
    /// Reading trailing header lines up to an empty one.
    Trailer,
    Done,
}

/// An incremental aws-chunked decoder (see the module docs).
pub struct Decoder {
    mode: Mode,
    signer: Option<ChunkSigner>,
    state: State,
    line: Vec<u8>,
    chunk_hash: Option<Sha256>,
    chunk_signature: String,
    decoded: u64,
    declared: u64,
    /// The previous data chunk was under [`MIN_SIGNED_CHUNK`] (only the last may be).
    short_chunk_seen: bool,
    trailers: Vec<(String, String)>,
    trailer_signature: Option<String>,
}

impl Decoder {
    /// A decoder of a `mode` body of `declared` payload bytes. With a `signer`, every
    /// chunk signature (and the trailer's) is checked; without one (a server that takes
    /// unsigned requests) they are parsed and not checked.
    pub fn new(mode: Mode, signer: Option<ChunkSigner>, declared: u64) -> Self {
        Decoder {
            mode,
            signer: signer.filter(|_| mode.signed()),
            state: State::Header,
            line: Vec::new(),
            chunk_hash: None,
            chunk_signature: String::new(),
            decoded: 0,
            declared,
            short_chunk_seen: false,
            trailers: Vec::new(),
            trailer_signature: None,
        }
    }

    /// Payload bytes decoded so far.
    pub fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Takes the next piece of the body; returns the ranges of `input` that are payload.
    pub fn feed(&mut self, input: &[u8]) -> Result<Vec<Range<usize>>, ChunkedError> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < input.len() {
            match self.state {
                State::Header | State::Trailer => {
                    let limit = if self.state == State::Header { MAX_HEADER_LINE } else { MAX_TRAILER_LINE };
                    let rest = &input[at..];
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            self.take_line_bytes(&rest[..=i], limit)?;
                            at += i + 1;
                            let line = std::mem::take(&mut self.line);
                            let line =
                                line.strip_suffix(b"\r\n").ok_or_else(|| malformed("a line not ended by CRLF"))?;
                            if self.state == State::Header {
                                self.header(line)?;
                            } else {
                                self.trailer(line)?;
                            }
                        }
                        None => {
                            self.take_line_bytes(rest, limit)?;
                            at = input.len();
                        }
                    }
                }
                State::Data(left) => {
                    let n = (input.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
                    let piece = at..at + n;
                    if let Some(h) = self.chunk_hash.as_mut() {
                        h.update(&input[piece.clone()]);
                    }
                    out.push(piece);
                    at += n;
                    let left = left - n as u64;
                    if left == 0 {
                        self.end_chunk()?;
                        self.state = State::DataEnd { seen: 0, last: false };
                    } else {
                        self.state = State::Data(left);
                    }
                }
                State::DataEnd { seen, last } => {
                    let want = b"\r\n"[seen as usize];
                    if input[at] != want {
                        return Err(malformed("chunk data not followed by CRLF"));
                    }
                    at += 1;
                    self.state = match (seen, last) {
                        (0, _) => State::DataEnd { seen: 1, last },
                        (_, true) => State::Done,
                        (_, false) => State::Header,
                    };
                }
                State::Done => return Err(malformed("bytes after the end of the body")),
            }
        }
        Ok(out)
    }

    /// The body ended: checks it was whole and returns its trailing headers (names in
    /// lower case).
    pub fn finish(self) -> Result<Vec<(String, String)>, ChunkedError> {
        if self.state != State::Done {
            if self.decoded < self.declared {
                return Err(ChunkedError::Incomplete { got: self.decoded, declared: self.declared });
            }
            return Err(malformed("the body ended before its final chunk"));
        }
        Ok(self.trailers)
    }

    fn take_line_bytes(&mut self, bytes: &[u8], limit: usize) -> Result<(), ChunkedError> {
        if self.line.len() + bytes.len() > limit {
            return Err(malformed(format!("a chunk header or trailer line over {limit} bytes")));
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn header(&mut self, line: &[u8]) -> Result<(), ChunkedError> {
        let line = std::str::from_utf8(line).map_err(|_| malformed("a chunk header that is not text"))?;
        let (size, extension) = match line.split_once(';') {
            Some((s, e)) => (s, Some(e)),
            None => (line, None),
        };
        if size.is_empty() || size.len() > 16 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed(format!("chunk size '{}' is not hexadecimal", truncate(size))));
        }
        let size = u64::from_str_radix(size, 16).map_err(|_| malformed("chunk size out of range"))?;
        if !self.mode.signed() && extension.is_some() {
            // Unsigned chunks carry nothing after their size: a header line stays a
            // few bytes, whatever a client pads it with.
            return Err(malformed("an unsigned chunk with a chunk extension"));
        }
        if self.mode.signed() && size > 0 {
            if self.short_chunk_seen {
                return Err(ChunkedError::ChunkTooSmall);
            }
            self.short_chunk_seen = size < MIN_SIGNED_CHUNK;
        }
        if self.mode.signed() {
            let sig = extension
                .and_then(|e| e.strip_prefix("chunk-signature="))
                .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| malformed("a signed chunk without chunk-signature=<64 hex digits>"))?;
            self.chunk_signature = sig.to_ascii_lowercase();
            if self.signer.is_some() {
                self.chunk_hash = Some(Sha256::new());
            }
        }
        let got = self.decoded.saturating_add(size);
        if got > self.declared {
            return Err(ChunkedError::TooLong { got, declared: self.declared });
        }
        self.decoded = got;
        if size > 0 {
            self.state = State::Data(size);
            return Ok(());
        }
        // The final chunk: signed as an empty chunk, then the end or the trailers.
        self.end_chunk()?;
        self.state = if self.mode.trailer() { State::Trailer } else { State::DataEnd { seen: 0, last: true } };
        Ok(())
    }

    fn end_chunk(&mut self) -> Result<(), ChunkedError> {
        if let (Some(signer), Some(hash)) = (self.signer.as_mut(), self.chunk_hash.take()) {
            let expected = signer.chunk_signature(&hex::encode(hash.finalize()));
            signer.accept(expected, &self.chunk_signature)?;
        }
        Ok(())
    }

    fn trailer(&mut self, line: &[u8]) -> Result<(), ChunkedError> {
        if line.is_empty() {
            if self.decoded != self.declared {
                return Err(ChunkedError::Incomplete { got: self.decoded, declared: self.declared });
            }
            self.check_trailer_signature()?;
            self.state = State::Done;
            return Ok(());
        }
        let line = std::str::from_utf8(line).map_err(|_| malformed("a trailing header that is not text"))?;
        let (name, value) = line.split_once(':').ok_or_else(|| malformed("a trailing header without ':'"))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        if name == "x-amz-trailer-signature" {
            if self.trailer_signature.replace(value).is_some() {
                return Err(malformed("two x-amz-trailer-signature headers"));
            }
            return Ok(());
        }
        if self.trailer_signature.is_some() {
            return Err(malformed("a trailing header after x-amz-trailer-signature"));
        }
        if self.trailers.len() == MAX_TRAILERS {
            return Err(malformed(format!("more than {MAX_TRAILERS} trailing headers")));
        }
        self.trailers.push((name, value));
        Ok(())
    }

    fn check_trailer_signature(&mut self) -> Result<(), ChunkedError> {
        if self.mode != Mode::SignedTrailer {
            return Ok(());
        }
        let claimed = self.trailer_signature.take().ok_or_else(|| malformed("no x-amz-trailer-signature"))?;
        if let Some(signer) = self.signer.as_mut() {
            let canonical: String = self.trailers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
            let expected = signer.trailer_signature(&canonical);
            signer.accept(expected, &claimed.to_ascii_lowercase())?;
        }
        Ok(())
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(20) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Writes `payload` aws-chunked in chunks of `chunk` bytes (tests and benchmarks; the
/// server only reads this encoding). With a signer, chunks are signed; `trailers` end
/// the body of the trailer variants.
pub fn encode(
    payload: &[u8],
    chunk: usize,
    mode: Mode,
    mut signer: Option<ChunkSigner>,
    trailers: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload.len() / chunk.max(1) * 90 + 200);
    let mut write_chunk = |data: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(format!("{:x}", data.len()).as_bytes());
        if mode.signed() {
            let sig = match signer.as_mut() {
                Some(s) => {
                    let sig = s.chunk_signature(&sha256_hex(data));
                    s.previous = sig.clone();
                    sig
                }
                None => "0".repeat(64),
            };
            out.extend_from_slice(format!(";chunk-signature={sig}").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        if !data.is_empty() || !mode.trailer() {
            out.extend_from_slice(b"\r\n");
        }
    };
    for piece in payload.chunks(chunk.max(1)) {
        write_chunk(piece, &mut out);
    }
    write_chunk(&[], &mut out);
    if mode.trailer() {
        let canonical: String = trailers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
        for (n, v) in trailers {
            out.extend_from_slice(format!("{n}:{v}\r\n").as_bytes());
        }
        if mode == Mode::SignedTrailer {
            let sig = signer.as_ref().map(|s| s.trailer_signature(&canonical)).unwrap_or_else(|| "0".repeat(64));
            out.extend_from_slice(format!("x-amz-trailer-signature:{sig}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sigv4::signing_key;

    /// The example of S3's documentation ("Signature Calculations for the Authorization
    /// Header: Transferring Payload in Multiple Chunks"): 66,560 bytes of 'a' in chunks
    /// of 64 KiB, the seed signature and each chunk's as published there.
    fn documented_signer() -> ChunkSigner {
        let key = signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1", "s3");
        ChunkSigner::new(
            key,
            "20130524T000000Z",
            "20130524/us-east-1/s3/aws4_request",
            "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        )
    }

    fn decode_all(d: &mut Decoder, body: &[u8], step: usize) -> Result<Vec<u8>, ChunkedError> {
        let mut out = Vec::new();
        for piece in body.chunks(step.max(1)) {
            for r in d.feed(piece)? {
                out.extend_from_slice(&piece[r]);
            }
        }
        Ok(out)
    }

    #[test]
    fn the_documented_example_signs_as_published() {
        let mut s = documented_signer();
        let first = s.chunk_signature(&sha256_hex(&[b'a'; 65536]));
        assert_eq!(first, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648");
        s.previous = first;
        let second = s.chunk_signature(&sha256_hex(&[b'a'; 1024]));
        assert_eq!(second, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497");
        s.previous = second;
        let last = s.chunk_signature(EMPTY_SHA256);
        assert_eq!(last, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9");
    }

    #[test]
    fn signed_bodies_decode_whatever_the_piece_sizes() {
        let payload = vec![b'a'; 66560];
        let body = encode(&payload, 65536, Mode::Signed, Some(documented_signer()), &[]);
        assert!(body.starts_with(
            b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
        ));
        for step in [1, 2, 7, 100, 4096, body.len()] {
            let mut d = Decoder::new(Mode::Signed, Some(documented_signer()), payload.len() as u64);
            assert_eq!(decode_all(&mut d, &body, step).unwrap(), payload, "step {step}");
            assert_eq!(d.finish().unwrap(), vec![]);
        }
    }

    #[test]
    fn a_changed_byte_or_a_reordered_chunk_is_refused() {
        let payload: Vec<u8> = (0..30000u32).map(|i| i as u8).collect();
        let body = encode(&payload, 8192, Mode::Signed, Some(documented_signer()), &[]);
        let mut bad = body.clone();
        let at = bad.len() / 2;
        bad[at] ^= 1;
        let mut d = Decoder::new(Mode::Signed, Some(documented_signer()), payload.len() as u64);
        assert!(decode_all(&mut d, &bad, 1000).is_err());
        // The same chunks signed from another seed.
        let other = ChunkSigner::new([7; 32], "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", "00");
        let forged = encode(&payload, 8192, Mode::Signed, Some(other), &[]);
        let mut d = Decoder::new(Mode::Signed, Some(documented_signer()), payload.len() as u64);
        assert_eq!(decode_all(&mut d, &forged, 1000), Err(ChunkedError::SignatureMismatch));
    }

    #[test]
    fn trailers_come_back_and_the_signed_ones_are_checked() {
        let payload = vec![b'x'; 20000];
        let trailers = [("x-amz-checksum-crc32", "AAAAAA==")];
        for mode in [Mode::SignedTrailer, Mode::UnsignedTrailer] {
            let body = encode(&payload, 8192, mode, Some(documented_signer()), &trailers);
            let mut d = Decoder::new(mode, Some(documented_signer()), payload.len() as u64);
            assert_eq!(decode_all(&mut d, &body, 333).unwrap(), payload);
            assert_eq!(d.finish().unwrap(), vec![("x-amz-checksum-crc32".to_string(), "AAAAAA==".to_string())]);
        }
        // A trailer changed after signing.
        let body = encode(&payload, 8192, Mode::SignedTrailer, Some(documented_signer()), &trailers);
        let text = String::from_utf8_lossy(&body).replace("AAAAAA==", "AAAAAB==");
        let mut d = Decoder::new(Mode::SignedTrailer, Some(documented_signer()), payload.len() as u64);
        assert_eq!(decode_all(&mut d, text.as_bytes(), 333), Err(ChunkedError::SignatureMismatch));
    }

    #[test]
    fn signed_chunks_under_8_kib_but_the_last_and_padded_unsigned_headers_are_refused() {
        let payload = vec![b'z'; 3000];
        let body = encode(&payload, 1000, Mode::Signed, Some(documented_signer()), &[]);
        let mut d = Decoder::new(Mode::Signed, Some(documented_signer()), payload.len() as u64);
        assert_eq!(decode_all(&mut d, &body, 512), Err(ChunkedError::ChunkTooSmall));
        // One short chunk, the last, is fine.
        let body = encode(&payload, 8192, Mode::Signed, Some(documented_signer()), &[]);
        let mut d = Decoder::new(Mode::Signed, Some(documented_signer()), payload.len() as u64);
        assert_eq!(decode_all(&mut d, &body, 512).unwrap(), payload);
        let mut d = Decoder::new(Mode::UnsignedTrailer, None, 5);
        assert!(decode_all(&mut d, b"5;padding=aaaaaaaa\r\nhello\r\n0\r\n\r\n", 64).is_err());
    }

    #[test]
    fn the_javascript_sdks_unsigned_form_decodes() {
        // As @aws-sdk/client-s3 3.x writes a stream body (after HTTP's own chunking).
        let body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n";
        let mut d = Decoder::new(Mode::UnsignedTrailer, None, 5);
        assert_eq!(decode_all(&mut d, body, 3).unwrap(), b"hello");
        assert_eq!(d.finish().unwrap()[0].1, "NhCmhg==");
    }

    #[test]
    fn lengths_and_framing_are_enforced() {
        let body = encode(b"hello world", 4, Mode::UnsignedTrailer, None, &[]);
        // More than declared.
        let mut d = Decoder::new(Mode::UnsignedTrailer, None, 5);
        assert!(matches!(decode_all(&mut d, &body, 64), Err(ChunkedError::TooLong { .. })));
        // Less than declared.
        let mut d = Decoder::new(Mode::UnsignedTrailer, None, 50);
        assert!(matches!(decode_all(&mut d, &body, 64), Err(ChunkedError::Incomplete { .. })));
        // Cut short.
        let mut d = Decoder::new(Mode::UnsignedTrailer, None, 11);
        decode_all(&mut d, &body[..body.len() - 3], 64).unwrap();
        assert!(d.finish().is_err());
        // Bytes after the end; an endless header line; a size that is not hex.
        let mut d = Decoder::new(Mode::UnsignedTrailer, None, 11);
        assert!(decode_all(&mut d, &[&body[..], b"x"].concat(), 64).is_err());
        let mut d = Decoder::new(Mode::UnsignedTrailer, None, 11);
        assert!(decode_all(&mut d, &[b'1'; 5000], 64).is_err());
        let mut d = Decoder::new(Mode::UnsignedTrailer, None, 11);
        assert!(decode_all(&mut d, b"zz\r\n", 64).is_err());
        // A signed chunk with no signature.
        let mut d = Decoder::new(Mode::Signed, None, 5);
        assert!(decode_all(&mut d, b"5\r\nhello\r\n", 64).is_err());
        // Too many trailers.
        let many: Vec<(String, String)> = (0..=MAX_TRAILERS).map(|i| (format!("x-{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let body = encode(b"hi", 4, Mode::UnsignedTrailer, None, &many);
        let mut d = Decoder::new(Mode::UnsignedTrailer, None, 2);
        assert!(decode_all(&mut d, &body, 64).is_err());
    }
}
