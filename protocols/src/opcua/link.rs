//! The OPC UA session as the collector's Link. async-opcua owns the session machinery
//! (secure channel, CreateSession, ActivateSession, its event loop), so the Link sits at the
//! session level: `connect` is endpoint choice (from a discovery, or the endpoint the last one
//! chose, checked by GetEndpoints on the session's channel), the certificate pin and session
//! activation; `exchange` is one Read, Browse or BrowseNext on the session.
//!
//! Where it cannot share the exchange-level rule: a session that is lost or forgotten takes
//! its continuation points (and the walk built on them) with it, so one request cannot be sent
//! again on a new session. The link says [`Reconnect::Capture`]: a loss fails the capture, and
//! the framework runs the whole capture once more on a fresh session when the lost one was
//! pooled.

use opcua::client::Client;
use opcua::core::ResponseMessage;
use opcua::types::{
    ByteString, DateTime, EndpointDescription, GetEndpointsRequest, NodeId, RequestHeader,
    StatusCode,
};
use otdrift_config::OpcuaSecurity;

use super::DEFAULT_BATCH;
use super::convert;
use super::request::{Answer, Request, send};
use super::session::{self, Live, Pin, SessionState};
use super::wire::{busy_status, connection_lost, malformed_status, session_gone, status_error};
use crate::driver::{Dial, Failure, Link, Reconnect, Verdict};
use crate::{CollectError, ErrorKind, Scope};

/// The batch sizes in force on a session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) read: usize,
    pub(crate) browse: usize,
    pub(crate) published: bool,
}

/// What the session learnt about the server when it connected.
pub(crate) struct ServerFacts {
    pub(crate) application_uri: String,
    pub(crate) thumbprint: Option<String>,
    pub(crate) pin: Pin,
    pub(crate) mode: String,
    pub(crate) policy: String,
}

/// An open session and what it learnt of the server.
pub(crate) struct Conn {
    live: Live,
    pub(crate) server: ServerFacts,
    pub(crate) limits: Limits,
    /// Whether the server's OperationLimits were read on this session (with the first
    /// identity Read, see `server_object`).
    pub(crate) limits_known: bool,
}

/// How to reach one OPC UA server, and the client (with the agent's certificate) kept across
/// sessions.
pub(crate) struct OpcuaLink {
    pub(crate) asset: String,
    pub(crate) endpoint_url: String,
    pub(crate) security: OpcuaSecurity,
    pub(crate) security_policy: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password_file: Option<std::path::PathBuf>,
    pub(crate) pki_dir: std::path::PathBuf,
    pub(crate) client: Option<Client>,
}

impl std::fmt::Debug for OpcuaLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpcuaLink")
            .field("endpoint", &self.endpoint_url)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl OpcuaLink {
    /// Opens a session on the kept endpoint when there is one (one channel), else after
    /// discovery (a discovery channel, then the session's). When the kept endpoint does not
    /// give a session (a refused or dropped channel: a new certificate, changed policies, or
    /// a server that is down), discovery runs, so a changed server is reported exactly as
    /// discovery reports it.
    async fn open_with(
        &mut self,
        dial: &mut Dial<'_>,
        client: &mut Client,
        user: Option<(String, String)>,
    ) -> Result<Conn, CollectError> {
        let kept = session::kept_endpoint(
            &self.pki_dir,
            &self.asset,
            self.security,
            self.security_policy.as_deref(),
            user.is_some(),
        );
        if let Some(endpoint) = kept {
            match self.open_kept(dial, client, endpoint, &user).await {
                // A server that refuses or drops the kept channel may have a new certificate
                // (it cannot read an OpenSecureChannel made for the old one): discovery says
                // so properly. A server that is slow or busy is left alone.
                Err(e) if !matches!(e.kind, ErrorKind::Timeout { .. } | ErrorKind::Busy(_)) => {
                    tracing::info!(
                        error = %e,
                        "the kept endpoint did not open a session; discovering the server's endpoints"
                    );
                }
                opened => return opened,
            }
        }
        self.open_discovered(dial, client, user).await
    }

    /// Discovery on its own channel, endpoint choice, the certificate pin, then the session;
    /// the chosen endpoint is kept for the next session.
    async fn open_discovered(
        &mut self,
        dial: &mut Dial<'_>,
        client: &mut Client,
        user: Option<(String, String)>,
    ) -> Result<Conn, CollectError> {
        dial.count(1).await;
        let discovery = tokio::time::timeout(
            dial.timeout(),
            client.get_server_endpoints_from_url(self.endpoint_url.as_str()),
        )
        .await;
        let endpoints = match discovery {
            Err(_) => return Err(dial.timeout_error("GetEndpoints (connect)", "")),
            Ok(Err(e)) => return Err(discovery_refused(dial, e.status())),
            Ok(Ok(endpoints)) => endpoints,
        };
        let (endpoint, server) = self.inspect(dial, &endpoints, user.is_some())?;
        let live = self.activate(dial, client, endpoint.clone(), &user).await?;
        if let Err(e) = session::save_endpoint(&self.pki_dir, &self.asset, &endpoint) {
            tracing::warn!(
                error = %e,
                "cannot keep the chosen endpoint; the next session discovers it again"
            );
        }
        Ok(Conn::new(live, server))
    }

    /// The session on the kept endpoint, then GetEndpoints on its own channel: the server's
    /// identity and certificate are checked exactly as after a discovery, and the kept
    /// endpoint follows what the server offers now.
    async fn open_kept(
        &mut self,
        dial: &mut Dial<'_>,
        client: &mut Client,
        kept: EndpointDescription,
        user: &Option<(String, String)>,
    ) -> Result<Conn, CollectError> {
        let live = self.activate(dial, client, kept.clone(), user).await?;
        dial.count(1).await;
        let request = GetEndpointsRequest {
            request_header: RequestHeader::new(
                &NodeId::null(),
                &DateTime::now(),
                live.session.channel().request_handle(),
            ),
            endpoint_url: self.endpoint_url.as_str().into(),
            locale_ids: None,
            profile_uris: None,
        };
        let answer = tokio::time::timeout(
            dial.timeout(),
            live.session.channel().send(request, dial.timeout()),
        )
        .await;
        let endpoints = match answer {
            Err(_) => return Err(dial.timeout_error("GetEndpoints (on the session's channel)", "")),
            Ok(Err(e)) => return Err(discovery_refused(dial, e.status())),
            Ok(Ok(ResponseMessage::GetEndpoints(answer))) => {
                let status = answer.response_header.service_result;
                if !status.is_good() {
                    return Err(discovery_refused(dial, status));
                }
                answer.endpoints.unwrap_or_default()
            }
            Ok(Ok(_)) => {
                return Err(dial.scope().malformed(
                    "GetEndpoints".to_owned(),
                    "the server answered with another service's response".to_owned(),
                ));
            }
        };
        let (endpoint, server) = self.inspect(dial, &endpoints, user.is_some())?;
        if endpoint != kept
            && let Err(e) = session::save_endpoint(&self.pki_dir, &self.asset, &endpoint)
        {
            tracing::warn!(error = %e, "cannot keep the endpoint the server offers now");
        }
        Ok(Conn::new(live, server))
    }

    /// Chooses the endpoint from what the server offers and checks its certificate against
    /// the pin. The endpoint returned carries the certificate that was checked and the
    /// configured URL (servers often advertise a host name that does not resolve from here).
    fn inspect(
        &self,
        dial: &Dial<'_>,
        endpoints: &[EndpointDescription],
        user: bool,
    ) -> Result<(EndpointDescription, ServerFacts), CollectError> {
        let mut endpoint = session::choose_endpoint(
            endpoints,
            self.security,
            self.security_policy.as_deref(),
            user,
        )
        .map_err(|reason| dial.scope().refused("GetEndpoints".to_owned(), reason))?;
        let certificate = {
            let own = endpoint
                .server_certificate
                .value
                .as_deref()
                .unwrap_or_default();
            let any = endpoints
                .iter()
                .filter_map(|e| e.server_certificate.value.as_deref())
                .find(|c| !c.is_empty())
                .unwrap_or_default();
            session::first_der(if own.is_empty() { any } else { own }).to_vec()
        };
        session::check_endpoint(&endpoint, &certificate)
            .map_err(|why| dial.scope().malformed("GetEndpoints".to_owned(), why))?;
        let pin = session::check_pin(&self.pki_dir, &self.asset, &certificate).map_err(|e| {
            dial.scope().config(format!(
                "cannot keep the pinned server certificate in {}: {e}",
                self.pki_dir.display()
            ))
        })?;
        let thumbprint = (!certificate.is_empty()).then(|| session::thumbprint(&certificate));
        match &pin {
            Pin::FirstUse => tracing::info!(
                thumbprint = thumbprint.as_deref().unwrap_or(""),
                "pinned the server certificate on first use"
            ),
            Pin::Changed { pinned, rejected } => {
                tracing::warn!(
                    pinned = %pinned,
                    presented = thumbprint.as_deref().unwrap_or(""),
                    saved = %rejected.display(),
                    pin = %session::pin_path(&self.pki_dir, &self.asset).display(),
                    "the server presents a different certificate than the pinned one; \
                     if the change is intended, approve the identity drift and delete the pin file"
                );
                if user {
                    return Err(dial.scope().refused(
                        "CreateSession".to_owned(),
                        format!(
                            "the server certificate changed (pinned {pinned}, presented {}); \
                             otdrift does not send the password to an unpinned certificate; if \
                             the change is intended, delete {}",
                            thumbprint.as_deref().unwrap_or("?"),
                            session::pin_path(&self.pki_dir, &self.asset).display()
                        ),
                    ));
                }
            }
            Pin::Matches | Pin::NoCertificate => {}
        }
        let facts = ServerFacts {
            application_uri: endpoint.server.application_uri.as_ref().to_owned(),
            thumbprint,
            pin,
            mode: endpoint.security_mode.to_string(),
            policy: endpoint
                .security_policy_uri
                .as_ref()
                .rsplit('#')
                .next()
                .unwrap_or_default()
                .to_owned(),
        };
        endpoint.endpoint_url = self.endpoint_url.as_str().into();
        if !certificate.is_empty()
            && endpoint
                .server_certificate
                .value
                .as_deref()
                .unwrap_or_default()
                .is_empty()
        {
            endpoint.server_certificate = ByteString::from(certificate);
        }
        Ok((endpoint, facts))
    }

    /// CreateSession and ActivateSession on `endpoint`, then async-opcua's keep-alive Read.
    async fn activate(
        &self,
        dial: &mut Dial<'_>,
        client: &mut Client,
        endpoint: EndpointDescription,
        user: &Option<(String, String)>,
    ) -> Result<Live, CollectError> {
        let identity = session::identity(user.as_ref().map(|(n, p)| (n.as_str(), p.as_str())));
        // Hello and OpenSecureChannel are the channel's, not requests of the session.
        dial.count(2).await; // CreateSession, ActivateSession
        let live = Live::start(client, endpoint, identity).map_err(|status| {
            dial.scope()
                .refused("CreateSession".to_owned(), convert::status_text(status))
        })?;
        let mut watch = live.state.clone();
        let up = tokio::time::timeout(dial.timeout(), async {
            watch
                .wait_for(|l| !matches!(l, SessionState::Connecting))
                .await
                .map(|state| *state)
        })
        .await;
        let state = match up {
            Err(_) => return Err(dial.timeout_error("CreateSession/ActivateSession", "")),
            Ok(Err(_)) => SessionState::Down(StatusCode::BadConnectionClosed),
            Ok(Ok(state)) => state,
        };
        if let SessionState::Down(status) = state {
            return Err(session_refused(dial.scope(), status));
        }
        // async-opcua reads ServerStatus/State once right after connecting; wait for it so
        // the session's traffic is the same every time (and counted).
        let mut alive = live.keep_alives.clone();
        if tokio::time::timeout(dial.timeout(), alive.wait_for(|n| *n >= 1))
            .await
            .is_err()
        {
            return Err(dial.timeout_error("Read of ServerStatus/State (keep-alive)", ""));
        }
        dial.count(1).await;
        Ok(live)
    }
}

impl Conn {
    fn new(live: Live, server: ServerFacts) -> Conn {
        tracing::debug!(mode = %server.mode, policy = %server.policy, "session open");
        Conn {
            live,
            server,
            limits: Limits {
                read: DEFAULT_BATCH,
                browse: DEFAULT_BATCH,
                published: false,
            },
            limits_known: false,
        }
    }
}

impl Link for OpcuaLink {
    type Conn = Conn;
    type Request = Request;
    /// The server's answer, or the status it refused the whole service with.
    type Answer = Result<Answer, StatusCode>;
    const RECONNECT: Reconnect = Reconnect::Capture;

    /// Opens a session: endpoint choice, certificate pin, session activation (`open_with`).
    async fn connect(&mut self, dial: &mut Dial<'_>) -> Result<Conn, CollectError> {
        let user = match (&self.username, &self.password_file) {
            (Some(name), Some(file)) => {
                let password = session::read_password(file).map_err(|e| dial.scope().config(e))?;
                Some((name.clone(), password))
            }
            _ => None,
        };
        let mut client = match self.client.take() {
            Some(client) => client,
            None => {
                let (pki, timeout) = (self.pki_dir.clone(), dial.timeout());
                tokio::task::spawn_blocking(move || session::make_client(&pki, timeout))
                    .await
                    .map_err(|e| {
                        dial.scope()
                            .config(format!("cannot make the OPC UA client: {e}"))
                    })?
                    .map_err(|e| dial.scope().config(e))?
            }
        };
        let opened = self.open_with(dial, &mut client, user).await;
        self.client = Some(client);
        opened
    }

    async fn exchange(&self, conn: &mut Conn, request: &Request) -> Result<Self::Answer, Failure> {
        Ok(send(&conn.live.session, request)
            .await
            .map_err(|e| e.status()))
    }

    fn describe(&self, request: &Request) -> String {
        request.describe()
    }

    fn size(&self, answer: &Self::Answer) -> usize {
        answer.as_ref().map_or(1, Answer::size)
    }

    /// A timeout status or an undecodable answer drops the session (a late or misaligned
    /// answer must never be taken for another); a lost connection or a forgotten session is
    /// stale. Everything else is the caller's to judge on a session that stays.
    fn judge(&self, answer: &Self::Answer) -> Verdict {
        match answer {
            Ok(_) => Verdict::Keep,
            Err(status) if connection_lost(*status) || session_gone(*status) => Verdict::Stale,
            Err(StatusCode::BadTimeout | StatusCode::BadRequestTimeout) => Verdict::Close,
            Err(status) if malformed_status(*status) => Verdict::Close,
            Err(_) => Verdict::Keep,
        }
    }

    fn usable(&self, conn: &Conn) -> bool {
        conn.live.is_up()
    }

    fn gone(&self) -> std::io::Error {
        status_error(StatusCode::BadConnectionClosed)
    }

    async fn close(&self, conn: Conn) {
        let _ = conn.live.session.disconnect().await;
    }
}

/// Why GetEndpoints failed, as the capture's error.
fn discovery_refused(dial: &Dial<'_>, status: StatusCode) -> CollectError {
    let scope = dial.scope();
    let reason = convert::status_text(status);
    if connection_lost(status) || status == StatusCode::BadTcpEndpointUrlInvalid {
        return scope.connect(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("no OPC UA answer ({reason})"),
        ));
    }
    if status == StatusCode::BadTimeout {
        return dial.timeout_error("GetEndpoints (connect)", "");
    }
    if busy_status(status) {
        return scope.busy(
            "GetEndpoints".to_owned(),
            format!("server answered {reason}"),
        );
    }
    if malformed_status(status) {
        return scope.malformed("GetEndpoints".to_owned(), reason);
    }
    scope.refused(
        "GetEndpoints".to_owned(),
        format!("server answered {reason}"),
    )
}

/// Why a session could not be created or activated, as the capture's error.
fn session_refused(scope: &Scope, status: StatusCode) -> CollectError {
    let request = "CreateSession/ActivateSession".to_owned();
    let reason = convert::status_text(status);
    if connection_lost(status) {
        return scope.connect(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            reason,
        ));
    }
    if busy_status(status) {
        return scope.busy(request, format!("server answered {reason}"));
    }
    let hint = match status {
        StatusCode::BadIdentityTokenRejected
        | StatusCode::BadIdentityTokenInvalid
        | StatusCode::BadUserAccessDenied => {
            "; check the user name and password file, and that the user may log in"
        }
        StatusCode::BadCertificateUntrusted
        | StatusCode::BadSecurityChecksFailed
        | StatusCode::BadCertificateInvalid => {
            "; trust the agent's certificate on the server (see the PKI folder's own/cert.der)"
        }
        _ => "",
    };
    scope.refused(request, format!("{reason}{hint}"))
}
