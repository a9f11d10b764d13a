//! AWS Signature Version 4: parsing the `Authorization` header, computing a signature,
//! and verifying one. Pure functions over request parts; the HTTP layer supplies them.
//!
//! Reference: "Create a signed AWS API request" (AWS General Reference, SigV4), and the
//! canonicalisation botocore applies (`botocore/auth.py`): non-S3 services sign the
//! already-encoded path encoded once more, query pairs sorted after encoding, header
//! values trimmed with inner runs of spaces folded.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The largest clock difference AWS accepts between a request's date and the server.
pub const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigV4Error {
    #[error("Request is missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")]
    Mismatch,
    #[error("Signature expired: {request} is now earlier than {earliest} ({now} - 15 min.)")]
    Expired { request: String, earliest: String, now: String },
    #[error("Signature not yet current: {request} is still later than {latest} ({now} + 15 min.)")]
    NotYetCurrent { request: String, latest: String, now: String },
    /// The credential scope names another service, or no valid region.
    #[error("{0}")]
    WrongScope(String),
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

impl Authorization {
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }
}

pub fn parse_authorization(value: &str) -> Result<Authorization, SigV4Error> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| SigV4Error::Incomplete(format!("Authorization header requires the {ALGORITHM} algorithm")))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let missing = |what: &str| SigV4Error::Incomplete(format!("Authorization header requires '{what}' parameter."));
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts[4] != "aws4_request" || parts.iter().any(|p| p.is_empty()) {
        return Err(SigV4Error::Incomplete(format!(
            "Credential should be scoped to a valid region, service and date: '{credential}'"
        )));
    }
    Ok(Authorization {
        access_key_id: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
        signed_headers: signed_headers.split(';').map(str::to_string).collect(),
        signature: signature.to_string(),
    })
}

/// The SHA-256 of the empty body, as a hex payload hash.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What is needed of a request to compute its signature.
#[derive(Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The path exactly as it appeared on the request line (still percent-encoded).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// Every header, names in any case; repeated names allowed.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
    pub payload_hash: &'a str,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes every byte but the RFC 3986 unreserved ones (and `/` when asked).
pub fn uri_encode(input: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as space, as form encoding does in query strings).
pub fn percent_decode(input: &str, plus_as_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_as_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The query string in canonical form: pairs encoded, sorted, joined by `&`. Pairs whose
/// key is in `exclude` (a presigned URL's own signature) are left out.
pub fn canonical_query(query: &str, exclude: &[&str]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(k, true), false), uri_encode(&percent_decode(v, true), false))
        })
        .filter(|(k, _)| !exclude.contains(&k.as_str()))
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn fold_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn canonical_request(req: &RequestParts<'_>, signed_headers: &[String], exclude_query: &[&str]) -> String {
    canonical_request_for(req, signed_headers, exclude_query, "")
}

/// The canonical request as `service` signs it: S3 signs the path encoded once (the
/// path as sent, escapes normalised); every other service encodes the sent path again.
pub fn canonical_request_for(
    req: &RequestParts<'_>,
    signed_headers: &[String],
    exclude_query: &[&str],
    service: &str,
) -> String {
    let path = if req.path.is_empty() { "/" } else { req.path };
    let canonical_path =
        if service == "s3" { uri_encode(&percent_decode(path, false), true) } else { uri_encode(path, true) };
    let mut out = String::new();
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_path);
    out.push('\n');
    out.push_str(&canonical_query(req.query, exclude_query));
    out.push('\n');
    for name in signed_headers {
        let values: Vec<String> =
            req.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| fold_spaces(v)).collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed_headers.join(";"));
    out.push('\n');
    out.push_str(req.payload_hash);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The hex signature of a request.
pub fn signature(
    secret: &str,
    auth_date: &str,
    region: &str,
    service: &str,
    amz_date: &str,
    canonical: &str,
) -> String {
    let scope = format!("{auth_date}/{region}/{service}/aws4_request");
    let key = signing_key(secret, auth_date, region, service);
    hex::encode(hmac(&key, string_to_sign(amz_date, &scope, canonical).as_bytes()))
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses `YYYYMMDDTHHMMSSZ` into seconds since the Unix epoch.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Formats seconds since the Unix epoch as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(secs: i64) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!("{y:04}{mo:02}{d:02}T{:02}{:02}{:02}Z", t / 3600, t / 60 % 60, t % 60)
}

// Howard Hinnant's civil-calendar algorithms (public domain).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Verifies a header-signed request against the secrets `lookup` knows.
///
/// `now` is seconds since the epoch. Returns the access key id that signed it.
/// What the headers alone of a signed request establish: its Authorization, its date,
/// and the secret of a known key. Checked before the body is read, so a request that
/// cannot be authentic costs no body bytes.
#[derive(Debug, Clone)]
pub struct Preverified {
    pub auth: Authorization,
    amz_date: String,
    secret: String,
}

impl Preverified {
    /// What chains on from this request's signature (its streaming chunks' signer
    /// starts from it): the signing key, the request date, the credential scope.
    pub fn signing_parts(&self) -> ([u8; 32], &str, String) {
        let key = signing_key(&self.secret, &self.auth.date, &self.auth.region, &self.auth.service);
        (key, &self.amz_date, self.auth.scope())
    }
}

/// The header checks of SigV4: an Authorization of a known key, a date within 15
/// minutes of `now` that matches the credential scope, `host` signed, and a scope for
/// one of `services` (`kinesisvideo`, `sqs`, …) in a well-formed region.
pub fn preverify(
    headers: &[(String, String)],
    now: i64,
    services: &[&str],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Preverified, SigV4Error> {
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let auth = parse_authorization(header("authorization").ok_or(SigV4Error::Missing)?)?;
    let amz_date = header("x-amz-date").ok_or_else(|| {
        SigV4Error::Incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.".into(),
        )
    })?;
    let request_time = parse_amz_date(amz_date)
        .ok_or_else(|| SigV4Error::Incomplete(format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'.")))?;
    check_skew(amz_date, request_time, now)?;
    if !amz_date.starts_with(&auth.date) {
        return Err(SigV4Error::Incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'",
            auth.date,
            &amz_date[..8]
        )));
    }
    // HTTP/2 clients (the JavaScript SDK's) sign the `:authority` pseudo-header instead.
    if !auth.signed_headers.iter().any(|h| h == "host" || h == ":authority") {
        return Err(SigV4Error::Incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    let secret = scoped_secret(&auth, services, lookup)?;
    Ok(Preverified { auth, amz_date: amz_date.to_string(), secret })
}

/// The credential scope names one of `services` and a well-formed region, and its key
/// is known: returns the key's secret.
fn scoped_secret(
    auth: &Authorization,
    services: &[&str],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SigV4Error> {
    if !services.contains(&auth.service.as_str()) {
        return Err(SigV4Error::WrongScope(format!(
            "Credential should be scoped to correct service: '{}'. ",
            services.first().copied().unwrap_or_default()
        )));
    }
    if !valid_region(&auth.region) {
        return Err(SigV4Error::WrongScope("Credential should be scoped to a valid region. ".into()));
    }
    lookup(&auth.access_key_id).ok_or(SigV4Error::UnknownAccessKey)
}

/// Compares `auth`'s signature with the one `secret` gives `canonical`; returns the
/// access key id.
fn check_signature(auth: &Authorization, secret: &str, amz_date: &str, canonical: &str) -> Result<String, SigV4Error> {
    let expected = signature(secret, &auth.date, &auth.region, &auth.service, amz_date, canonical);
    if constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(auth.access_key_id.clone())
    } else {
        Err(SigV4Error::Mismatch)
    }
}

/// A region as AWS writes them: lower-case letters and digits in dash-separated parts.
fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region.split('-').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

/// The signature check of a request [`preverify`] passed: returns the access key id.
pub fn verify_signature(pre: &Preverified, req: &RequestParts<'_>) -> Result<String, SigV4Error> {
    let canonical = canonical_request_for(req, &pre.auth.signed_headers, &[], &pre.auth.service);
    check_signature(&pre.auth, &pre.secret, &pre.amz_date, &canonical)
}

/// [`preverify`] then [`verify_signature`], for a request whose body hash is known.
pub fn verify(
    req: &RequestParts<'_>,
    now: i64,
    services: &[&str],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SigV4Error> {
    let pre = preverify(req.headers, now, services, lookup)?;
    verify_signature(&pre, req)
}

fn check_skew(amz_date: &str, request_time: i64, now: i64) -> Result<(), SigV4Error> {
    if request_time < now - MAX_CLOCK_SKEW_SECS {
        return Err(SigV4Error::Expired {
            request: amz_date.to_string(),
            earliest: format_amz_date(now - MAX_CLOCK_SKEW_SECS),
            now: format_amz_date(now),
        });
    }
    if request_time > now + MAX_CLOCK_SKEW_SECS {
        return Err(SigV4Error::NotYetCurrent {
            request: amz_date.to_string(),
            latest: format_amz_date(now + MAX_CLOCK_SKEW_SECS),
            now: format_amz_date(now),
        });
    }
    Ok(())
}

/// The first value of `name` in a raw query string, percent-decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (percent_decode(k, true) == name).then(|| percent_decode(v, true))
    })
}

/// The longest `X-Amz-Expires` a presigned URL may ask for (7 days, as AWS allows).
pub const MAX_PRESIGNED_EXPIRES_SECS: i64 = 7 * 24 * 3600;

/// Verifies a presigned URL (the signature in the query string: `X-Amz-Algorithm`,
/// `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`,
/// `X-Amz-Signature`), as the Kinesis Video WebRTC SDKs sign the signalling WebSocket
/// URL. The canonical request leaves out `X-Amz-Signature`; `req.payload_hash` is what
/// the signer hashed (the empty body's hash for `kinesisvideo`). Valid from 15 minutes
/// before `X-Amz-Date` until it plus `X-Amz-Expires`. Returns the access key id.
pub fn verify_presigned(
    req: &RequestParts<'_>,
    now: i64,
    services: &[&str],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SigV4Error> {
    let param = |name: &str| query_param(req.query, name);
    let signature = param("X-Amz-Signature").ok_or(SigV4Error::Missing)?;
    let missing = |what: &str| {
        SigV4Error::Incomplete(format!(
            "AWS query-string parameters must include '{what}'. Re-examine the query-string parameters."
        ))
    };
    let algorithm = param("X-Amz-Algorithm").ok_or_else(|| missing("X-Amz-Algorithm"))?;
    let credential = param("X-Amz-Credential").ok_or_else(|| missing("X-Amz-Credential"))?;
    let amz_date = param("X-Amz-Date").ok_or_else(|| missing("X-Amz-Date"))?;
    let expires = param("X-Amz-Expires").ok_or_else(|| missing("X-Amz-Expires"))?;
    let signed_headers = param("X-Amz-SignedHeaders").ok_or_else(|| missing("X-Amz-SignedHeaders"))?;
    if algorithm != ALGORITHM {
        return Err(SigV4Error::Incomplete(format!("X-Amz-Algorithm must be {ALGORITHM}")));
    }
    let auth = parse_authorization(&format!(
        "{ALGORITHM} Credential={credential}, SignedHeaders={signed_headers}, Signature={signature}"
    ))?;
    let expires: i64 =
        expires.parse().ok().filter(|e| (1..=MAX_PRESIGNED_EXPIRES_SECS).contains(e)).ok_or_else(|| {
            SigV4Error::Incomplete(format!("X-Amz-Expires must be between 1 and {MAX_PRESIGNED_EXPIRES_SECS} seconds"))
        })?;
    let request_time = parse_amz_date(&amz_date)
        .ok_or_else(|| SigV4Error::Incomplete(format!("Date must be in ISO-8601 'basic format'. Got '{amz_date}'.")))?;
    if now > request_time + expires {
        return Err(SigV4Error::Expired {
            request: amz_date.clone(),
            earliest: format_amz_date(now - expires),
            now: format_amz_date(now),
        });
    }
    if request_time > now + MAX_CLOCK_SKEW_SECS {
        return Err(SigV4Error::NotYetCurrent {
            request: amz_date.clone(),
            latest: format_amz_date(now + MAX_CLOCK_SKEW_SECS),
            now: format_amz_date(now),
        });
    }
    if !amz_date.starts_with(&auth.date) {
        return Err(SigV4Error::Incomplete("Date in Credential scope does not match X-Amz-Date".into()));
    }
    // HTTP/2 clients (the JavaScript SDK's) sign the `:authority` pseudo-header instead.
    if !auth.signed_headers.iter().any(|h| h == "host" || h == ":authority") {
        return Err(SigV4Error::Incomplete("'host' must be a signed header of a presigned URL".into()));
    }
    let secret = scoped_secret(&auth, services, lookup)?;
    let canonical = canonical_request_for(req, &auth.signed_headers, &["X-Amz-Signature"], &auth.service);
    check_signature(&auth, &secret, &amz_date, &canonical)
}

/// The credential a presigned URL claims (access key id, region), unverified: what
/// anonymous mode takes as given, and what picks the caller's scope.
pub fn presigned_credential(query: &str) -> Option<(String, String)> {
    let credential = query_param(query, "X-Amz-Credential")?;
    let parts: Vec<&str> = credential.split('/').collect();
    (parts.len() == 5).then(|| (parts[0].to_string(), parts[2].to_string()))
}

/// Signs a request: returns the `Authorization` header value. The caller must already
/// have put `host` and `x-amz-date` (and any other header to sign) into `req.headers`.
pub fn sign(req: &RequestParts<'_>, access_key_id: &str, secret: &str, region: &str, service: &str) -> String {
    let amz_date =
        req.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("x-amz-date")).map(|(_, v)| v.as_str()).unwrap_or("");
    let date = amz_date.get(..8).unwrap_or("");
    let mut signed: Vec<String> = req.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    signed.sort();
    signed.dedup();
    let canonical = canonical_request_for(req, &signed, &[], service);
    let sig = signature(secret, date, region, service, amz_date, &canonical);
    format!(
        "{ALGORITHM} Credential={access_key_id}/{date}/{region}/{service}/aws4_request, SignedHeaders={}, Signature={sig}",
        signed.join(";")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn vanilla_headers() -> Vec<(String, String)> {
        vec![("Host".into(), "example.amazonaws.com".into()), ("X-Amz-Date".into(), "20150830T123600Z".into())]
    }

    /// The S3 documentation's example: GET /test.txt with a Range, signed for `s3`.
    #[test]
    fn s3s_documented_get_object_example_verifies() {
        let headers: Vec<(String, String)> = vec![
            ("Host".into(), "examplebucket.s3.amazonaws.com".into()),
            ("Range".into(), "bytes=0-9".into()),
            ("x-amz-content-sha256".into(), EMPTY_SHA256.into()),
            ("x-amz-date".into(), "20130524T000000Z".into()),
            (
                "Authorization".into(),
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
                 SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
                 Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
                    .into(),
            ),
        ];
        let req =
            RequestParts { method: "GET", path: "/test.txt", query: "", headers: &headers, payload_hash: EMPTY_SHA256 };
        let now = parse_amz_date("20130524T000000Z").unwrap();
        let lookup = |_: &str| Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string());
        assert_eq!(verify(&req, now, &["s3"], lookup).unwrap(), "AKIAIOSFODNN7EXAMPLE");
        // S3 signs a key's escapes once; other services twice.
        let spaced = RequestParts { path: "/photos/my%20cat.jpg", ..req };
        let canonical_s3 = canonical_request_for(&spaced, &["host".to_string()], &[], "s3");
        assert!(canonical_s3.starts_with("GET\n/photos/my%20cat.jpg\n"), "{canonical_s3}");
        assert!(canonical_request(&spaced, &["host".to_string()], &[]).starts_with("GET\n/photos/my%2520cat.jpg\n"));
    }

    /// AWS SigV4 test suite, `get-vanilla`.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let headers = vanilla_headers();
        let req =
            RequestParts { method: "GET", path: "/", query: "", headers: &headers, payload_hash: &sha256_hex(b"") };
        let signed = vec!["host".to_string(), "x-amz-date".to_string()];
        let canonical = canonical_request(&req, &signed, &[]);
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let sig = signature(SECRET, "20150830", "us-east-1", "service", "20150830T123600Z", &canonical);
        assert_eq!(sig, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    }

    #[test]
    fn an_http2_request_signed_over_its_authority_verifies() {
        // What the JavaScript SDK signs over HTTP/2: `:authority`, no `host`.
        let mut headers = vec![
            (":authority".to_string(), "127.0.0.1:4566".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        ];
        let hash = sha256_hex(b"{}");
        let req = RequestParts { method: "POST", path: "/", query: "", headers: &headers, payload_hash: &hash };
        headers.push(("authorization".into(), sign(&req, "AKID", SECRET, "us-east-1", "kinesis")));
        assert!(headers[2].1.contains("SignedHeaders=:authority;x-amz-date"), "{}", headers[2].1);
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let lookup = |id: &str| (id == "AKID").then(|| SECRET.to_string());
        let req = RequestParts { method: "POST", path: "/", query: "", headers: &headers, payload_hash: &hash };
        assert_eq!(verify(&req, now, &["kinesis"], lookup), Ok("AKID".to_string()));
        headers[0].1 = "127.0.0.1:4567".into();
        let req = RequestParts { method: "POST", path: "/", query: "", headers: &headers, payload_hash: &hash };
        assert_eq!(verify(&req, now, &["kinesis"], lookup), Err(SigV4Error::Mismatch), "another authority");
    }

    #[test]
    fn sign_then_verify_round_trip_and_tamper() {
        let mut headers = vanilla_headers();
        headers.push(("content-type".into(), "application/json".into()));
        let hash = sha256_hex(b"{}");
        let req =
            RequestParts { method: "POST", path: "/createStream", query: "", headers: &headers, payload_hash: &hash };
        let auth = sign(&req, "AKID", SECRET, "us-east-1", "kinesisvideo");
        headers.push(("Authorization".into(), auth));
        let now = parse_amz_date("20150830T123600Z").unwrap();
        let lookup = |id: &str| (id == "AKID").then(|| SECRET.to_string());
        let req =
            RequestParts { method: "POST", path: "/createStream", query: "", headers: &headers, payload_hash: &hash };
        assert_eq!(verify(&req, now, &["kinesisvideo"], lookup), Ok("AKID".to_string()));
        assert!(
            matches!(verify(&req, now, &["sqs"], lookup), Err(SigV4Error::WrongScope(_))),
            "another service's scope"
        );

        let other = sha256_hex(b"{\"x\":1}");
        let tampered = RequestParts { payload_hash: &other, ..req };
        assert_eq!(verify(&tampered, now, &["kinesisvideo"], lookup), Err(SigV4Error::Mismatch));
        let req =
            RequestParts { method: "POST", path: "/createStream", query: "", headers: &headers, payload_hash: &hash };
        assert!(matches!(verify(&req, now + 16 * 60, &["kinesisvideo"], lookup), Err(SigV4Error::Expired { .. })));
        assert!(matches!(
            verify(&req, now - 16 * 60, &["kinesisvideo"], lookup),
            Err(SigV4Error::NotYetCurrent { .. })
        ));
        assert_eq!(verify(&req, now, &["kinesisvideo"], |_| None), Err(SigV4Error::UnknownAccessKey));
    }

    #[test]
    fn missing_and_malformed_authorization() {
        let headers = vanilla_headers();
        let req =
            RequestParts { method: "GET", path: "/", query: "", headers: &headers, payload_hash: UNSIGNED_PAYLOAD };
        assert_eq!(verify(&req, 0, &["sqs"], |_| None), Err(SigV4Error::Missing));
        assert!(matches!(parse_authorization("AWS4-HMAC-SHA256 Credential=a/b"), Err(SigV4Error::Incomplete(_))));
        assert!(matches!(parse_authorization("Basic abc"), Err(SigV4Error::Incomplete(_))));
    }

    #[test]
    fn query_is_sorted_and_encoded() {
        assert_eq!(canonical_query("b=2&a=x%20y&a=1", &[]), "a=1&a=x%20y&b=2");
        assert_eq!(canonical_query("X-Amz-Signature=abc&k=v", &["X-Amz-Signature"]), "k=v");
    }

    #[test]
    fn amz_date_round_trip() {
        let t = parse_amz_date("20261125T005219Z").unwrap();
        assert_eq!(format_amz_date(t), "20261125T005219Z");
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("2026-11-25"), None);
    }

    /// A URL signed as the Kinesis Video WebRTC SDK for JavaScript signs its WebSocket
    /// URL (`SigV4RequestSigner.getSignedURL`: `host` signed, the empty body's hash,
    /// query keys sorted and encoded with `encodeURIComponent`).
    fn presigned_like_the_kvs_sdk(date: &str, expires: i64, secret: &str) -> String {
        let arn = "arn:aws:kinesisvideo:us-west-2:123456789012:channel/demo/1700000000000";
        let mut q: Vec<(String, String)> = vec![
            ("X-Amz-Algorithm".into(), ALGORITHM.into()),
            ("X-Amz-ChannelARN".into(), arn.into()),
            ("X-Amz-ClientId".into(), "viewer-1".into()),
            ("X-Amz-Credential".into(), format!("AKID/{}/us-west-2/kinesisvideo/aws4_request", &date[..8])),
            ("X-Amz-Date".into(), date.into()),
            ("X-Amz-Expires".into(), expires.to_string()),
            ("X-Amz-SignedHeaders".into(), "host".into()),
        ];
        q.sort();
        let qs = q.iter().map(|(k, v)| format!("{k}={}", uri_encode(v, false))).collect::<Vec<_>>().join("&");
        let canonical = format!("GET\n/signaling\n{qs}\nhost:127.0.0.1:8443\n\nhost\n{}", sha256_hex(b""));
        let sig = signature(secret, &date[..8], "us-west-2", "kinesisvideo", date, &canonical);
        format!("{qs}&X-Amz-Signature={sig}")
    }

    #[test]
    fn presigned_urls_verify_until_they_expire() {
        let headers = vec![("host".to_string(), "127.0.0.1:8443".to_string())];
        let lookup = |id: &str| (id == "AKID").then(|| SECRET.to_string());
        let now = parse_amz_date("20261129T120000Z").unwrap();
        let query = presigned_like_the_kvs_sdk("20261129T120000Z", 299, SECRET);
        let empty = sha256_hex(b"");
        let req =
            RequestParts { method: "GET", path: "/signaling", query: &query, headers: &headers, payload_hash: &empty };
        assert_eq!(verify_presigned(&req, now + 10, &["kinesisvideo"], lookup), Ok("AKID".into()));
        assert_eq!(presigned_credential(&query), Some(("AKID".into(), "us-west-2".into())));
        assert!(matches!(
            verify_presigned(&req, now + 300, &["kinesisvideo"], lookup),
            Err(SigV4Error::Expired { .. })
        ));
        assert!(matches!(verify_presigned(&req, now, &["sqs"], lookup), Err(SigV4Error::WrongScope(_))));
        let wrong_secret = presigned_like_the_kvs_sdk("20261129T120000Z", 299, "not-the-secret");
        let req2 = RequestParts { query: &wrong_secret, ..req };
        assert_eq!(verify_presigned(&req2, now, &["kinesisvideo"], lookup), Err(SigV4Error::Mismatch));
        let tampered = query.replace("viewer-1", "viewer-2");
        let req3 = RequestParts {
            method: "GET",
            path: "/signaling",
            query: &tampered,
            headers: &headers,
            payload_hash: &empty,
        };
        assert_eq!(verify_presigned(&req3, now, &["kinesisvideo"], lookup), Err(SigV4Error::Mismatch));
        let unsigned = RequestParts {
            method: "GET",
            path: "/signaling",
            query: "X-Amz-ChannelARN=x",
            headers: &headers,
            payload_hash: &empty,
        };
        assert_eq!(verify_presigned(&unsigned, now, &["kinesisvideo"], lookup), Err(SigV4Error::Missing));
        let forever = presigned_like_the_kvs_sdk("20261129T120000Z", MAX_PRESIGNED_EXPIRES_SECS + 1, SECRET);
        let req4 = RequestParts {
            method: "GET",
            path: "/signaling",
            query: &forever,
            headers: &headers,
            payload_hash: &empty,
        };
        assert!(matches!(verify_presigned(&req4, now, &["kinesisvideo"], lookup), Err(SigV4Error::Incomplete(_))));
    }
}
