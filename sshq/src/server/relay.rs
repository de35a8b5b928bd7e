//! sshqd's `QuicRelay`: tunnels (`sshq-tunnel/1`, see
//! `sshq_quic::tunnel`) relayed to a TCP SSH server.
//!
//! A tunnel carries a whole SSH connection as bytes, so sshqd does no SSH
//! user authentication here: the SSH server at the other end authenticates
//! the user, exactly as if the client had connected to it over TCP. That is
//! only safe because the target comes from sshqd's configuration and never
//! from the client: a tunnel can reach that one SSH server and nothing else,
//! so sshqd is not an open proxy. What an unauthenticated peer can hold is
//! bounded: at most [`MAX_RELAYS`] tunnels at once, LoginGraceTime to open
//! its stream and send its first bytes, one stream per connection, and
//! QUIC's flow-control windows. sshqd connects to the SSH server only once
//! those first bytes have arrived, so silent tunnels cost that server
//! nothing. The SSH server sees the connection as coming from sshqd (a
//! loopback address when it runs on the same host), not from the client:
//! its per-source limits and logs see the relay (draft §11.2).
//!
//! Each relay is logged when it ends, as sshd logs connections: the peer,
//! the target, the bytes each way, how long, and how each direction ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sshq_quic::relay::{self as tunnel_relay, OpeningError, Tunnel};
use sshq_quic::tunnel::{End, Half};
use sshq_quic::wire::ErrorCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// How many tunnels sshqd relays at once; the next connection is closed
/// with RELAY_BUSY. Each tunnel is a whole SSH session held by a peer that
/// sshqd has not authenticated, so there must be a bound; 64 is well above
/// what one relay port serves in practice (OpenSSH's MaxStartups starts
/// refusing at 10 *unauthenticated* connections, and sshqd cannot tell when
/// the relayed session has authenticated).
pub const MAX_RELAYS: usize = 64;

/// How long connecting to the SSH server may take. Nothing useful happens
/// meanwhile, and a target that does not answer within this is as good as
/// down for an interactive user.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long, once both directions have ended, sshqd waits for the client to
/// acknowledge the last bytes, then to close the connection itself.
const FINAL_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The relay of one sshqd: where tunnels go, and the bound on how many.
pub struct Relay {
    /// `host:port` as configured (QuicRelay), resolved per tunnel so a
    /// changed DNS entry is followed as ssh would follow it.
    target: String,
    slots: Arc<Semaphore>,
    /// LoginGraceTime: how long a connection may go without opening its
    /// stream (`None`: no limit, as LoginGraceTime 0 means for sshd).
    stream_wait: Option<Duration>,
}

impl Relay {
    pub fn new(target: String, stream_wait: Option<Duration>) -> Relay {
        Relay {
            target,
            slots: Arc::new(Semaphore::new(MAX_RELAYS)),
            stream_wait,
        }
    }

    /// The configured target, `host:port`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Serves one connection that negotiated `sshq-tunnel/1`, from its
    /// handshake to its end; logs how it went.
    pub async fn serve(&self, tunnel: Tunnel, peer: SocketAddr) {
        let from = format!("{} port {} (QUIC)", peer.ip(), peer.port());
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!(
                "Relay from {from} refused: already relaying {MAX_RELAYS} tunnels, the most sshqd allows"
            );
            tunnel.close(
                // draft §12.9: servers MUST limit concurrent tunnels; the next is closed with RELAY_BUSY
                ErrorCode::RelayBusy,
                &format!("the relay already carries {MAX_RELAYS} tunnels; try again later"),
            );
            return;
        };
        // Nothing is asked of the SSH server until the client has sent its
        // first bytes: a tunnel that stays silent (or never opens its
        // stream) costs the SSH server nothing, so it cannot fill that
        // server's own MaxStartups. SSH clients send their identification
        // string at once, so a real client waits for nothing.
        let opening = tunnel.accept_stream();
        let opened = match self.stream_wait {
            Some(limit) => tokio::time::timeout(limit, opening).await,
            None => Ok(opening.await),
        };
        let (stream, first_bytes) = match opened {
            Ok(Ok(opened)) => opened,
            Ok(Err(OpeningError::Empty(empty))) => {
                tracing::info!("Relay from {from}: the client ended its stream without a byte");
                empty.answer(&tunnel, FINAL_ACK_TIMEOUT).await;
                return;
            }
            Ok(Err(e)) => {
                tracing::info!("Relay from {from}: {e}");
                return;
            }
            Err(_elapsed) => {
                tracing::info!(
                    "Relay from {from}: no stream and data within LoginGraceTime; closed"
                );
                tunnel.close(
                    // draft §12.9: servers MUST bound the time to the first stream and its first octets (AUTH_TIMEOUT)
                    ErrorCode::AuthTimeout,
                    "no tunnel stream within LoginGraceTime",
                );
                return;
            }
        };
        // draft §12.9: a relay MUST NOT connect to its target before the client's first octet arrives
        let mut tcp = match tokio::time::timeout(
            TARGET_CONNECT_TIMEOUT,
            TcpStream::connect(self.target.as_str()),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return self.unreachable(&tunnel, &from, &e.to_string()),
            Err(_) => return self.unreachable(&tunnel, &from, "Connection timed out"),
        };
        // SSH is interactive; sshd sets it too.
        let _ = tcp.set_nodelay(true);
        if let Err(e) = tcp.write_all(&first_bytes).await {
            return self.unreachable(&tunnel, &from, &e.to_string());
        }
        // draft §12.9: the SSH server logs the relay's address and this
        // port, so naming both lets its log lines be traced to the client.
        let via = tcp
            .local_addr()
            .map(|a| format!("{} port {}", a.ip(), a.port()))
            .unwrap_or_else(|_| "an unknown local address".to_string());
        tracing::info!("Relay from {from} to {} started (from {via})", self.target);
        tunnel.refuse_other_streams();

        let started = Instant::now();
        let (mut up, down) = relay_both_ways(&tunnel, tcp, stream).await;
        up.bytes += first_bytes.len() as u64;
        tracing::info!(
            "Relay from {from} to {} closed after {:.1} s: {} bytes from the client ({}), \
             {} bytes to the client (SSH server's side {})",
            self.target,
            started.elapsed().as_secs_f64(),
            up.bytes,
            describe_client_end(&up.end),
            down.bytes,
            down.end,
        );
    }

    fn unreachable(&self, tunnel: &Tunnel, from: &str, why: &str) {
        tracing::error!(
            "Relay from {from}: cannot reach SSH server {}: {why}",
            self.target
        );
        tunnel.close(
            // draft §11.2: a failed connect closes with RELAY_TARGET_UNREACHABLE and reason host:port: why
            ErrorCode::RelayTargetUnreachable,
            &format!("{}: {why}", self.target),
        );
    }
}

/// Moves bytes both ways until both directions have ended, or one is
/// aborted (then the whole tunnel is: the TCP connection is reset and the
/// QUIC connection closed). Returns (client to server, server to client).
async fn relay_both_ways(
    tunnel: &Tunnel,
    tcp: TcpStream,
    stream: tunnel_relay::TunnelStream,
) -> (Half, Half) {
    let (tcp_read, tcp_write) = tcp.into_split();
    let never = std::future::pending::<()>();
    let mut relayed = tunnel_relay::relay(stream, tcp_read, tcp_write, never, Duration::ZERO).await;
    let not_run = || Half {
        bytes: 0,
        end: End::LocalFailed(std::io::Error::other(
            "abandoned when the other direction failed",
        )),
    };
    if relayed.both_finished() {
        // The client closes once it has read everything (closing here
        // could discard bytes it has received but not yet read); we
        // close only if it does not, after the last bytes are acknowledged.
        relayed.wait_acknowledged(FINAL_ACK_TIMEOUT).await;
        tunnel.wait_closed(FINAL_ACK_TIMEOUT).await;
        tunnel.close(ErrorCode::NoError, "relay finished");
    } else {
        // A broken byte stream on one side becomes a broken one on the
        // other: TCP gets a reset (SO_LINGER 0, then close), QUIC a
        // TUNNEL_ABORTED close.
        let _ = relayed.writer.as_ref().set_zero_linger();
        tunnel.close(ErrorCode::TunnelAborted, "the relayed byte stream broke");
    }
    // Client to server is what we received, server to client what we sent.
    (
        relayed.inbound.unwrap_or_else(not_run),
        relayed.outbound.unwrap_or_else(not_run),
    )
}

/// How the client's direction ended, in the words of the log.
fn describe_client_end(end: &End) -> String {
    match end {
        End::Finished => "ended".to_string(),
        End::LocalFailed(e) => format!("the SSH server stopped reading: {e}"),
        other => other.to_string(),
    }
}
