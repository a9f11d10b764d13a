//! S3's query-string authentication, signature version 2: the presigned URLs boto3's
//! `generate_presigned_url` writes for S3 unless told `s3v4` (`AWSAccessKeyId`,
//! `Expires`, `Signature`). The string to sign is the method, Content-MD5,
//! Content-Type, `Expires`, the `x-amz-` headers and the resource (the path as sent,
//! with the sub-resources S3 signs); the signature is base64 HMAC-SHA1 of it.
//! Pure; the caller supplies the time and the key lookup.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::sigv4::{constant_time_eq, percent_decode, SigV4Error};

/// The query parameters S3 includes in a version 2 signature's resource.
const SUB_RESOURCES: [&str; 14] = [
    "acl",
    "location",
    "logging",
    "partNumber",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "tagging",
    "torrent",
    "uploadId",
    "versionId",
];

/// The farthest ahead a version 2 URL's `Expires` may be (7 days, as version 4 allows).
pub const MAX_AHEAD_SECS: i64 = 7 * 24 * 3600;

/// The query's parameters, decoded, in order.
fn params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Whether a raw query carries a version 2 presigned signature (`AWSAccessKeyId`,
/// `Signature`, `Expires`), told without decoding it: every request is asked.
pub fn is_presigned(query: &str) -> bool {
    let has = |name: &str| query.split('&').any(|p| p.split_once('=').map_or(p, |(k, _)| k) == name);
    has("AWSAccessKeyId") && has("Signature") && has("Expires")
}

/// The access key of a version 2 presigned URL, if the query is one.
pub fn presigned_key(query: &str) -> Option<String> {
    let p = params(query);
    let has = |name: &str| p.iter().any(|(k, _)| k == name);
    if !(has("Signature") && has("Expires")) {
        return None;
    }
    p.into_iter().find(|(k, _)| k == "AWSAccessKeyId").map(|(_, v)| v)
}

/// The string a version 2 signature signs.
pub fn string_to_sign(method: &str, path: &str, query: &str, headers: &[(String, String)], expires: &str) -> String {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut amz: Vec<(String, String)> = headers
        .iter()
        .filter(|(k, _)| k.to_ascii_lowercase().starts_with("x-amz-"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    amz.sort();
    let mut sub: Vec<(String, String)> =
        params(query).into_iter().filter(|(k, _)| SUB_RESOURCES.contains(&k.as_str())).collect();
    sub.sort();
    let mut out = format!("{method}\n{}\n{}\n{expires}\n", header("content-md5"), header("content-type"));
    for (k, v) in amz {
        out.push_str(&format!("{k}:{v}\n"));
    }
    out.push_str(path);
    for (i, (k, v)) in sub.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        if !v.is_empty() {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// The base64 HMAC-SHA1 signature of `string_to_sign` with `secret`.
pub fn signature(secret: &str, string_to_sign: &str) -> String {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Verifies a version 2 presigned request: current (`Expires` not passed, and not more
/// than [`MAX_AHEAD_SECS`] ahead), a known key, the right signature. Returns the key.
pub fn verify_presigned(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    now: i64,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SigV4Error> {
    let p = params(query);
    let get = |name: &str| p.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let key = get("AWSAccessKeyId").ok_or(SigV4Error::Missing)?;
    let given = get("Signature").ok_or(SigV4Error::Missing)?;
    let expires_text = get("Expires").ok_or(SigV4Error::Missing)?;
    let expires: i64 = expires_text
        .parse()
        .map_err(|_| SigV4Error::Incomplete(format!("Expires '{expires_text}' is not a time in seconds")))?;
    if now > expires {
        return Err(SigV4Error::Incomplete("Request has expired".into()));
    }
    if expires > now + MAX_AHEAD_SECS {
        return Err(SigV4Error::Incomplete(format!("Expires may be at most {MAX_AHEAD_SECS} seconds ahead")));
    }
    let secret = lookup(&key).ok_or(SigV4Error::UnknownAccessKey)?;
    let expected = signature(&secret, &string_to_sign(method, path, query, headers, &expires_text));
    if constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        Ok(key)
    } else {
        Err(SigV4Error::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GET of /awsexamplebucket1/photos/puppy.jpg with S3's documentation keys, its
    /// signature computed apart (Python's hmac and base64 over the same string); boto3's
    /// own URLs are checked by the integration tests.
    #[test]
    fn a_presigned_get_verifies_and_only_as_signed() {
        let query = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1141889120&Signature=mi%2Bpm7K7iCx46UlaDc8X8pxyzFc%3D";
        let sts = string_to_sign("GET", "/awsexamplebucket1/photos/puppy.jpg", query, &[], "1141889120");
        assert_eq!(sts, "GET\n\n\n1141889120\n/awsexamplebucket1/photos/puppy.jpg");
        let lookup = |_: &str| Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_string());
        let key = verify_presigned("GET", "/awsexamplebucket1/photos/puppy.jpg", query, &[], 1141889000, lookup);
        assert_eq!(key.unwrap(), "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(presigned_key(query).as_deref(), Some("AKIAIOSFODNN7EXAMPLE"));
        // Expired, too far ahead, another path: refused.
        assert!(verify_presigned("GET", "/awsexamplebucket1/photos/puppy.jpg", query, &[], 1141889121, lookup).is_err());
        assert!(verify_presigned("GET", "/awsexamplebucket1/photos/puppy.jpg", query, &[], 0, lookup).is_err());
        let other = verify_presigned("GET", "/awsexamplebucket1/photos/kitten.jpg", query, &[], 1141889000, lookup);
        assert_eq!(other.unwrap_err(), SigV4Error::Mismatch);
        assert_eq!(presigned_key("X-Amz-Signature=abc"), None);
        assert!(is_presigned(query) && !is_presigned("X-Amz-Signature=abc&Expires=1"));
    }
}
