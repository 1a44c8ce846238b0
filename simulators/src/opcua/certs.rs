//! The simulated server's application instance certificate: made once (RSA 2048, self
//! signed, ten years), kept in memory for every start of the same state, optionally kept in a
//! `pki_dir` across processes, and installed into the per-start PKI folder async-opcua reads.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use opcua_crypto::{CertificateStore, X509, X509Data};

/// Where async-opcua finds the certificate, relative to its PKI folder.
pub(crate) const CERT_PATH: &str = "own/cert.der";
/// Where async-opcua finds the private key, relative to its PKI folder.
pub(crate) const KEY_PATH: &str = "private/private.pem";

/// A certificate with its private key, as files' bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerCertificate {
    /// DER of the certificate.
    pub(crate) cert_der: Vec<u8>,
    /// PEM of the private key (PKCS#8).
    pub(crate) key_pem: Vec<u8>,
    /// SHA-1 thumbprint, lowercase hex (what OPC UA tools show).
    pub(crate) thumbprint: String,
}

fn other(text: impl Into<String>) -> io::Error {
    io::Error::other(text.into())
}

impl ServerCertificate {
    /// Makes a new self-signed certificate for `application_uri` (slow: an RSA key).
    pub(crate) fn generate(application_uri: &str, application_name: &str) -> io::Result<Self> {
        let dir = scratch_dir("cert")?;
        let made = Self::generate_into(&dir, application_uri, application_name);
        let _ = std::fs::remove_dir_all(&dir);
        made
    }

    fn generate_into(
        dir: &Path,
        application_uri: &str,
        application_name: &str,
    ) -> io::Result<Self> {
        let mut data = X509Data {
            key_size: 2048,
            common_name: application_name.to_owned(),
            organization: "otdrift".to_owned(),
            organizational_unit: "simulator".to_owned(),
            country: "DE".to_owned(),
            state: "NRW".to_owned(),
            alt_host_names: Default::default(),
            certificate_duration_days: 3650,
        };
        data.alt_host_names.add_uri(application_uri);
        data.alt_host_names.add_dns("localhost");
        data.alt_host_names.add_ipv4(&std::net::Ipv4Addr::LOCALHOST);
        let cert_path = dir.join(CERT_PATH);
        let key_path = dir.join(KEY_PATH);
        for path in [&cert_path, &key_path] {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
        }
        CertificateStore::create_certificate_and_key(&data, true, &cert_path, &key_path)
            .map_err(other)?;
        Self::read_from(dir)
    }

    /// Reads `own/cert.der` and `private/private.pem` below `dir`.
    pub(crate) fn read_from(dir: &Path) -> io::Result<Self> {
        let cert_der = std::fs::read(dir.join(CERT_PATH))?;
        let key_pem = std::fs::read(dir.join(KEY_PATH))?;
        let thumbprint = X509::from_der(&cert_der)
            .map_err(|e| other(format!("{}: {e}", dir.join(CERT_PATH).display())))?
            .thumbprint()
            .as_hex_string()
            .to_ascii_lowercase();
        Ok(ServerCertificate {
            cert_der,
            key_pem,
            thumbprint,
        })
    }

    /// Writes the certificate and key below `dir`, where async-opcua reads them.
    pub(crate) fn install(&self, dir: &Path) -> io::Result<()> {
        for (rel, bytes) in [(CERT_PATH, &self.cert_der), (KEY_PATH, &self.key_pem)] {
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join(KEY_PATH), std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }

    /// Loads the certificate kept in `dir`, or makes one there (and keeps it) when there is
    /// none or `renew` is set.
    pub(crate) fn load_or_create(
        dir: &Path,
        renew: bool,
        application_uri: &str,
        application_name: &str,
    ) -> io::Result<Self> {
        if !renew && let Ok(found) = Self::read_from(dir) {
            return Ok(found);
        }
        let made = Self::generate(application_uri, application_name)?;
        made.install(dir)?;
        Ok(made)
    }
}

/// One certificate per application URI for the whole process, so tests that start many
/// simulators make the slow RSA key once.
pub(crate) fn shared_for(
    application_uri: &str,
    application_name: &str,
) -> io::Result<Arc<ServerCertificate>> {
    static CACHE: Mutex<Option<HashMap<String, Arc<ServerCertificate>>>> = Mutex::new(None);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some(found) = map.get(application_uri) {
        return Ok(Arc::clone(found));
    }
    let made = Arc::new(ServerCertificate::generate(
        application_uri,
        application_name,
    )?);
    map.insert(application_uri.to_owned(), Arc::clone(&made));
    Ok(made)
}

/// A fresh, empty directory under the system temp dir (removed by whoever made it).
pub(crate) fn scratch_dir(what: &str) -> io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "otdrift-sim-opcua-{what}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
