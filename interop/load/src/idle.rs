//! `sshq-load idle`: N idle interactive sessions held open in one process,
//! for `interop/run bench-idle` (interop/bench_idle.py).
//!
//! Each session is what an idle user has: one authenticated connection with
//! one session channel, a pty (`pty-req`) and a login shell (`shell`). A
//! session counts as established once the shell's first output (its prompt)
//! arrived, which proves the server started it. The output is read and
//! dropped until the channel ends, as a terminal would, so nothing queues on
//! the server's side for want of a reader. One process holds them all, so
//! the client side costs one process, not N (its memory is measured by the
//! driver and reported beside the server's).
//!
//! Logins are started at most `parallel` at a time, so the servers' limits
//! on unauthenticated connections (MaxStartups 10:30:100, and sshqd's
//! default PerSourceMaxStartups of 5) are never what is measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sshq_core::auth::FileKey;
use sshq_core::channel::{ChannelKind, ChannelRequest, PtyRequest, WindowSize};
use sshq_core::ssh_key::PrivateKey;
use sshq_core::transport::{Channel, ChannelControl, Connection};
use sshq_quic::client::{ClientEndpoint, ConnectParams};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::{
    gather, quic_endpoints, quic_login, quic_params, read_key, tcp_login, until_stdin_closes,
    AnyHostKey, Held, Target, Transport,
};

/// What the idle command was asked to do.
pub struct IdleArgs {
    pub target: Target,
    pub parallel: usize,
    pub timeout: Duration,
    pub hold: Duration,
}

/// One established session: its connection, and the task that reads the
/// shell's output (and owns the channel) until the channel ends.
struct Session {
    conn: Held,
    reader: JoinHandle<()>,
}

impl Session {
    /// Ends the connection as a user's client does, so the server ends the
    /// session now rather than when its idle timeout notices.
    async fn close(self) {
        self.reader.abort();
        match self.conn {
            Held::Quic(conn) => conn.close("idle benchmark done").await,
            Held::Tcp(handle) => {
                let _ = handle
                    .disconnect(russh::Disconnect::ByApplication, "", "en")
                    .await;
            }
        }
    }
}

const TERM: &str = "xterm";
const SIZE: WindowSize = WindowSize {
    cols: 80,
    rows: 24,
    pix_width: 0,
    pix_height: 0,
};

/// Opens the pty shell on a TCP (russh) connection and waits for its prompt.
async fn tcp_shell(handle: &russh::client::Handle<AnyHostKey>) -> Result<JoinHandle<()>, String> {
    let mut channel = handle
        .channel_open_session()
        .await
        .map_err(|e| e.to_string())?;
    channel
        .request_pty(true, TERM, SIZE.cols, SIZE.rows, 0, 0, &[])
        .await
        .map_err(|e| e.to_string())?;
    channel
        .request_shell(true)
        .await
        .map_err(|e| e.to_string())?;
    // The shell's first output; replies to the requests come first.
    loop {
        match channel.wait().await {
            Some(russh::ChannelMsg::Data { .. }) => break,
            Some(russh::ChannelMsg::Failure) => {
                return Err("pty or shell request denied".to_string())
            }
            Some(
                russh::ChannelMsg::Eof
                | russh::ChannelMsg::Close
                | russh::ChannelMsg::ExitStatus { .. },
            )
            | None => return Err("shell ended before its prompt".to_string()),
            Some(_) => {}
        }
    }
    Ok(tokio::spawn(async move {
        while let Some(message) = channel.wait().await {
            if matches!(message, russh::ChannelMsg::Eof | russh::ChannelMsg::Close) {
                break;
            }
        }
    }))
}

/// Opens the pty shell on a QUIC connection and waits for its prompt.
async fn quic_shell(conn: &sshq_quic::QuicConnection) -> Result<JoinHandle<()>, String> {
    let channel = conn
        .open_channel(ChannelKind::Session)
        .await
        .map_err(|e| e.to_string())?;
    let mut parts = channel.split();
    let pty = PtyRequest {
        term: TERM.to_string(),
        size: SIZE,
        modes: Vec::new(),
    };
    if !parts
        .control
        .request(ChannelRequest::Pty(pty), true)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err("pty request denied".to_string());
    }
    if !parts
        .control
        .request(ChannelRequest::Shell, true)
        .await
        .map_err(|e| e.to_string())?
    {
        return Err("shell request denied".to_string());
    }
    let mut buf = vec![0u8; 1024];
    match parts.data_in.read(&mut buf).await {
        Ok(0) => return Err("shell ended before its prompt".to_string()),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    // The task owns every part: dropping them all would close the channel.
    Ok(tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = parts.data_in.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        drop(parts);
    }))
}

async fn one_session(
    transport: Transport,
    endpoint: Option<ClientEndpoint>,
    params: Arc<ConnectParams>,
    args: &IdleArgs,
    key: Arc<PrivateKey>,
    file_key: Arc<FileKey>,
) -> Result<Session, String> {
    match (transport, endpoint) {
        (Transport::Quic, Some(endpoint)) => {
            let held = quic_login(
                endpoint,
                &params,
                args.target.port,
                &args.target.user,
                file_key,
            )
            .await?;
            let reader = match &held {
                Held::Quic(conn) => quic_shell(conn).await?,
                Held::Tcp(_) => return Err("internal: TCP connection for QUIC".to_string()),
            };
            Ok(Session { conn: held, reader })
        }
        _ => {
            let held = tcp_login(args.target.port, &args.target.user, key).await?;
            let reader = match &held {
                Held::Tcp(handle) => tcp_shell(handle).await?,
                Held::Quic(_) => return Err("internal: QUIC connection for TCP".to_string()),
            };
            Ok(Session { conn: held, reader })
        }
    }
}

/// Opens the sessions, prints one JSON line once they are up, holds them
/// until standard input closes (or `hold` passes), and returns how many
/// were still open at the end.
pub async fn idle(args: IdleArgs) -> Result<serde_json::Value, String> {
    let (key, file_key) = read_key(&args.target.key)?;
    let params = Arc::new(quic_params());
    // A few client sockets, so that one endpoint driver is not the limit.
    let endpoints = quic_endpoints(args.target.transport, 4, std::net::Ipv4Addr::LOCALHOST)?;
    let args = Arc::new(args);
    let gate = Arc::new(Semaphore::new(args.parallel.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.target.count);
    for i in 0..args.target.count {
        let (args, gate) = (args.clone(), gate.clone());
        let (key, file_key, params) = (key.clone(), file_key.clone(), params.clone());
        let endpoint = endpoints.get(i % endpoints.len().max(1)).cloned();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
            let attempt = one_session(
                args.target.transport,
                endpoint,
                params,
                &args,
                key,
                file_key,
            );
            match tokio::time::timeout(args.timeout, attempt).await {
                Ok(result) => result,
                Err(_) => Err("timed out".to_string()),
            }
        }));
    }
    let (sessions, failures) = gather(tasks).await;
    let up = serde_json::json!({
        "transport": if args.target.transport == Transport::Quic { "quic" } else { "tcp" },
        "attempted": args.target.count,
        "established": sessions.len(),
        "failures": failures,
        "setup_s": started.elapsed().as_secs_f64(),
    });
    println!("{up}");
    until_stdin_closes(args.hold).await;
    let still_open = sessions.iter().filter(|s| !s.reader.is_finished()).count();
    for session in sessions {
        session.close().await;
    }
    // Each QUIC connection keeps its endpoint and waits for its last
    // packets when closed; let the closes reach the server before the
    // process ends.
    drop(endpoints);
    tokio::time::sleep(Duration::from_millis(500)).await;
    Ok(serde_json::json!({ "still_open_at_end": still_open }))
}
