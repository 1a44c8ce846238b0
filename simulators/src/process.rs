//! What every `otdrift sim <protocol>` process does once its simulator has started: open the
//! request-log file, bind the control port, print the ready lines, serve commands from stdin
//! and the control port, and stop on Ctrl-C or SIGTERM. One implementation for all simulators,
//! so that the test rigs and the end-to-end tests can rely on the same behaviour from each.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::control;
use crate::runtime::{Commands, StateError};

/// The options of every `otdrift sim <protocol>` command.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where to serve the protocol (bound exactly as given, e.g. `127.0.0.1:5020`).
    pub listen: SocketAddr,
    /// State file; `None` serves the protocol's built-in demo device.
    pub state: Option<PathBuf>,
    /// Append every request as JSON lines to this file.
    pub request_log: Option<PathBuf>,
    /// Also accept commands on this TCP address (one per line).
    pub control: Option<SocketAddr>,
}

/// Why a simulator process failed. One type for every simulator: `S` is the protocol's
/// state-file error, `T` what its start can fail with besides binding its port (only the OPC UA
/// server has such failures; the others use the default).
#[derive(Debug, thiserror::Error)]
pub enum SimError<S, T = Infallible> {
    /// The state file could not be read or is invalid.
    #[error(transparent)]
    State(S),
    /// The simulator could not start for a protocol-specific reason.
    #[error(transparent)]
    Start(T),
    /// An address could not be bound.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// The protocol's name, or `"control"`.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// The request log file could not be opened.
    #[error("cannot open request log {path}: {source}")]
    RequestLog {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Installing signal handlers or writing the ready lines to stdout failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl<S, T> SimError<S, T> {
    /// Maps a failure to bind `addr` for `what` (a protocol's name, or `"control"`).
    pub(crate) fn bind(what: &'static str, addr: SocketAddr) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Bind { what, addr, source }
    }
}

/// Prints the ready lines on stdout and flushes: a supervisor reads them to learn the ports.
pub(crate) fn print_ready(lines: &[String]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// Runs a simulator as a process: what `otdrift sim <protocol>` calls. Loads the state (or
/// the built-in demo), starts the simulator, then serves it: request-log file, ready lines
/// (`otdrift-sim <protocol> listening on <ip:port>`, and `otdrift-sim control listening on
/// <ip:port>` with a control port), commands from stdin and the control port, until Ctrl-C or
/// SIGTERM; then stops the simulator. The protocol says how to load and start itself
/// ([`Protocol::load`], [`Protocol::demo`], [`Protocol::start`]).
///
/// # Errors
/// If the state cannot be loaded, an address cannot be bound, the log file cannot be opened
/// or stdout is closed, before the ready line is printed.
pub(crate) async fn run<Sim: Commands>(
    opts: RunOptions,
) -> Result<(), SimError<StateError, Sim::StartError>> {
    // Handlers are installed before the ready line: a supervisor may send SIGTERM as soon as
    // it has read it.
    let stop = stop_signal()?;
    run_until::<Sim>(opts, true, print_ready, stop).await
}

/// [`run`] with the ready lines, stdin (read only when `serve_stdin`; EOF only stops reading
/// it) and the stop signal pluggable (for tests).
pub(crate) async fn run_until<Sim: Commands>(
    opts: RunOptions,
    serve_stdin: bool,
    on_ready: impl FnOnce(&[String]) -> io::Result<()>,
    stop: impl Future<Output = io::Result<()>>,
) -> Result<(), SimError<StateError, Sim::StartError>> {
    let state = match &opts.state {
        Some(path) => Sim::load(path).map_err(SimError::State)?,
        None => Sim::demo(),
    };
    let handle = Sim::start(opts.listen, state).await?;
    if let Some(path) = &opts.request_log {
        handle
            .log_to_file(path)
            .map_err(|source| SimError::RequestLog {
                path: path.clone(),
                source,
            })?;
    }
    let mut ready = vec![format!(
        "otdrift-sim {} listening on {}",
        Sim::NAME,
        handle.local_addr()
    )];
    let target = handle.command_target();
    if let Some(addr) = opts.control {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(SimError::bind("control", addr))?;
        ready.push(format!(
            "otdrift-sim control listening on {}",
            listener.local_addr()?
        ));
        tokio::spawn(control::serve_control(
            listener,
            Arc::clone(&target),
            handle.shared().shutdown_watch(),
        ));
    }
    on_ready(&ready)?;
    if serve_stdin {
        control::spawn_stdin_thread(target);
    }
    let stopped = stop.await;
    handle.shutdown();
    handle.stopped().await;
    Ok(stopped?)
}

/// Registers Ctrl-C and SIGTERM now (so a supervisor's SIGTERM right after the ready line is
/// not lost); the future resolves on either. Every simulator's `run` stops on it.
#[cfg(unix)]
pub fn stop_signal() -> io::Result<impl Future<Output = io::Result<()>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        Ok(())
    })
}

/// Ctrl-C (the only stop signal outside Unix).
#[cfg(not(unix))]
pub fn stop_signal() -> io::Result<impl Future<Output = io::Result<()>>> {
    Ok(tokio::signal::ctrl_c())
}

/// A simulator process run inside a test, the way `otdrift sim <protocol>` runs it (ready
/// lines, control port, request-log file), stopped on demand.
#[cfg(test)]
pub(crate) mod testing {
    use std::net::SocketAddr;
    use std::path::PathBuf;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
    use tokio::net::TcpStream;
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::{RunOptions, SimError, run_until};
    use crate::runtime::{Commands, StateError};

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    fn address_in(line: &str, prefix: &str) -> SocketAddr {
        line.strip_prefix(prefix)
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("ready line {line:?} does not start with {prefix:?}"))
    }

    /// The running process: where it serves its protocol, a control connection, the stop.
    pub(crate) struct Process<Sim: Commands> {
        /// The address of the protocol's ready line.
        pub(crate) served: SocketAddr,
        /// The address of the control port's ready line.
        pub(crate) control: SocketAddr,
        replies: Lines<BufReader<OwnedReadHalf>>,
        commands: OwnedWriteHalf,
        stop: oneshot::Sender<()>,
        running: JoinHandle<Result<(), SimError<StateError, Sim::StartError>>>,
    }

    impl<Sim: Commands> Process<Sim> {
        /// Runs the demo device on loopback with a control port, logging requests to
        /// `request_log`; returns once both ready lines are printed and the control port
        /// is connected.
        pub(crate) async fn start(request_log: PathBuf) -> Self {
            let opts = RunOptions {
                listen: loopback(),
                state: None,
                request_log: Some(request_log),
                control: Some(loopback()),
            };
            let (ready_tx, ready_rx) = oneshot::channel();
            let (stop, stop_rx) = oneshot::channel::<()>();
            let running = tokio::spawn(run_until::<Sim>(
                opts,
                false,
                move |lines| {
                    let _ = ready_tx.send(lines.to_vec());
                    Ok(())
                },
                async move {
                    let _ = stop_rx.await;
                    Ok(())
                },
            ));
            let lines = ready_rx.await.expect("ready lines");
            assert_eq!(lines.len(), 2);
            let served = address_in(
                &lines[0],
                &format!("otdrift-sim {} listening on ", Sim::NAME),
            );
            let control = address_in(&lines[1], "otdrift-sim control listening on ");
            let stream = TcpStream::connect(control).await.expect("control connect");
            let (read, commands) = stream.into_split();
            Process {
                served,
                control,
                replies: BufReader::new(read).lines(),
                commands,
                stop,
                running,
            }
        }

        /// Sends `lines` (each ended by a newline) on the control port and returns the
        /// reply to each.
        pub(crate) async fn send(&mut self, lines: &[&str]) -> Vec<String> {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            self.commands
                .write_all(text.as_bytes())
                .await
                .expect("send");
            let mut replies = Vec::new();
            for _ in lines {
                let reply = self.replies.next_line().await.expect("reply");
                replies.push(reply.unwrap_or_default());
            }
            replies
        }

        /// Stops the process and waits until it ended cleanly.
        pub(crate) async fn stop(self) {
            self.stop.send(()).expect("stop");
            self.running
                .await
                .expect("run task")
                .expect("run ends cleanly");
        }
    }

    /// A state file that cannot be read stops the process before it serves anything.
    pub(crate) async fn assert_refuses_a_missing_state_file<Sim: Commands>() {
        let opts = RunOptions {
            listen: loopback(),
            state: Some(PathBuf::from("/nonexistent/state.toml")),
            request_log: None,
            control: None,
        };
        let result = run_until::<Sim>(opts, false, |_| Ok(()), async { Ok(()) }).await;
        assert!(matches!(
            result,
            Err(SimError::State(StateError::Io { .. }))
        ));
    }
}
