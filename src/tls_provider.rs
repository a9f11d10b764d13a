//! The process's TLS crypto provider: rustls with ring, the one our HTTPS listener
//! (tokio-rustls) uses, installed once as the default for the HTTP clients (reqwest,
//! object_store), which are built without a provider of their own so that aws-lc-rs
//! (and the cmake and C toolchain it needs) stays out of the build.

/// Installs ring as rustls's process-wide default; a second call does nothing.
pub fn install() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
