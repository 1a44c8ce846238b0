//! One runtime for every simulator. A protocol supplies only what is its own (a
//! [`Protocol`]: its state, its quirks, how to serve one connection, one tick, its own
//! commands); the runtime gives each the same:
//!
//! - [`Shared`]: the state behind one lock, the request log, the shutdown flag and the
//!   `alive` channel every task holds, the bound address, and what the protocol keeps
//!   beside its state;
//! - [`SimHandle`]: `local_addr`, `request_log`, `log_to_file`, `command`, `set_quirk`,
//!   `tick`, `shutdown`/`stopped`, cheap to clone, stopping the simulator when the last
//!   clone is dropped;
//! - [`QuirkSet`]: one quirk type for the command channel and the state file;
//! - the verb dispatcher (`verbs.rs`): `help`, `tick`, `quirk`, `log` the same everywhere,
//!   the protocol's own verbs (`get`, `set`, ...) handed to it;
//! - the accept loop and the ticker (`tasks.rs`), and the process loop (`process.rs`).

// The runtime serves five simulators; a build with fewer (one cargo feature per protocol)
// leaves parts of it unused.
#![cfg_attr(
    not(all(feature = "s7", feature = "ads", feature = "cip", feature = "opcua")),
    allow(dead_code)
)]

pub mod quirks;
mod state_file;
pub(crate) mod verbs;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::control::{CommandError, CommandTarget};
use crate::process::SimError;
use crate::request_log::{Described, LoggedRequest, RequestLog};
pub use quirks::{QuirkName, QuirkSet};
pub use state_file::StateError;
pub(crate) use state_file::{invalid, load as load_state};

/// What a protocol's simulator is (implemented by its `XSimulator`, in its `mod.rs`): its
/// state and quirks, what it keeps beside them, one tick, and how it loads and starts. Its
/// command language is [`Commands`].
pub trait Protocol: Sized + Send + Sync + 'static {
    /// The protocol's name: the ready line, the request log, errors (`"modbus"`).
    const NAME: &'static str;
    /// The simulated device.
    type State: Send + 'static;
    /// The protocol's quirk names.
    type Quirk: QuirkName;
    /// The argument a quirk takes, where one does (`()` when none does).
    type QuirkArg: Clone + fmt::Debug + PartialEq + Send + Sync + 'static;
    /// What the simulator keeps beside its state (another server, channels...).
    type Extra: Send + Sync + 'static;
    /// What starting can fail with besides binding the port.
    type StartError: std::error::Error + Send + 'static;

    /// The state's quirks.
    fn quirks(state: &mut Self::State) -> &mut QuirkSet<Self::Quirk, Self::QuirkArg>;

    /// Called after a quirk was switched, for a protocol that mirrors one outside its state.
    fn quirk_switched(_shared: &Shared<Self>, _quirk: Self::Quirk, _on: bool) {}

    /// Moves the simulated process once (counters, clocks, inputs).
    fn tick(shared: &Shared<Self>);

    /// Called when the simulator shuts down (after the shutdown flag turned true).
    fn stopping(_shared: &Shared<Self>) {}

    /// Called once the simulator has stopped (every task ended).
    fn stopped(_shared: &Shared<Self>) {}

    /// Loads a state file.
    ///
    /// # Errors
    /// Why the file was refused.
    fn load(path: &Path) -> Result<Self::State, StateError>;

    /// The built-in demo device, served without a state file.
    fn demo() -> Self::State;

    /// Starts serving `state` on `listen`.
    fn start(
        listen: SocketAddr,
        state: Self::State,
    ) -> impl Future<Output = Result<SimHandle<Self>, SimError<StateError, Self::StartError>>> + Send;
}

/// A protocol's command language (implemented in its `commands.rs`): its own verbs, the
/// arguments of its quirks, and its `log` summary. `help`, `tick`, `quirk` and `log` are
/// the runtime's (`verbs.rs`).
pub trait Commands: Protocol {
    /// The `help` reply (one line).
    const HELP: &'static str;
    /// The key under which the `log` summary counts requests (`by_function`, `by_service`).
    const LOG_KEY: &'static str;

    /// Runs the protocol's own verb (`get`, `set`, and the rest); `CommandError::Unknown`
    /// when `verb` is none of them.
    ///
    /// # Errors
    /// Why the command was refused; nothing was changed.
    fn command(shared: &Shared<Self>, verb: &str, rest: &str) -> Result<String, CommandError>;

    /// Switches `quirk` on with `args` (the rest of `quirk NAME on ARGS`, or a state file's
    /// value). By default a quirk takes no argument.
    ///
    /// # Errors
    /// The usage, when the arguments do not fit the quirk.
    fn quirk_on(
        state: &mut Self::State,
        quirk: Self::Quirk,
        args: &str,
    ) -> Result<(), CommandError> {
        if !args.is_empty() {
            return Err(verbs::usage(&format!("quirk {} on|off", quirk.name())));
        }
        Self::quirks(state).set(quirk, true);
        Ok(())
    }

    /// The argument text a state file's `[quirks]` value stands for (`refuse-all = 5` is
    /// `quirk refuse-all on 5`). By default a number or a string.
    ///
    /// # Errors
    /// Why the value does not fit the quirk.
    fn file_arg(_quirk: Self::Quirk, value: &toml::Value) -> Result<String, String> {
        match value {
            toml::Value::Integer(n) => Ok(n.to_string()),
            toml::Value::String(s) => Ok(s.clone()),
            _ => Err("expected true, false or the quirk's argument".to_owned()),
        }
    }

    /// What the `log` summary counts under [`LOG_KEY`](Self::LOG_KEY), and anything else it
    /// shows after it (JSON members, without braces, each preceded by a comma).
    fn log_summary(shared: &Shared<Self>) -> String;

    /// Called after `log clear` cleared the request log.
    fn log_cleared(_shared: &Shared<Self>) {}
}

/// What a simulator's tasks share.
pub struct Shared<P: Protocol> {
    state: Mutex<P::State>,
    log: RequestLog,
    /// Turns true once on shutdown; every task watches it.
    shutdown: watch::Sender<bool>,
    /// Every task holds a receiver; all gone = fully stopped.
    alive: watch::Sender<()>,
    local_addr: SocketAddr,
    /// What the protocol keeps beside its state.
    pub(crate) extra: P::Extra,
}

impl<P: Protocol> Shared<P> {
    /// Shared state for a simulator bound to `local_addr`.
    pub(crate) fn new(local_addr: SocketAddr, state: P::State, extra: P::Extra) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        let (alive, _) = watch::channel(());
        Arc::new(Shared {
            state: Mutex::new(state),
            log: RequestLog::new(),
            shutdown,
            alive,
            local_addr,
            extra,
        })
    }

    /// The state. Each change is applied whole under the lock, so a poisoned lock is still
    /// consistent and usable.
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, P::State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The request log.
    pub(crate) fn log(&self) -> &RequestLog {
        &self.log
    }

    /// Where the simulator answers.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A receiver that turns true on shutdown.
    pub(crate) fn shutdown_watch(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// What the task serving `peer` watches for the shutdown.
    pub(crate) fn stop_for(&self, peer: SocketAddr) -> crate::tasks::Stop {
        crate::tasks::Stop::new(P::NAME, peer, self.shutdown_watch())
    }

    /// A receiver a task holds while it runs (the simulator is stopped once all are gone).
    pub(crate) fn alive(&self) -> watch::Receiver<()> {
        self.alive.subscribe()
    }

    /// Logs one request from `peer` and what became of it.
    pub(crate) fn record(
        &self,
        peer: SocketAddr,
        described: Described,
        outcome: impl Into<String>,
    ) {
        self.log
            .record(LoggedRequest::new(P::NAME, peer, described, outcome));
    }

    /// Switches a quirk without an argument.
    pub(crate) fn set_quirk(&self, quirk: P::Quirk, on: bool) {
        P::quirks(&mut self.lock_state()).set(quirk, on);
        P::quirk_switched(self, quirk, on);
    }

    /// Starts shutting down: accept loop, connections and ticker end.
    pub(crate) fn shutdown(&self) {
        self.shutdown.send_replace(true);
        P::stopping(self);
    }

    /// Accepts connections on `listener` and serves each with `serve`, at most `limit` at
    /// once.
    pub(crate) fn serve<F, Fut>(
        self: &Arc<Self>,
        listener: TcpListener,
        limit: Option<usize>,
        serve: F,
    ) where
        F: Fn(Arc<Self>, TcpStream, SocketAddr) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shared = Arc::clone(self);
        crate::tasks::spawn_accept_loop(
            P::NAME,
            listener,
            &self.shutdown,
            &self.alive,
            limit,
            move |stream, peer| serve(Arc::clone(&shared), stream, peer),
        );
    }

    /// Ticks the state every `tick_ms` (never when 0).
    pub(crate) fn tick_every(self: &Arc<Self>, tick_ms: u64) {
        if tick_ms == 0 {
            return;
        }
        let shared = Arc::clone(self);
        crate::tasks::spawn_ticker(
            Duration::from_millis(tick_ms),
            &self.shutdown,
            &self.alive,
            move || P::tick(&shared),
        );
    }
}

impl<P: Commands> CommandTarget for Shared<P> {
    fn execute(&self, line: &str) -> Result<String, CommandError> {
        verbs::execute(self, line)
    }
}

/// Shuts the simulator down when the last handle clone is dropped, so a forgotten simulator
/// does not keep serving for the rest of a test run.
struct StopOnDrop<P: Protocol>(Arc<Shared<P>>);

impl<P: Protocol> Drop for StopOnDrop<P> {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// Controls a running simulator: its address, its request log, commands, quirks.
///
/// Cheap to clone; all clones control the same simulator. Dropping the last clone shuts the
/// simulator down. Each protocol adds its own typed methods (`set_holding`, `add_db`...).
pub struct SimHandle<P: Protocol> {
    shared: Arc<Shared<P>>,
    guard: Arc<StopOnDrop<P>>,
}

impl<P: Protocol> Clone for SimHandle<P> {
    fn clone(&self) -> Self {
        SimHandle {
            shared: Arc::clone(&self.shared),
            guard: Arc::clone(&self.guard),
        }
    }
}

impl<P: Protocol> fmt::Debug for SimHandle<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("protocol", &P::NAME)
            .field("local_addr", &self.shared.local_addr)
            .field("handles", &Arc::strong_count(&self.guard))
            .finish_non_exhaustive()
    }
}

impl<P: Protocol> SimHandle<P> {
    /// The handle of a started simulator.
    pub(crate) fn new(shared: Arc<Shared<P>>) -> Self {
        tracing::debug!(protocol = P::NAME, local_addr = %shared.local_addr, "simulator listening");
        SimHandle {
            guard: Arc::new(StopOnDrop(Arc::clone(&shared))),
            shared,
        }
    }

    /// What the simulator's tasks share.
    pub(crate) fn shared(&self) -> &Arc<Shared<P>> {
        &self.shared
    }

    /// The address actually bound (with the OS-chosen port).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The request log (shared; clone it to keep it past the handle).
    #[must_use]
    pub fn request_log(&self) -> &RequestLog {
        &self.shared.log
    }

    /// Starts appending every request from now on to `path` as JSON lines, flushed per
    /// line, for tests in another process.
    ///
    /// # Errors
    /// If the file cannot be opened for appending.
    pub fn log_to_file(&self, path: &Path) -> io::Result<()> {
        self.shared.log.log_to_file(path)
    }

    /// Switches a quirk on or off (one that takes an argument has its own method, or the
    /// `quirk` command).
    pub fn set_quirk(&self, quirk: P::Quirk, on: bool) {
        self.shared.set_quirk(quirk, on);
    }

    /// Moves the simulated process once (what the ticker does every `tick_ms`).
    pub fn tick(&self) {
        P::tick(&self.shared);
    }

    /// Stops accepting connections, closes the open ones and stops ticking. Takes effect
    /// asynchronously; await [`stopped`](Self::stopped) to know it is complete.
    pub fn shutdown(&self) {
        self.shared.shutdown();
    }

    /// Resolves once the simulator has stopped: listener closed, every connection closed,
    /// tick task ended (after [`shutdown`](Self::shutdown)).
    pub async fn stopped(&self) {
        self.shared.alive.closed().await;
        P::stopped(&self.shared);
    }
}

impl<P: Commands> SimHandle<P> {
    /// Executes one line of the command language (see the protocol's module docs). `Ok`
    /// carries the text after `ok` (possibly empty).
    ///
    /// # Errors
    /// The reason the command was refused; nothing was changed.
    pub fn command(&self, line: &str) -> Result<String, CommandError> {
        verbs::execute(&self.shared, line)
    }

    /// The simulator's command interpreter, for the process loop.
    pub(crate) fn command_target(&self) -> Arc<dyn CommandTarget> {
        Arc::clone(&self.shared) as Arc<dyn CommandTarget>
    }
}

/// Binds `listen` for protocol `P` (the error names the protocol and the address).
pub(crate) async fn bind<P: Protocol>(
    listen: SocketAddr,
) -> Result<(TcpListener, SocketAddr), SimError<StateError, P::StartError>> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(SimError::bind(P::NAME, listen))?;
    let local_addr = listener
        .local_addr()
        .map_err(SimError::bind(P::NAME, listen))?;
    Ok((listener, local_addr))
}
