//! The `direct-udp@sshq` subsystem: sshqd as a ProxyJump host for QUIC.
//!
//! A client reaching its destination over QUIC through this server needs
//! its UDP datagrams relayed. It opens a session channel, requests this
//! subsystem, sends the target (`string host || uint32 port`), and from then
//! on each datagram travels in the channel as `uint16 length || payload`,
//! both ways (`sshq_quic::stream_socket`). QUIC runs end to end through the
//! relay, so this server sees only ciphertext.
//!
//! It is forwarding, so the same policy applies as to `direct-tcpip`:
//! AllowTcpForwarding (yes or local) and PermitOpen. Refusals are sent as
//! extended data and exit status 1, then the channel is closed.

use std::time::Duration;

use sshq_core::channel::ChannelRequest;
use sshq_core::log_escape;
use sshq_core::transport::ChannelControl;
use sshq_quic::stream_socket::{read_datagram, write_datagram};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::session::SessionContext;

/// The subsystem's name (the client side is `client::jump`).
pub const SUBSYSTEM: &str = "direct-udp@sshq";

/// How long the client has to name its target.
const TARGET_TIMEOUT: Duration = Duration::from_secs(10);

/// Host names are at most 255 bytes; anything longer is not one.
const MAX_HOST_LEN: u32 = 255;

/// Whether the subsystem may be started at all on this connection.
pub fn offered(ctx: &SessionContext) -> bool {
    ctx.allow_local_forwarding
}

/// Relays datagrams between the channel and the target until either the
/// channel ends or the relay fails.
pub async fn serve<R, W, E, K>(
    mut input: R,
    mut output: W,
    mut errors: E,
    control: K,
    ctx: &SessionContext,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
    K: ChannelControl,
{
    let status = match relay(&mut input, &mut output, ctx).await {
        Ok(()) => 0,
        Err(why) => {
            tracing::info!(
                "{}: direct-udp relay: {}",
                ctx.peer,
                log_escape::peer_text(&why.to_string())
            );
            let _ = errors
                .write_all(format!("sshqd: {why}\r\n").as_bytes())
                .await;
            let _ = errors.flush().await;
            1
        }
    };
    let _ = output.shutdown().await;
    let _ = control
        .request(ChannelRequest::ExitStatus(status), false)
        .await;
    control.close().await;
}

async fn relay<R, W>(input: &mut R, output: &mut W, ctx: &SessionContext) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (host, port) = tokio::time::timeout(TARGET_TIMEOUT, read_target(input))
        .await
        .map_err(|_| "the client did not name a target in time".to_string())??;
    if !ctx.permit_open.allows(&host, port) {
        return Err(format!(
            "relaying UDP to {host} port {port} is not permitted by this server (PermitOpen)"
        ));
    }
    let target = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {host}"))?;
    let bind = match target {
        std::net::SocketAddr::V4(_) => "0.0.0.0:0",
        std::net::SocketAddr::V6(_) => "[::]:0",
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    socket
        .connect(target)
        .await
        .map_err(|e| format!("cannot reach {target}: {e}"))?;
    tracing::info!(
        "{}: relaying UDP to {} port {port} ({target})",
        ctx.peer,
        log_escape::peer_text(&host.to_string())
    );
    let mut datagram = vec![0u8; usize::from(u16::MAX)];
    let (mut sent, mut received) = (0u64, 0u64);
    loop {
        tokio::select! {
            from_client = read_datagram(input) => match from_client {
                Ok(Some(payload)) => {
                    // UDP may lose a datagram (a refused port, a full
                    // buffer): QUIC recovers, so the relay carries on.
                    if socket.send(&payload).await.is_ok() {
                        sent += 1;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(format!("bad datagram framing from the client: {e}")),
            },
            from_target = socket.recv(&mut datagram) => {
                let Ok(n) = from_target else { continue };
                let payload = datagram.get(..n).unwrap_or_default();
                if write_datagram(output, payload).await.is_err() || output.flush().await.is_err() {
                    break;
                }
                received += 1;
            }
        }
    }
    tracing::info!(
        "{}: UDP relay to {} port {port} ended: {sent} datagrams sent, {received} received",
        ctx.peer,
        log_escape::peer_text(&host.to_string())
    );
    Ok(())
}

/// `string host || uint32 port`.
async fn read_target<R: AsyncRead + Unpin>(input: &mut R) -> Result<(String, u16), String> {
    let bad = |what: &str| format!("bad relay target from the client: {what}");
    let length = input.read_u32().await.map_err(|_| bad("truncated"))?;
    if length == 0 || length > MAX_HOST_LEN {
        return Err(bad("host name length"));
    }
    let mut host = vec![0u8; length as usize];
    input
        .read_exact(&mut host)
        .await
        .map_err(|_| bad("truncated"))?;
    let host = String::from_utf8(host).map_err(|_| bad("host name is not UTF-8"))?;
    let port = input.read_u32().await.map_err(|_| bad("truncated"))?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("port"))?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn targets_are_parsed_strictly() {
        let ok = b"\x00\x00\x00\x09h.example\x00\x00\x01\xbb";
        assert_eq!(
            read_target(&mut &ok[..]).await.unwrap(),
            ("h.example".to_string(), 443)
        );
        let bad: [&[u8]; 5] = [
            b"\x00\x00\x00\x00\x00\x00\x00\x16",
            b"\x00\x00\x01\x00",
            b"\x00\x00\x00\x01h\x00\x01\x00\x00",
            b"\x00\x00\x00\x01h\x00\x00\x00\x00",
            b"\x00\x00\x00\x01\xff\x00\x00\x00\x16",
        ];
        for input in bad {
            assert!(read_target(&mut &input[..]).await.is_err(), "{input:?}");
        }
    }
}
