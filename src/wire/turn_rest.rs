//! Time-limited TURN credentials, the "TURN REST API" scheme
//! (draft-uberti-behave-turn-rest-00) that coturn checks with `use-auth-secret` /
//! `static-auth-secret`: the username is `EXPIRY:NAME` (EXPIRY in seconds since the
//! epoch) and the password is base64(HMAC-SHA1(secret, username)). Pure.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The username and password valid until `expires_s` for `name`.
pub fn credentials(secret: &str, name: &str, expires_s: i64) -> (String, String) {
    let username = format!("{expires_s}:{name}");
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_hmac_sha1_of_the_username() {
        // `echo -n '1700000000:viewer' | openssl dgst -sha1 -hmac s3cret -binary | base64`
        let (user, pass) = credentials("s3cret", "viewer", 1_700_000_000);
        assert_eq!(user, "1700000000:viewer");
        assert_eq!(pass, "t7JM3pVbl1kvt/39mtI2IDEG/WM=");
    }
}
