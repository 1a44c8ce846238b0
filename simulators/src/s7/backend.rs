//! snap7's own S7 server (the C++ library vendored by `rust-snap7`), holding the DBs.
//!
//! The server binds 127.0.0.1 on a port of its own; only the simulator's front (see
//! `proxy.rs`) talks to it. snap7 keeps raw pointers to the DB buffers registered with it, so
//! the buffers live here, are never reallocated while registered, and are unregistered before
//! they are freed. Every access to snap7 (an exchange on a front connection, a DB change, a
//! tick) happens under the one mutex around [`Backend`], so snap7's worker threads never read
//! a buffer while it changes or disappears.

use std::{
    collections::BTreeMap,
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

use rust_snap7::{AreaCode, InternalParam, InternalParamValue, S7Server, TSrvEvent};

/// snap7's server event codes (`s7_types.h`).
const EVENTS: [(u32, &str); 20] = [
    (0x0000_0001, "server_started"),
    (0x0000_0002, "server_stopped"),
    (0x0000_0004, "listener_cannot_start"),
    (0x0000_0008, "client_added"),
    (0x0000_0010, "client_rejected"),
    (0x0000_0020, "client_no_room"),
    (0x0000_0040, "client_exception"),
    (0x0000_0080, "client_disconnected"),
    (0x0000_0100, "client_terminated"),
    (0x0000_0200, "clients_dropped"),
    (0x0001_0000, "pdu_incoming"),
    (0x0002_0000, "data_read"),
    (0x0004_0000, "data_write"),
    (0x0008_0000, "negotiate_pdu"),
    (0x0010_0000, "read_szl"),
    (0x0020_0000, "clock"),
    (0x0040_0000, "upload"),
    (0x0080_0000, "download"),
    (0x0100_0000, "directory"),
    (0x0400_0000, "control"),
];
const EVC_SECURITY: u32 = 0x0200_0000;
const EVC_DATA_WRITE: u32 = 0x0004_0000;
const EVC_CLOCK: u32 = 0x0020_0000;
const EVC_UPLOAD: u32 = 0x0040_0000;
const EVC_DOWNLOAD: u32 = 0x0080_0000;
const EVC_CONTROL: u32 = 0x0400_0000;
/// snap7 reports a refused download under the upload event code with this result.
const EVR_CANNOT_DOWNLOAD: u16 = 0x000F;
/// Subcode of a clock event that sets the clock.
const EVS_SET_CLOCK: u16 = 0x0002;

/// How long the front waits for snap7's answer before giving up on the exchange.
pub(crate) const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);

fn snap7_error(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("snap7 server: {what}: {e}"))
}

/// snap7's server and the DB memory it serves.
pub(crate) struct Backend {
    /// Declared first: dropped (destroyed) before the buffers it points into.
    server: S7Server,
    buffers: BTreeMap<u16, Box<[u8]>>,
    port: u16,
    events: BTreeMap<&'static str, usize>,
    event_writes: usize,
}

impl Backend {
    /// Starts snap7's server on 127.0.0.1 with `dbs` registered.
    pub(crate) fn start(dbs: BTreeMap<u16, Vec<u8>>, running: bool) -> io::Result<Backend> {
        let server = S7Server::create();
        let mut backend = Backend {
            server,
            buffers: BTreeMap::new(),
            port: 0,
            events: BTreeMap::new(),
            event_writes: 0,
        };
        for (number, bytes) in dbs {
            backend.add_db(number, bytes)?;
        }
        backend.set_running(running);
        // snap7 binds the port it is given and cannot report an OS-chosen one: take a port
        // the OS just handed out, and try again if someone else took it meanwhile.
        let mut last = io::Error::other("no attempt made");
        for _ in 0..8 {
            let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
                .local_addr()?
                .port();
            if let Err(e) = backend
                .server
                .set_param(InternalParam::LocalPort, InternalParamValue::U16(port))
            {
                return Err(snap7_error("set port", e));
            }
            match backend.server.start_to("127.0.0.1") {
                Ok(()) => {
                    backend.port = port;
                    return Ok(backend);
                }
                Err(e) => last = snap7_error("start", e),
            }
        }
        Err(last)
    }

    /// Where snap7 listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The bytes of DB `number`.
    pub(crate) fn db(&self, number: u16) -> Option<&[u8]> {
        self.buffers.get(&number).map(|b| &b[..])
    }

    /// The bytes of DB `number`, to change in place (size fixed).
    pub(crate) fn db_mut(&mut self, number: u16) -> Option<&mut [u8]> {
        self.buffers.get_mut(&number).map(|b| &mut b[..])
    }

    /// Registers a DB with snap7.
    pub(crate) fn add_db(&mut self, number: u16, bytes: Vec<u8>) -> io::Result<()> {
        let mut buffer = bytes.into_boxed_slice();
        self.server
            .register_area(AreaCode::S7AreaDB, number, &mut buffer)
            .map_err(|e| snap7_error(&format!("register DB{number}"), e))?;
        if let Some(old) = self.buffers.insert(number, buffer) {
            // Cannot happen: snap7 refuses a number registered twice. Keep the old buffer
            // alive rather than free memory snap7 might still point at.
            std::mem::forget(old);
        }
        Ok(())
    }

    /// Unregisters a DB and frees its memory.
    pub(crate) fn remove_db(&mut self, number: u16) -> io::Result<()> {
        self.server
            .unregister_area(AreaCode::S7AreaDB, number)
            .map_err(|e| snap7_error(&format!("unregister DB{number}"), e))?;
        self.buffers.remove(&number);
        Ok(())
    }

    /// Sets the CPU status snap7 reports in SZL 0x0424 (RUN 0x08 / STOP 0x04).
    pub(crate) fn set_running(&self, running: bool) {
        let _ = self
            .server
            .set_cpu_status(if running { 0x08 } else { 0x04 });
    }

    /// Takes snap7's queued events into the counters.
    pub(crate) fn drain_events(&mut self) {
        for _ in 0..4096 {
            let mut event = TSrvEvent::default();
            let mut ready = 0;
            if self.server.pick_event(&mut event, &mut ready).is_err() || ready == 0 {
                break;
            }
            let code = event.EvtCode;
            let ret = event.EvtRetCode;
            let param1 = event.EvtParam1;
            let name = EVENTS.iter().find(|(c, _)| *c == code).map_or(
                if code == EVC_SECURITY {
                    "security"
                } else {
                    "other"
                },
                |(_, n)| n,
            );
            *self.events.entry(name).or_insert(0) += 1;
            let write = matches!(
                code,
                EVC_DATA_WRITE | EVC_DOWNLOAD | EVC_CONTROL | EVC_SECURITY
            ) || (code == EVC_UPLOAD && ret == EVR_CANNOT_DOWNLOAD)
                || (code == EVC_CLOCK && param1 == EVS_SET_CLOCK);
            if write {
                self.event_writes += 1;
            }
        }
    }

    /// snap7's events so far, by name.
    pub(crate) fn events(&self) -> &BTreeMap<&'static str, usize> {
        &self.events
    }

    /// How many of snap7's events were state-changing (data write, download, control,
    /// security, set clock).
    pub(crate) fn event_writes(&self) -> usize {
        self.event_writes
    }

    /// Forgets the event counters.
    pub(crate) fn clear_events(&mut self) {
        self.events.clear();
        self.event_writes = 0;
    }

    /// Sends one TPKT frame to snap7 on `stream` and returns snap7's answer frame (TPKT
    /// included). Called with the backend locked.
    pub(crate) fn exchange(&mut self, stream: &mut TcpStream, frame: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(frame)?;
        let answer = read_frame(stream);
        self.drain_events();
        answer
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.server.stop();
    }
}

/// Reads one TPKT frame (header included), bounded.
pub(crate) fn read_frame(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header[0] != 3 || !(7..=8192).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("snap7 sent a bad TPKT header {header:?}"),
        ));
    }
    let mut frame = vec![0u8; len];
    frame[..4].copy_from_slice(&header);
    stream.read_exact(&mut frame[4..])?;
    Ok(frame)
}

/// Opens a connection to snap7 for one front connection.
pub(crate) fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, BACKEND_TIMEOUT)?;
    stream.set_read_timeout(Some(BACKEND_TIMEOUT))?;
    stream.set_write_timeout(Some(BACKEND_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
