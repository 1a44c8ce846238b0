//! The line-based command channel shared by all simulators.
//!
//! A simulator is driven while it runs by one command per line, answered by
//! one reply line: `ok`, `ok <json or text>` or `error: <reason>`. The same
//! language is reachable from Rust (the simulator handle's `command`), from
//! the process's stdin and from an optional TCP control port, so a test rig
//! in any language can script drift ("change recipe register 12 now") and
//! read the request log.
//!
//! Blank lines and lines starting with `#` are ignored and get no reply, so a
//! command script can carry comments.

use std::{
    io::{BufRead, Write},
    sync::Arc,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpListener,
    sync::watch,
};

/// Why a command line was refused; the reply line is `error: <this>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The first word is not a command of this simulator.
    #[error("unknown command {0:?} (try `help`)")]
    Unknown(String),
    /// The command is known but its arguments are missing or malformed; the
    /// text says what was expected.
    #[error("{0}")]
    Usage(String),
    /// The addresses are not all inside defined blocks of the table: a
    /// command cannot create memory the device does not have.
    #[error("{table} address {address} is not inside a defined block")]
    Address {
        /// Which table (`holding`, `input`, `coil`, `discrete`).
        table: &'static str,
        /// The first offending address.
        address: u32,
    },
}

/// Longest command line accepted on stdin or the control port; longer lines
/// are refused (a hostile or broken client cannot make us buffer forever).
pub const MAX_LINE: usize = 64 * 1024;

/// The reply line (without newline) for a command result.
#[must_use]
pub fn reply_line(result: &Result<String, CommandError>) -> String {
    match result {
        Ok(text) if text.is_empty() => "ok".to_string(),
        Ok(text) => format!("ok {text}"),
        Err(err) => format!("error: {err}"),
    }
}

/// Something that executes command lines (a running simulator).
pub(crate) trait CommandTarget: Send + Sync + 'static {
    /// Executes one non-blank line.
    fn execute(&self, line: &str) -> Result<String, CommandError>;
}

/// The reply for one raw input line, or `None` for blank and comment lines.
pub(crate) fn respond(target: &dyn CommandTarget, raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let line = text.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(reply_line(&target.execute(line)))
}

/// Serves commands from the process's stdin, replies on stdout, on a plain
/// thread (tokio's stdin would keep the runtime from shutting down while a
/// read is pending). EOF ends the thread; the process exiting kills it.
pub(crate) fn spawn_stdin_thread(target: Arc<dyn CommandTarget>) {
    let spawned = std::thread::Builder::new()
        .name("otdrift-sim-stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut input = stdin.lock();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let mut limited = std::io::Read::take(&mut input, MAX_LINE as u64 + 1);
                match limited.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(%err, "stdin closed");
                        break;
                    }
                }
                let reply = if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
                    // Skip the rest of the overlong line.
                    let mut rest = Vec::new();
                    let _ = input.read_until(b'\n', &mut rest);
                    Some(format!("error: line longer than {MAX_LINE} bytes"))
                } else {
                    respond(target.as_ref(), &buf)
                };
                if let Some(reply) = reply {
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
                        break;
                    }
                }
            }
        });
    if let Err(err) = spawned {
        tracing::warn!(%err, "cannot start the stdin command thread");
    }
}

/// Serves the TCP control port until `shutdown` turns true: any number of
/// clients, one command per line, one reply line each.
pub(crate) async fn serve_control(
    listener: TcpListener,
    target: Arc<dyn CommandTarget>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Typically out of file descriptors: back off rather than spin.
                tracing::debug!(%err, "control port accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tracing::debug!(%peer, "control connection");
        let target = Arc::clone(&target);
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let mut limited = (&mut reader).take(MAX_LINE as u64 + 1);
                let read = tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    read = limited.read_until(b'\n', &mut buf) => read,
                };
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if buf.len() > MAX_LINE && buf.last() != Some(&b'\n') {
                    let reply = format!("error: line longer than {MAX_LINE} bytes\n");
                    let _ = write.write_all(reply.as_bytes()).await;
                    break;
                }
                if let Some(mut reply) = respond(target.as_ref(), &buf) {
                    reply.push('\n');
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl CommandTarget for Echo {
        fn execute(&self, line: &str) -> Result<String, CommandError> {
            match line {
                "fail" => Err(CommandError::Usage("usage: fail".into())),
                "empty" => Ok(String::new()),
                other => Ok(other.to_string()),
            }
        }
    }

    #[test]
    fn replies() {
        assert_eq!(respond(&Echo, b"  \r\n"), None);
        assert_eq!(respond(&Echo, b"# comment\n"), None);
        assert_eq!(respond(&Echo, b"empty\r\n").as_deref(), Some("ok"));
        assert_eq!(
            respond(&Echo, b"hello world\n").as_deref(),
            Some("ok hello world")
        );
        assert_eq!(
            respond(&Echo, b"fail").as_deref(),
            Some("error: usage: fail")
        );
    }

    #[tokio::test]
    async fn control_port_round_trip() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind control port");
        let addr = listener.local_addr().expect("control address");
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve_control(listener, Arc::new(Echo), stop_rx));
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"# nothing\nhello\nfail\n")
            .await
            .expect("send");
        assert_eq!(
            lines.next_line().await.expect("read").as_deref(),
            Some("ok hello")
        );
        assert_eq!(
            lines.next_line().await.expect("read").as_deref(),
            Some("error: usage: fail")
        );
        stop_tx.send_replace(true);
        server.await.expect("control server ends on shutdown");
        assert_eq!(lines.next_line().await.expect("read after shutdown"), None);
    }
}
