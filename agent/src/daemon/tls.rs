//! TLS for the daemon, rustls with the ring provider: the client side of the sinks (syslog
//! and MQTT over TLS: the server checked against `ca_file` or the platform's trust store, an
//! optional client certificate) and the API listener's server side (`[api] tls_cert`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls_platform_verifier::BuilderVerifierExt;

use super::sinks::SinkError;

/// The client configuration for a sink's TLS connections.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    client_cert: Option<&(PathBuf, PathBuf)>,
) -> Result<Arc<ClientConfig>, SinkError> {
    let setup = SinkError::Setup;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(format!("TLS: {e}")))?;
    let builder = match ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(path).map_err(setup)? {
                roots
                    .add(cert)
                    .map_err(|e| setup(format!("ca_file {}: {e}", path.display())))?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .with_platform_verifier()
            .map_err(|e| setup(format!("the platform's trust store: {e}")))?,
    };
    let config = match client_cert {
        Some((cert, key)) => {
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| setup(format!("client_key_file {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(certificates(cert).map_err(setup)?, key)
                .map_err(|e| setup(format!("client_cert_file {}: {e}", cert.display())))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// The TLS side of the API listener (`[api] tls_cert`, `tls_key`): TLS 1.2 and 1.3, HTTP/1.1.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs = certificates(cert).map_err(|e| format!("[api] tls_cert {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("[api] tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("[api] tls_cert and tls_key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The name the server's certificate must carry.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, SinkError> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| SinkError::Setup(format!("{host:?} is not a TLS server name: {e}")))
}
