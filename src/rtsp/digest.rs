//! RTSP Digest authentication (RFC 2617, MD5, as RTSP 1.0 clients speak it): an access
//! key id as the user name, its secret as the password. Nonces are derived from a key
//! and a time, so the server keeps no state per challenge.

use md5::{Digest, Md5};

use crate::clock::SharedClock;
use crate::credentials::{Caller, Credentials};
use crate::scope::Scope;
use crate::wire::rtsp::Request;

pub const REALM: &str = "Kinescope";
/// How long a nonce is good for.
const NONCE_LIFETIME_S: i64 = 300;

#[derive(Clone)]
pub struct DigestAuth {
    credentials: std::sync::Arc<Credentials>,
    clock: SharedClock,
    /// Nonces are derived from this, so they need no state.
    nonce_key: [u8; 32],
}

impl DigestAuth {
    pub fn new(credentials: std::sync::Arc<Credentials>, clock: SharedClock, nonce_key: [u8; 32]) -> Self {
        DigestAuth { credentials, clock, nonce_key }
    }

    fn now_s(&self) -> i64 {
        self.clock.now_us() / 1_000_000
    }

    fn nonce(&self, at_s: i64) -> String {
        let mut h = Md5::new();
        h.update(self.nonce_key);
        h.update(at_s.to_be_bytes());
        format!("{at_s:x}.{}", hex::encode(h.finalize()))
    }

    fn nonce_ok(&self, nonce: &str) -> bool {
        let Some((at, _)) = nonce.split_once('.') else { return false };
        let Ok(at_s) = i64::from_str_radix(at, 16) else { return false };
        (self.now_s() - at_s).saturating_abs() < NONCE_LIFETIME_S
            && crate::wire::sigv4::constant_time_eq(self.nonce(at_s).as_bytes(), nonce.as_bytes())
    }

    /// The `WWW-Authenticate` value of a 401.
    pub fn challenge(&self) -> String {
        format!("Digest realm=\"{REALM}\", nonce=\"{}\", algorithm=\"MD5\"", self.nonce(self.now_s()))
    }

    /// Where requests that need no authentication act.
    pub fn default_scope(&self) -> Scope {
        self.credentials.default_scope().clone()
    }

    /// Who `req` acts as, if it may go on: in anonymous mode the default scope (or the
    /// account a twelve-digit user name gives); else the account of the key whose
    /// Digest response checks out. RTSP carries no region: the default one.
    pub fn caller(&self, req: &Request) -> Option<Caller> {
        let auth = req.header("authorization").and_then(|a| a.strip_prefix("Digest "));
        let fields = auth.map(digest_fields).unwrap_or_default();
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if self.credentials.is_anonymous() {
            return Some(self.credentials.caller(get("username"), None));
        }
        let (Some(user), Some(nonce), Some(uri), Some(response)) =
            (get("username"), get("nonce"), get("uri"), get("response"))
        else {
            return None;
        };
        let secret = self.credentials.secret(user)?;
        if !self.nonce_ok(nonce) {
            return None;
        }
        // The response covers the URI it names: it must be this request's, or a
        // response seen on the wire could be replayed for another stream.
        if uri != req.uri {
            tracing::info!(user, "RTSP digest for another URI");
            return None;
        }
        let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
        let ha1 = md5(format!("{user}:{REALM}:{secret}"));
        let ha2 = md5(format!("{}:{uri}", req.method));
        let expected = md5(format!("{ha1}:{nonce}:{ha2}"));
        if !crate::wire::sigv4::constant_time_eq(expected.as_bytes(), response.to_ascii_lowercase().as_bytes()) {
            tracing::info!(user, "RTSP digest mismatch");
            return None;
        }
        Some(self.credentials.caller(Some(user), None))
    }
}

/// `k="v", k2=v2` pairs of a Digest header.
fn digest_fields(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else { break };
        let after = after.trim_start();
        let (v, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.split_once('"') {
                Some((v, t)) => (v, t),
                None => (q, ""),
            }
        } else {
            after.split_once(',').map_or((after, ""), |(v, t)| (v, t))
        };
        out.push((k.trim().to_ascii_lowercase(), v.to_string()));
        rest = tail.trim_start_matches([',', ' ']);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_header_fields() {
        let f =
            digest_fields(r#"username="AKID", realm="Kinescope", nonce="5f.ab", uri="rtsp://h/s", response="00ff""#);
        assert_eq!(f[0], ("username".into(), "AKID".into()));
        assert_eq!(f[4], ("response".into(), "00ff".into()));
        assert_eq!(digest_fields("a=1,b=\"x, y\""), vec![("a".into(), "1".into()), ("b".into(), "x, y".into())]);
    }

    #[test]
    fn a_response_computed_from_the_secret_passes_and_others_do_not() {
        let clock = std::sync::Arc::new(crate::clock::ManualClock::new(1_700_000_000_000_000));
        let auth = DigestAuth::new(
            std::sync::Arc::new(
                Credentials::new(crate::scope::Scope::new("123456789012", "us-east-1"))
                    .with_key("AKID", "secret", None),
            ),
            clock.clone(),
            [3; 32],
        );
        let nonce = auth.nonce(auth.now_s());
        let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
        let request = |password: &str, nonce: &str| {
            let ha1 = md5(format!("AKID:{REALM}:{password}"));
            let ha2 = md5("ANNOUNCE:rtsp://h/cam".to_string());
            let response = md5(format!("{ha1}:{nonce}:{ha2}"));
            let text = format!(
                "ANNOUNCE rtsp://h/cam RTSP/1.0\r\nCSeq: 1\r\nAuthorization: Digest username=\"AKID\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"rtsp://h/cam\", response=\"{response}\"\r\n\r\n"
            );
            match crate::wire::rtsp::parse(text.as_bytes()) {
                Ok(Some((crate::wire::rtsp::Message::Request(r), _))) => r,
                other => panic!("{other:?}"),
            }
        };
        let caller = auth.caller(&request("secret", &nonce)).expect("the right secret passes");
        assert_eq!(caller.scope, crate::scope::Scope::new("123456789012", "us-east-1"));
        // The same Authorization replayed on a request for another stream does not pass.
        let mut replayed = request("secret", &nonce);
        replayed.uri = "rtsp://h/other".into();
        assert!(auth.caller(&replayed).is_none(), "a response is for the URI it names");
        assert!(auth.caller(&request("wrong", &nonce)).is_none());
        assert!(auth.caller(&request("secret", "0.00")).is_none(), "a forged nonce");
        clock.advance_us(NONCE_LIFETIME_S * 1_000_000 + 1_000_000);
        assert!(auth.caller(&request("secret", &nonce)).is_none(), "an expired nonce");
        assert!(auth.challenge().starts_with("Digest realm=\"Kinescope\", nonce=\""));
    }
}
