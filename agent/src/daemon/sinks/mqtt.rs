//! The MQTT sink (rumqttc, MQTT 3.1.1): each event as a structured CloudEvent on
//! `<prefix>/<agent>/<asset>/<event type>` (`_agent` for events about the agent itself), QoS 1,
//! in order; after each batch a retained `<prefix>/<agent>/<asset>/status` per asset it
//! concerned; the agent's availability retained on `<prefix>/<agent>/status`, `online: false`
//! as the last will.
//!
//! A batch counts as delivered when the broker acknowledged every publish of it (PUBACK).
//! The session is persistent (`clean_session = false`, a fixed client id). On any error the
//! connection and the client's state are dropped and the batch goes again on a new one, so
//! acknowledgements of one connection are never counted for another.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use otdrift_config::{SinkConfig, SinkKind};
use otdrift_core::format_timestamp;
use otdrift_store::OutboxEvent;
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use serde_json::json;
use tokio::sync::mpsc;

use super::{Sink, SinkContext, SinkError};
use crate::daemon::db::Db;

/// What the connection's event loop reports.
enum Note {
    Connected,
    Published(u16),
    Acked(u16),
    Failed(String),
}

/// A live connection: the client, and the task that drives its event loop (and answers the
/// broker's keep-alive while the sink is idle).
struct Conn {
    client: AsyncClient,
    notes: mpsc::UnboundedReceiver<Note>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) struct Mqtt {
    options: MqttOptions,
    prefix: String,
    agent: String,
    db: Db,
    capacity: usize,
    conn: Option<Conn>,
}

impl Mqtt {
    pub(super) fn new(cfg: &SinkConfig, cx: &SinkContext) -> Result<Self, SinkError> {
        let SinkKind::Mqtt {
            tls,
            username,
            password_file,
            topic_prefix,
        } = &cfg.kind
        else {
            return Err(SinkError::Setup("not an MQTT sink".into()));
        };
        let client_id = format!("otdrift-{}-{}", cx.agent_id, cfg.name);
        let mut options = MqttOptions::new(client_id, cfg.host.clone(), cfg.port);
        options.set_clean_session(false);
        options.set_keep_alive(Duration::from_secs(30));
        // Events are bounded by max_event_bytes (at most 16 MiB); the broker sends us little.
        options.set_max_packet_size(64 * 1024, 17 * 1024 * 1024);
        options.set_last_will(LastWill::new(
            format!("{topic_prefix}/{}/status", cx.agent_id),
            json!({"agent": cx.agent_id, "online": false}).to_string(),
            QoS::AtLeastOnce,
            true,
        ));
        if *tls {
            let config = crate::daemon::tls::client_config(
                cfg.ca_file.as_deref(),
                cfg.client_cert.as_ref(),
            )?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        if let Some(user) = username {
            let password = match password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| {
                        SinkError::Setup(format!("password_file {}: {e}", path.display()))
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                None => String::new(),
            };
            options.set_credentials(user.clone(), password);
        }
        Ok(Self {
            options,
            prefix: topic_prefix.clone(),
            agent: cx.agent_id.clone(),
            db: cx.db.clone(),
            capacity: cfg.batch_size.saturating_mul(2).saturating_add(16),
            conn: None,
        })
    }

    /// The topic of an event: `<prefix>/<agent>/<asset or _agent>/<event type>`.
    pub(super) fn topic(&self, e: &OutboxEvent) -> String {
        format!(
            "{}/{}/{}/{}",
            self.prefix,
            self.agent,
            e.asset
                .as_deref()
                .map_or_else(|| "_agent".to_owned(), topic_level),
            topic_level(&e.event_type)
        )
    }

    /// A connection, made (and the agent announced online) if there is none.
    async fn connect(&mut self) -> Result<(), SinkError> {
        if let Some(conn) = &mut self.conn {
            // A connection that failed while idle is replaced.
            loop {
                match conn.notes.try_recv() {
                    Ok(Note::Failed(_)) | Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.conn = None;
                        break;
                    }
                    Ok(_) => {}
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
        }
        if self.conn.is_some() {
            return Ok(());
        }
        let (client, eventloop) = AsyncClient::new(self.options.clone(), self.capacity);
        let (tx, notes) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(eventloop, tx));
        let mut conn = Conn {
            client,
            notes,
            task,
        };
        loop {
            match conn.notes.recv().await {
                Some(Note::Connected) => break,
                Some(Note::Failed(e)) => return Err(SinkError::Connection(e)),
                None => return Err(SinkError::Connection("the MQTT connection ended".into())),
                Some(_) => {}
            }
        }
        let online = json!({
            "agent": self.agent,
            "online": true,
            "since": format_timestamp(chrono::Utc::now()),
        });
        publish(
            &conn.client,
            format!("{}/{}/status", self.prefix, self.agent),
            true,
            online.to_string(),
        )
        .await?;
        confirm(&mut conn.notes, 1).await?;
        self.conn = Some(conn);
        Ok(())
    }

    /// The retained status of each asset: what a dashboard subscribing late needs.
    async fn statuses(&self, assets: BTreeSet<String>) -> Vec<(String, String)> {
        let prefix = format!("{}/{}", self.prefix, self.agent);
        self.db
            .read(move |s| {
                let mut out = Vec::new();
                for id in assets {
                    let row = s.asset(&id)?;
                    let baseline = s.current_baseline(&id)?;
                    let open = s.open_drift_count(&id)?;
                    let doc = json!({
                        "asset": id,
                        "reachable": row.as_ref().and_then(|r| r.reachable),
                        "last_capture": row.as_ref().and_then(|r| r.last_capture).map(format_timestamp),
                        "collection_failing_since": row.as_ref().and_then(|r| r.failing_since).map(format_timestamp),
                        "open_drift": open,
                        "baseline": baseline.as_ref().map(|b| json!({
                            "digest": b.digest,
                            "provisional": b.provisional,
                            "set_at": format_timestamp(b.set_at),
                        })),
                        "state": if open > 0 {
                            "drift"
                        } else if row.as_ref().and_then(|r| r.reachable) == Some(false) {
                            "unreachable"
                        } else if row.as_ref().is_some_and(|r| r.failing_since.is_some()) {
                            "collection_failing"
                        } else if baseline.is_some() {
                            "matches"
                        } else {
                            "unknown"
                        },
                    });
                    out.push((format!("{prefix}/{}/status", topic_level(&id)), doc.to_string()));
                }
                Ok(out)
            })
            .await
            .unwrap_or_default()
    }
}

/// One topic level: no `/`, `+`, `#` or NUL (asset ids cannot hold them; this is a guard).
fn topic_level(s: &str) -> String {
    s.replace(['/', '+', '#', '\0'], "_")
}

async fn publish(
    client: &AsyncClient,
    topic: String,
    retain: bool,
    payload: String,
) -> Result<(), SinkError> {
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .map_err(|e| SinkError::Connection(format!("publish: {e}")))
}

/// Waits until `n` publishes were sent and each acknowledged.
async fn confirm(notes: &mut mpsc::UnboundedReceiver<Note>, n: usize) -> Result<(), SinkError> {
    let mut sent = 0usize;
    let mut open: HashSet<u16> = HashSet::new();
    let mut early: HashSet<u16> = HashSet::new();
    while sent < n || !open.is_empty() {
        match notes.recv().await {
            Some(Note::Published(pkid)) => {
                sent += 1;
                if !early.remove(&pkid) {
                    open.insert(pkid);
                }
            }
            Some(Note::Acked(pkid)) => {
                if !open.remove(&pkid) {
                    early.insert(pkid);
                }
            }
            Some(Note::Connected) => {}
            Some(Note::Failed(e)) => return Err(SinkError::Connection(e)),
            None => return Err(SinkError::Connection("the MQTT connection ended".into())),
        }
    }
    Ok(())
}

/// Drives the event loop until its first error (then the connection is dropped whole).
async fn drive(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Note>) {
    loop {
        let note = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ack.code == rumqttc::ConnectReturnCode::Success {
                    Note::Connected
                } else {
                    Note::Failed(format!("the broker refused the connection: {:?}", ack.code))
                }
            }
            Ok(Event::Incoming(Packet::PubAck(ack))) => Note::Acked(ack.pkid),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Note::Published(pkid),
            Ok(_) => continue,
            Err(e) => Note::Failed(format!("MQTT: {e}")),
        };
        let failed = matches!(note, Note::Failed(_));
        if tx.send(note).is_err() || failed {
            return;
        }
    }
}

impl Sink for Mqtt {
    async fn deliver(&mut self, batch: &[OutboxEvent]) -> Result<(), SinkError> {
        self.connect().await?;
        let topics: Vec<(String, String)> = batch
            .iter()
            .map(|e| {
                (
                    self.topic(e),
                    crate::events::cloud_event(&self.agent, e).to_string(),
                )
            })
            .collect();
        let assets: BTreeSet<String> = batch.iter().filter_map(|e| e.asset.clone()).collect();
        let statuses = self.statuses(assets).await;
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| SinkError::Connection("no connection".into()))?;
        let n = topics.len() + statuses.len();
        for (topic, payload) in topics {
            publish(&conn.client, topic, false, payload).await?;
        }
        for (topic, payload) in statuses {
            publish(&conn.client, topic, true, payload).await?;
        }
        confirm(&mut conn.notes, n).await
    }

    async fn reset(&mut self) {
        if let Some(conn) = self.conn.take() {
            // A clean goodbye (at shutdown): offline, retained, then DISCONNECT, which keeps
            // the broker from sending the will. After a failure this is lost, and the will
            // says the same.
            let offline = json!({"agent": self.agent, "online": false});
            let _ = conn.client.try_publish(
                format!("{}/{}/status", self.prefix, self.agent),
                QoS::AtLeastOnce,
                true,
                offline.to_string(),
            );
            let _ = conn.client.try_disconnect();
            let mut conn = conn;
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                while let Some(note) = conn.notes.recv().await {
                    if matches!(note, Note::Failed(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }
}
