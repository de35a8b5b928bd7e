//! The `direct-udp@sshq` subsystem: sshqd as a ProxyJump host for QUIC.
//!
//! A client reaching its destination over QUIC through this server needs
//! its UDP datagrams relayed. It opens a session channel, requests this
//! subsystem, sends the target (`string host || uint32 port`), and from then
//! on each datagram travels in the channel as `uint16 length || payload`,
//! both ways (`sshq_quic::stream_socket`). QUIC runs end to end through the
//! relay, so this server sees only ciphertext.
//!
//! It is forwarding, so it needs what `direct-tcpip` needs
//! (AllowTcpForwarding yes or local, and PermitOpen), and more: UDP reaches
//! services that TCP forwarding does not (DNS resolvers, syslog, VPN
//! servers, many bound to loopback only), so `AllowUdpRelay` limits it on
//! its own. Its default, `quic`, relays a QUIC connection and nothing else
//! (`quic_gate`); `ssh-port` also limits the target port to 22 and this
//! server's own; `yes` relays any datagrams; `no` refuses the subsystem.
//! Refusals are sent as extended data and exit status 1, then the channel
//! is closed.

pub(crate) mod quic_gate;

use std::time::Duration;

use sshq_core::channel::ChannelRequest;
use sshq_core::log_escape;
use sshq_core::transport::ChannelControl;
use sshq_quic::stream_socket::{write_datagram, DatagramReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use self::quic_gate::{ClientVerdict, QuicGate};
use super::session::SessionContext;

/// The subsystem's name (the client side is `client::jump`).
pub const SUBSYSTEM: &str = "direct-udp@sshq";

/// How long the client has to name its target.
const TARGET_TIMEOUT: Duration = Duration::from_secs(10);

/// Host names are at most 255 bytes; anything longer is not one.
const MAX_HOST_LEN: u32 = 255;

/// The SSH port that every sshqd and sshd listens on unless told otherwise.
const STANDARD_SSH_PORT: u16 = 22;

/// `AllowUdpRelay`: what the relay may carry, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowUdpRelay {
    /// No UDP relay at all.
    No,
    /// A QUIC connection, to port 22 or one of this server's own `Port`s.
    SshPort,
    /// A QUIC connection, to any target PermitOpen allows (the default).
    Quic,
    /// Any datagrams, to any target PermitOpen allows.
    Yes,
}

/// The keyword's values, for the configuration parser.
#[rustfmt::skip]
pub const ALLOW_UDP_RELAY: &[(&str, AllowUdpRelay)] = &[
    ("no", AllowUdpRelay::No), ("ssh-port", AllowUdpRelay::SshPort),
    ("quic", AllowUdpRelay::Quic), ("yes", AllowUdpRelay::Yes),
];

/// What the relay may do on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpRelayPolicy {
    pub allow: AllowUdpRelay,
    /// This server's `Port`s, which `ssh-port` allows besides 22.
    pub own_ports: Vec<u16>,
}

impl UdpRelayPolicy {
    /// Whether `allow` lets datagrams go to `port` (PermitOpen is checked
    /// separately).
    fn allows_port(&self, port: u16) -> bool {
        match self.allow {
            AllowUdpRelay::No => false,
            AllowUdpRelay::SshPort => port == STANDARD_SSH_PORT || self.own_ports.contains(&port),
            AllowUdpRelay::Quic | AllowUdpRelay::Yes => true,
        }
    }

    /// The check on the datagrams themselves, unless any may pass.
    fn gate(&self) -> Option<QuicGate> {
        (self.allow != AllowUdpRelay::Yes).then(QuicGate::new)
    }
}

/// Whether the subsystem may be started at all on this connection.
pub fn offered(ctx: &SessionContext) -> bool {
    ctx.allow_local_forwarding && ctx.udp_relay.allow != AllowUdpRelay::No
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
    // The status goes before EOF: over QUIC, EOF is the stream's FIN, after
    // which this side can send nothing more (a status sent later is lost).
    let _ = control
        .request(ChannelRequest::ExitStatus(status), false)
        .await;
    let _ = output.shutdown().await;
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
    if !ctx.udp_relay.allows_port(port) {
        return Err(format!(
            "relaying UDP to {host} port {port} is not permitted by this server \
             (AllowUdpRelay ssh-port allows only SSH ports)"
        ));
    }
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
    let counts = shuttle(input, output, &socket, ctx.udp_relay.gate())
        .await
        .map_err(|e| format!("relaying UDP to {host} port {port}: {e}"))?;
    tracing::info!(
        "{}: UDP relay to {host} port {port} ended: {} datagrams sent, {} received",
        ctx.peer,
        counts.sent,
        counts.received
    );
    Ok(())
}

/// Datagrams relayed each way.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    sent: u64,
    received: u64,
}

/// Moves datagrams between the channel and the connected `socket` until
/// the client ends the channel (or it breaks); `gate`, when set, decides
/// which datagrams may pass (see `quic_gate`).
///
/// Both directions wait in one `select!`, so the losing branch's future is
/// dropped whenever the other wins: the channel side therefore reads
/// through a [`DatagramReader`], which keeps a partly read datagram, and
/// `recv` on a UDP socket takes a datagram whole or not at all.
async fn shuttle<R, W>(
    input: &mut R,
    output: &mut W,
    socket: &tokio::net::UdpSocket,
    mut gate: Option<QuicGate>,
) -> Result<Counts, String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut from_client = DatagramReader::new();
    let mut datagram = vec![0u8; usize::from(u16::MAX)];
    let mut counts = Counts::default();
    let mut dropped_unanswered = false;
    loop {
        tokio::select! {
            next = from_client.next(input) => match next {
                Ok(Some(payload)) => {
                    match gate.as_mut().map(|g| g.check_client_datagram(&payload)) {
                        None | Some(ClientVerdict::Relay) => {}
                        Some(ClientVerdict::Drop) => {
                            if !dropped_unanswered {
                                dropped_unanswered = true;
                                tracing::debug!(
                                    "UDP relay: the target has not answered {} Initials; dropping more",
                                    quic_gate::MAX_UNANSWERED
                                );
                            }
                            continue;
                        }
                        Some(ClientVerdict::Refuse(why)) => {
                            return Err(format!("{why} (AllowUdpRelay relays only QUIC)"));
                        }
                    }
                    // UDP may lose a datagram (a refused port, a full
                    // buffer): QUIC recovers, so the relay carries on.
                    if socket.send(&payload).await.is_ok() {
                        counts.sent += 1;
                    }
                }
                Ok(None) => return Ok(counts),
                Err(e) => return Err(format!("bad datagram framing from the client: {e}")),
            },
            from_target = socket.recv(&mut datagram) => {
                let Ok(n) = from_target else { continue };
                let payload = datagram.get(..n).unwrap_or_default();
                if gate.as_mut().is_some_and(|g| !g.check_target_datagram(payload)) {
                    continue;
                }
                if write_datagram(output, payload).await.is_err() || output.flush().await.is_err() {
                    return Ok(counts);
                }
                counts.received += 1;
            }
        }
    }
}

/// `string host || uint32 port`.
pub(crate) async fn read_target<R: AsyncRead + Unpin>(
    input: &mut R,
) -> Result<(String, u16), String> {
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

    /// A datagram that says which one it is, so corruption shows.
    fn numbered(n: u32) -> Vec<u8> {
        let len = 200 + (n as usize * 37) % 1100;
        let mut datagram = n.to_be_bytes().to_vec();
        datagram.extend((4..len).map(|i| (i as u32 ^ n) as u8));
        datagram
    }

    /// Heavy traffic both ways through the relay, with the client's bytes
    /// arriving in small pieces so that datagrams are often half read when
    /// an echo from the target wins the `select!`: every datagram that
    /// comes back must be one that was sent, byte for byte. Reading with a
    /// plain `read_datagram` in the `select!` lost half-read datagrams
    /// and turned the rest of the stream into garbage lengths.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interleaved_datagrams_keep_their_framing() {
        const COUNT: u32 = 4000;
        let echo = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(echo_addr).await.unwrap();

        // Tiny pipe buffers: the relay's reads see a few bytes at a time.
        let (mut client_out, mut relay_in) = tokio::io::duplex(61);
        let (mut relay_out, mut client_in) = tokio::io::duplex(1 << 16);
        let sender = tokio::spawn(async move {
            for n in 0..COUNT {
                write_datagram(&mut client_out, &numbered(n)).await.unwrap();
            }
            // Let the last echoes come back before the end of input.
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        let checker = tokio::spawn(async move {
            let mut reader = DatagramReader::new();
            let mut good = 0u32;
            while let Some(datagram) = reader.next(&mut client_in).await.unwrap() {
                let n = u32::from_be_bytes(datagram[..4].try_into().unwrap());
                assert!(n < COUNT, "a datagram numbered {n} was never sent");
                assert_eq!(&datagram[..], &numbered(n)[..], "datagram {n} corrupted");
                good += 1;
            }
            good
        });
        let counts = tokio::time::timeout(Duration::from_secs(60), async {
            let relayed = shuttle(&mut relay_in, &mut relay_out, &socket, None).await;
            sender.await.unwrap();
            relayed
        })
        .await
        .expect("the relay did not finish");
        let counts = counts.expect("the relay saw bad framing");
        drop(relay_out);
        let good = checker.await.unwrap();
        assert_eq!(
            counts.sent,
            u64::from(COUNT),
            "datagrams lost from the stream"
        );
        // Loopback UDP may drop a few under load; most must come back.
        assert!(good > COUNT / 2, "only {good} of {COUNT} echoes came back");
    }

    #[test]
    fn the_keyword_is_read_with_quic_as_its_default() {
        use crate::server::config::ServerConfig;
        let load = |options: &[&str]| {
            let options: Vec<String> = options.iter().map(|o| o.to_string()).collect();
            ServerConfig::load(None, &options, &[], &[])
        };
        let allow = |options: &[&str]| load(options).map(|c| c.allow_udp_relay).ok();
        assert_eq!(allow(&[]), Some(AllowUdpRelay::Quic));
        assert_eq!(allow(&["AllowUdpRelay no"]), Some(AllowUdpRelay::No));
        assert_eq!(
            allow(&["allowudprelay SSH-PORT"]),
            Some(AllowUdpRelay::SshPort)
        );
        assert_eq!(
            allow(&["AllowUdpRelay yes", "AllowUdpRelay no"]),
            Some(AllowUdpRelay::Yes)
        );
        let bad = load(&["AllowUdpRelay maybe"]).err().map(|e| e.to_string());
        assert_eq!(
            bad.as_deref(),
            Some("command-line line 0: unsupported option \"maybe\".")
        );
    }

    #[test]
    fn each_value_limits_ports_and_datagrams_as_documented() {
        let policy = |allow| UdpRelayPolicy {
            allow,
            own_ports: vec![2222],
        };
        let ssh_port = policy(AllowUdpRelay::SshPort);
        assert!(ssh_port.allows_port(22) && ssh_port.allows_port(2222));
        assert!(!ssh_port.allows_port(53) && !ssh_port.allows_port(443));
        assert!(ssh_port.gate().is_some());
        assert!(policy(AllowUdpRelay::Quic).allows_port(4433));
        assert!(policy(AllowUdpRelay::Quic).gate().is_some());
        assert!(policy(AllowUdpRelay::Yes).allows_port(53));
        assert!(policy(AllowUdpRelay::Yes).gate().is_none());
        assert!(!policy(AllowUdpRelay::No).allows_port(22));
    }

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
