//! The HTTPS listener's certificate: the operator's PEM files, or a self-signed one made
//! once in `data/tls/` for this machine's names (what a browser on localhost, or a test
//! that trusts it, needs for `wss://` signalling and getUserMedia on a non-loopback
//! page). The private key file is written mode 0600.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no {what} in PEM form")]
    NoPem { path: PathBuf, what: &'static str },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Where the certificate comes from.
pub enum CertSource<'a> {
    /// PEM files the operator gave.
    Files { cert: &'a Path, key: &'a Path },
    /// Made once under `dir` for `names` (DNS names or IP addresses), then reused.
    SelfSigned { dir: &'a Path, names: Vec<String> },
}

/// The acceptor for `source`; HTTP/1.1 only (ALPN `http/1.1`).
pub fn acceptor(source: CertSource<'_>) -> Result<TlsAcceptor, TlsError> {
    let (cert_path, key_path) = match source {
        CertSource::Files { cert, key } => (cert.to_path_buf(), key.to_path_buf()),
        CertSource::SelfSigned { dir, names } => {
            let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !cert.exists() || !key.exists() {
                make_self_signed(dir, &cert, &key, names)?;
            }
            (cert, key)
        }
    };
    let read = |p: &Path| std::fs::read(p).map_err(|source| TlsError::Read { path: p.to_path_buf(), source });
    let cert_pem = read(&cert_path)?;
    let key_pem = read(&key_path)?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoPem { path: cert_path, what: "certificate" });
    }
    let key =
        PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoPem { path: key_path, what: "private key" })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // HTTP/2 first, as clients prefer it; a client that offers no ALPN may still start
    // HTTP/2 at once (see `serve`).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // No TLS 1.3 session tickets: clients that read and write one TLS socket from two
    // threads (Python's `websockets` sync client) lose their first request when the
    // tickets arrive while they write; docs/known-issues.md. Resumption is all we give up.
    config.send_tls13_tickets = 0;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn make_self_signed(dir: &Path, cert: &Path, key: &Path, mut names: Vec<String>) -> Result<(), TlsError> {
    for n in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write { path: dir.to_path_buf(), source })?;
    let write = |path: &Path, text: String, secret: bool| {
        crate::durable_file::replace(path, text.as_bytes(), if secret { 0o600 } else { 0o644 })
            .map_err(|source| TlsError::Write { path: path.to_path_buf(), source })
    };
    write(key, generated.key_pair.serialize_pem(), true)?;
    write(cert, generated.cert.pem(), false)?;
    tracing::info!(cert = %cert.display(), "made a self-signed certificate for the HTTPS listener");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        acceptor(CertSource::SelfSigned { dir: dir.path(), names: vec!["cam.example".into()] }).unwrap();
        let first = std::fs::read(dir.path().join("cert.pem")).unwrap();
        acceptor(CertSource::SelfSigned { dir: dir.path(), names: vec![] }).unwrap();
        assert_eq!(std::fs::read(dir.path().join("cert.pem")).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("key.pem")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the key is readable by its owner only");
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not pem").unwrap();
        assert!(matches!(acceptor(CertSource::Files { cert: &bad, key: &bad }), Err(TlsError::NoPem { .. })));
    }
}
