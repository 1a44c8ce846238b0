//! The async-opcua session and what it needs: the agent's application certificate, endpoint choice, server certificate
//! pinning, the password file, and the async-opcua session with the task that drives it.

use std::{
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::StreamExt;
use opcua::{
    client::{Client, ClientBuilder, IdentityToken, Session, SessionPollResult},
    types::{
        BinaryDecodable, BinaryEncodable, ContextOwned, EndpointDescription, MessageSecurityMode,
        StatusCode, UserTokenType,
    },
};
use otdrift_config::OpcuaSecurity;
use sha1::{Digest, Sha1};
use tokio::{sync::watch, task::JoinHandle};

/// Security policy URIs by the names the config uses.
pub(crate) const POLICIES: [(&str, &str); 3] = [
    (
        "Aes256Sha256RsaPss",
        "http://opcfoundation.org/UA/SecurityPolicy#Aes256_Sha256_RsaPss",
    ),
    (
        "Basic256Sha256",
        "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
    ),
    (
        "Aes128Sha256RsaOaep",
        "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep",
    ),
];

const POLICY_NONE: &str = "http://opcfoundation.org/UA/SecurityPolicy#None";

/// The agent's OPC UA application URI (also in its certificate).
pub(crate) const APPLICATION_URI: &str = "urn:otdrift:agent";

fn policy_name(uri: &str) -> &str {
    POLICIES
        .iter()
        .find(|(_, u)| *u == uri)
        .map_or_else(|| uri.rsplit('#').next().unwrap_or(uri), |(name, _)| name)
}

/// Picks the endpoint to use: the configured mode; for `sign`/`sign-and-encrypt` the
/// configured policy or else the strongest supported one the server offers (highest
/// SecurityLevel, then the order of [`POLICIES`]); and a user token policy for the
/// configured identity. `Err` explains, listing what the server offers.
pub(crate) fn choose_endpoint(
    endpoints: &[EndpointDescription],
    security: OpcuaSecurity,
    policy: Option<&str>,
    user: bool,
) -> Result<EndpointDescription, String> {
    let mode = match security {
        OpcuaSecurity::None => MessageSecurityMode::None,
        OpcuaSecurity::Sign => MessageSecurityMode::Sign,
        OpcuaSecurity::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    };
    let wanted_policy = policy.and_then(|name| {
        POLICIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, uri)| *uri)
    });
    let token = if user {
        UserTokenType::UserName
    } else {
        UserTokenType::Anonymous
    };
    let offers_token = |e: &EndpointDescription| {
        e.user_identity_tokens
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|t| t.token_type == token)
    };
    let rank = |uri: &str| POLICIES.iter().position(|(_, u)| *u == uri);
    let mut candidates: Vec<&EndpointDescription> = endpoints
        .iter()
        .filter(|e| e.security_mode == mode)
        .filter(|e| {
            let uri = e.security_policy_uri.as_ref();
            match (mode, wanted_policy) {
                (MessageSecurityMode::None, _) => uri == POLICY_NONE,
                (_, Some(wanted)) => uri == wanted,
                (_, None) => rank(uri).is_some(),
            }
        })
        .collect();
    candidates.sort_by_key(|e| {
        (
            std::cmp::Reverse(e.security_level),
            rank(e.security_policy_uri.as_ref()).unwrap_or(usize::MAX),
        )
    });
    let offered = || {
        let mut list: Vec<String> = endpoints
            .iter()
            .map(|e| {
                format!(
                    "{}/{}",
                    e.security_mode,
                    policy_name(e.security_policy_uri.as_ref())
                )
            })
            .collect();
        list.sort();
        list.dedup();
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.join(", ")
        }
    };
    let Some(first) = candidates.first() else {
        return Err(format!(
            "the server offers no endpoint with security {security}{} (it offers {})",
            policy
                .map(|p| format!(" and policy {p}"))
                .unwrap_or_default(),
            offered()
        ));
    };
    match candidates.iter().find(|e| offers_token(e)) {
        Some(found) => Ok((*found).clone()),
        None => Err(format!(
            "the server's {}/{} endpoint does not accept {} logins",
            first.security_mode,
            policy_name(first.security_policy_uri.as_ref()),
            if user { "user name" } else { "anonymous" }
        )),
    }
}

/// What an endpoint must carry before a session is opened on it (`Err` says what is missing,
/// and the capture fails as malformed): an ApplicationUri, which every OPC UA application has
/// and which is the server's identity; and, for `Sign`/`SignAndEncrypt`, the server's
/// certificate, without which a secured channel cannot exist. Security none without a
/// certificate is allowed: the thumbprint is then a stable "not available".
pub(crate) fn check_endpoint(
    endpoint: &EndpointDescription,
    certificate: &[u8],
) -> Result<(), String> {
    if endpoint.security_mode != MessageSecurityMode::None && certificate.is_empty() {
        return Err(format!(
            "the server offers a {} endpoint without a certificate: a secured channel cannot \
             exist without one",
            endpoint.security_mode
        ));
    }
    if endpoint.server.application_uri.as_ref().is_empty() {
        return Err(
            "the server's endpoint has no ApplicationUri, which every OPC UA application must have"
                .to_owned(),
        );
    }
    Ok(())
}

/// The first DER element of a certificate field (servers may send the whole chain).
pub(crate) fn first_der(bytes: &[u8]) -> &[u8] {
    let parsed = (|| {
        if *bytes.first()? != 0x30 {
            return None;
        }
        let first_len = *bytes.get(1)?;
        let (header, len) = if first_len < 0x80 {
            (2usize, usize::from(first_len))
        } else {
            let n = usize::from(first_len & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | usize::from(*bytes.get(2 + i)?);
            }
            (2 + n, len)
        };
        let end = header.checked_add(len)?;
        bytes.get(..end)
    })();
    parsed.unwrap_or(bytes)
}

/// SHA-1 thumbprint, lowercase hex: what OPC UA tools (UaExpert, server web pages) show.
pub(crate) fn thumbprint(der: &[u8]) -> String {
    Sha1::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the server certificate check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pin {
    /// No pin yet: this certificate is now pinned.
    FirstUse,
    /// The pinned certificate.
    Matches,
    /// A different certificate than the pinned one (which stays pinned).
    Changed {
        /// Thumbprint of the pinned certificate.
        pinned: String,
        /// Where the presented certificate was put for the operator to inspect.
        rejected: PathBuf,
    },
    /// The server presented no certificate (security none).
    NoCertificate,
}

impl Pin {
    /// Text for the capture's runtime record.
    pub(crate) fn describe(&self) -> String {
        match self {
            Pin::FirstUse => "pinned on first use".to_owned(),
            Pin::Matches => "matches the pinned certificate".to_owned(),
            Pin::Changed { pinned, rejected } => format!(
                "CHANGED: pinned {pinned}; presented certificate saved to {}",
                rejected.display()
            ),
            Pin::NoCertificate => "no certificate presented".to_owned(),
        }
    }
}

/// The pin file of an asset.
pub(crate) fn pin_path(pki: &Path, asset: &str) -> PathBuf {
    pki.join("pinned").join(format!("{asset}.der"))
}

/// Compares `der` with the asset's pinned certificate, pinning it on first use.
pub(crate) fn check_pin(pki: &Path, asset: &str, der: &[u8]) -> io::Result<Pin> {
    if der.is_empty() {
        return Ok(Pin::NoCertificate);
    }
    let path = pin_path(pki, asset);
    match std::fs::read(&path) {
        Ok(pinned) if pinned == der => Ok(Pin::Matches),
        Ok(pinned) => {
            let presented = thumbprint(der);
            let rejected = pki
                .join("rejected")
                .join(format!("{asset}-{presented}.der"));
            if let Some(dir) = rejected.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&rejected, der)?;
            Ok(Pin::Changed {
                pinned: thumbprint(&pinned),
                rejected,
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // Write then rename: a crash never leaves half a pin behind.
            let tmp = path.with_extension("der.tmp");
            std::fs::write(&tmp, der)?;
            std::fs::rename(&tmp, &path)?;
            Ok(Pin::FirstUse)
        }
        Err(e) => Err(e),
    }
}

/// The endpoint file of an asset: the endpoint description its last discovery chose, in OPC
/// UA's own binary encoding, as the server sent it.
pub(crate) fn endpoint_path(pki: &Path, asset: &str) -> PathBuf {
    pki.join("pinned").join(format!("{asset}.endpoint"))
}

/// Largest endpoint file read back (one description with a certificate chain is a few KiB).
const MAX_ENDPOINT_FILE: u64 = 256 * 1024;

/// Keeps the endpoint a discovery chose, so that the next session opens on one channel
/// (Hello, OpenSecureChannel and GetEndpoints of a separate discovery channel saved). Written
/// only when it differs from the file (gateways run on flash), by write-then-rename.
pub(crate) fn save_endpoint(
    pki: &Path,
    asset: &str,
    endpoint: &EndpointDescription,
) -> io::Result<()> {
    let bytes = endpoint.encode_to_vec(&ContextOwned::default().context());
    let path = endpoint_path(pki, asset);
    if std::fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("endpoint.tmp");
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, &path)
}

/// The endpoint to open a session on directly, without a discovery channel: the kept one,
/// when it still fits the configuration (the same choice [`choose_endpoint`] would make from
/// it) and carries exactly the pinned certificate (so deleting a pin to accept a new
/// certificate also forgets the endpoint). Never for a user name over security none: the
/// password would reach the server before its certificate is checked against the pin (over
/// a secured channel it is encrypted for the pinned certificate only). `None` means discover.
pub(crate) fn kept_endpoint(
    pki: &Path,
    asset: &str,
    security: OpcuaSecurity,
    policy: Option<&str>,
    user: bool,
) -> Option<EndpointDescription> {
    if user && security == OpcuaSecurity::None {
        return None;
    }
    let path = endpoint_path(pki, asset);
    let file = std::fs::File::open(&path).ok()?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_ENDPOINT_FILE + 1),
        &mut bytes,
    )
    .ok()?;
    if bytes.len() as u64 > MAX_ENDPOINT_FILE {
        return None;
    }
    let endpoint =
        EndpointDescription::decode(&mut bytes.as_slice(), &ContextOwned::default().context())
            .ok()?;
    let chosen = choose_endpoint(std::slice::from_ref(&endpoint), security, policy, user).ok()?;
    let certificate = first_der(
        chosen
            .server_certificate
            .value
            .as_deref()
            .unwrap_or_default(),
    );
    let pinned = std::fs::read(pin_path(pki, asset)).unwrap_or_default();
    (certificate == pinned.as_slice()).then_some(chosen)
}

/// Reads a password file: refused when group or others may read it; one trailing newline
/// is not part of the password.
pub(crate) fn read_password(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read password file {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "password file {} is readable by group or others (mode {mode:04o}); run chmod 600 on it",
                path.display()
            ));
        }
    }
    if !meta.is_file() {
        return Err(format!("password file {} is not a file", path.display()));
    }
    if meta.len() > 4096 {
        return Err(format!(
            "password file {} is larger than 4096 bytes",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read password file {}: {e}", path.display()))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if text.is_empty() {
        return Err(format!("password file {} is empty", path.display()));
    }
    Ok(text.to_owned())
}

/// Makes the async-opcua client: the agent's application certificate is made in the PKI
/// folder on first use (RSA 2048; the private key mode 0600). No automatic reconnection and
/// no keep-alive traffic beyond the one read async-opcua sends right after connecting: the
/// collector reconnects itself, once, when it needs to.
pub(crate) fn make_client(pki: &Path, timeout: Duration) -> Result<Client, String> {
    // Two collectors making the same certificate at once would interleave the files.
    static MAKING: Mutex<()> = Mutex::new(());
    let _guard = MAKING.lock().unwrap_or_else(PoisonError::into_inner);
    std::fs::create_dir_all(pki)
        .map_err(|e| format!("cannot create the PKI folder {}: {e}", pki.display()))?;
    let client = ClientBuilder::new()
        .application_name("otdrift")
        .application_uri(APPLICATION_URI)
        .product_uri("urn:otdrift")
        .create_sample_keypair(true)
        .pki_dir(pki)
        // Trust is otdrift's pin (see `check_pin`), checked before a session is opened.
        .trust_server_certs(true)
        .verify_server_certs(false)
        .session_retry_limit(0)
        .keep_alive_interval(Duration::from_secs(24 * 3600))
        .max_failed_keep_alive_count(0)
        .request_timeout(timeout)
        .session_timeout(15 * 60 * 1000)
        .session_name("otdrift")
        .max_message_size(super::MAX_MESSAGE_SIZE)
        .max_chunk_count(super::MAX_CHUNK_COUNT)
        .max_array_length(super::MAX_ARRAY_LEN)
        // Strings and byte strings are bounded by the message size: async-opcua reports a
        // string over its own limit as BadDecodingError, which cannot be told from garbage;
        // the message limits report BadResponseTooLarge / BadEncodingLimitsExceeded, which
        // are bounds, and the collector bounds each value after decoding.
        .max_string_length(super::MAX_MESSAGE_SIZE)
        .max_byte_string_length(super::MAX_MESSAGE_SIZE)
        .client()
        .map_err(|errors| format!("invalid OPC UA client settings: {}", errors.join("; ")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let private = pki.join("private");
        let _ = std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&private) {
            for entry in entries.flatten() {
                let _ =
                    std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    Ok(client)
}

/// The identity the session logs in with.
pub(crate) fn identity(user: Option<(&str, &str)>) -> IdentityToken {
    match user {
        Some((name, password)) => IdentityToken::new_user_name(name, password),
        None => IdentityToken::Anonymous,
    }
}

/// The state of the driven session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// Connecting (secure channel, CreateSession, ActivateSession).
    Connecting,
    /// Connected.
    Up,
    /// Connecting failed or the connection ended, with async-opcua's reason.
    Down(StatusCode),
}

/// A live session and the task that drives its event loop. Dropping it closes the
/// connection.
pub(crate) struct Live {
    pub(crate) session: Arc<Session>,
    pub(crate) state: watch::Receiver<SessionState>,
    /// Keep-alive reads async-opcua has completed on this session.
    pub(crate) keep_alives: watch::Receiver<u32>,
    driver: JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Live {
    /// Starts connecting to `endpoint` (whose URL is already the configured one).
    pub(crate) fn start(
        client: &mut Client,
        endpoint: EndpointDescription,
        identity: IdentityToken,
    ) -> Result<Live, StatusCode> {
        let (session, event_loop) = client
            .connect_to_endpoint_directly(endpoint, identity)
            .map_err(|e| e.status())?;
        session.disable_reconnects();
        let (state_tx, state) = watch::channel(SessionState::Connecting);
        let (alive_tx, keep_alives) = watch::channel(0u32);
        let driver = tokio::spawn(async move {
            let stream = event_loop.enter();
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(SessionPollResult::Reconnected(_)) => {
                        state_tx.send_replace(SessionState::Up);
                    }
                    Ok(SessionPollResult::SessionActivity(_)) => {
                        alive_tx.send_modify(|n| *n = n.saturating_add(1));
                    }
                    Ok(SessionPollResult::ConnectionLost(status)) => {
                        state_tx.send_replace(SessionState::Down(status));
                    }
                    Ok(_) => {}
                    Err(status) => {
                        state_tx.send_replace(SessionState::Down(status));
                        break;
                    }
                }
            }
            state_tx.send_if_modified(|state| {
                if matches!(state, SessionState::Down(_)) {
                    false
                } else {
                    *state = SessionState::Down(StatusCode::BadConnectionClosed);
                    true
                }
            });
        });
        Ok(Live {
            session,
            state,
            keep_alives,
            driver,
        })
    }

    /// Whether the connection is still up.
    pub(crate) fn is_up(&self) -> bool {
        matches!(*self.state.borrow(), SessionState::Up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_carry_what_every_server_has() {
        use opcua::types::{EndpointDescription, MessageSecurityMode};
        let mut endpoint = EndpointDescription::default();
        endpoint.server.application_uri = "urn:plc".into();
        endpoint.security_mode = MessageSecurityMode::None;
        // Security none without a certificate: allowed (the thumbprint is "not available").
        assert_eq!(check_endpoint(&endpoint, &[]), Ok(()));
        endpoint.security_mode = MessageSecurityMode::SignAndEncrypt;
        let refused = check_endpoint(&endpoint, &[]).expect_err("no certificate");
        assert!(refused.contains("without a certificate"), "{refused}");
        assert_eq!(check_endpoint(&endpoint, &[0x30, 0x00]), Ok(()));
        endpoint.server.application_uri = "".into();
        let refused = check_endpoint(&endpoint, &[0x30, 0x00]).expect_err("no URI");
        assert!(refused.contains("ApplicationUri"), "{refused}");
    }

    #[test]
    fn certificates_are_cut_to_the_first_element_and_hashed() {
        let cert = [0x30, 0x03, 0x02, 0x01, 0x05];
        let mut chain = cert.to_vec();
        chain.extend_from_slice(&[0x30, 0x00]);
        assert_eq!(first_der(&chain), &cert);
        assert_eq!(first_der(&[0x30, 0x82, 0xff]), &[0x30, 0x82, 0xff]);
        assert_eq!(first_der(&[]), &[] as &[u8]);
        assert_eq!(
            thumbprint(b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }

    #[test]
    fn pins_are_kept_per_asset_and_changes_reported() {
        let dir = std::env::temp_dir().join(format!("otdrift-pin-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let check = |asset: &str, der: &[u8]| check_pin(&dir, asset, der).expect("pin store");
        assert_eq!(check("a", b"one"), Pin::FirstUse);
        assert_eq!(check("a", b"one"), Pin::Matches);
        assert_eq!(check("b", b"two"), Pin::FirstUse);
        match check("a", b"two") {
            Pin::Changed { pinned, rejected } => {
                assert_eq!(pinned, thumbprint(b"one"));
                assert_eq!(std::fs::read(&rejected).expect("saved"), b"two");
            }
            other => panic!("expected a change, got {other:?}"),
        }
        // The pin stays: a changed certificate is never trusted silently.
        assert_eq!(check("a", b"one"), Pin::Matches);
        assert_eq!(check("a", b""), Pin::NoCertificate);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_kept_endpoint_is_used_only_while_it_fits_the_config_and_the_pin() {
        use opcua::types::{ByteString, UAString, UserTokenPolicy};
        let dir = std::env::temp_dir().join(format!("otdrift-kept-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut endpoint = EndpointDescription::default();
        endpoint.server.application_uri = "urn:plc".into();
        endpoint.security_mode = MessageSecurityMode::SignAndEncrypt;
        endpoint.security_policy_uri = POLICIES[1].1.into();
        endpoint.server_certificate = ByteString::from(vec![0x30, 0x03, 0x02, 0x01, 0x05]);
        endpoint.user_identity_tokens = Some(
            [UserTokenType::Anonymous, UserTokenType::UserName]
                .map(|token_type| UserTokenPolicy {
                    policy_id: UAString::from(format!("{token_type:?}")),
                    token_type,
                    ..Default::default()
                })
                .to_vec(),
        );
        let kept = |security, policy: Option<&str>, user| {
            kept_endpoint(&dir, "a", security, policy, user).is_some()
        };
        // Nothing kept yet; kept but its certificate not pinned: discover.
        assert!(!kept(OpcuaSecurity::SignAndEncrypt, None, false));
        save_endpoint(&dir, "a", &endpoint).expect("save");
        assert!(!kept(OpcuaSecurity::SignAndEncrypt, None, false));
        assert_eq!(
            check_pin(&dir, "a", &[0x30, 0x03, 0x02, 0x01, 0x05]).ok(),
            Some(Pin::FirstUse)
        );
        assert!(kept(OpcuaSecurity::SignAndEncrypt, None, false));
        assert!(kept(
            OpcuaSecurity::SignAndEncrypt,
            Some("Basic256Sha256"),
            true
        ));
        // Another mode or policy than configured: discover.
        assert!(!kept(OpcuaSecurity::Sign, None, false));
        assert!(!kept(
            OpcuaSecurity::SignAndEncrypt,
            Some("Aes256Sha256RsaPss"),
            false
        ));
        // The pin deleted to accept a new certificate: the endpoint is forgotten with it.
        std::fs::remove_file(pin_path(&dir, "a")).expect("unpin");
        assert!(!kept(OpcuaSecurity::SignAndEncrypt, None, false));
        // Security none: anonymous only (a password would precede the pin check).
        endpoint.security_mode = MessageSecurityMode::None;
        endpoint.security_policy_uri = POLICY_NONE.into();
        endpoint.server_certificate = ByteString::null();
        save_endpoint(&dir, "a", &endpoint).expect("save");
        assert!(kept(OpcuaSecurity::None, None, false));
        assert!(!kept(OpcuaSecurity::None, None, true));
        // A file that is not an endpoint: discover.
        std::fs::write(endpoint_path(&dir, "a"), b"garbage").expect("write");
        assert!(!kept(OpcuaSecurity::None, None, false));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn password_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("otdrift-pw-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let refused = read_password(&file).expect_err("world readable");
        assert!(refused.contains("chmod 600"), "{refused}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(read_password(&file).as_deref(), Ok("s3cret"));
        std::fs::write(&file, "").expect("write");
        assert!(read_password(&file).is_err());
        assert!(read_password(&dir.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
