//! The `direct-udp@sshq` subsystem: sshqd as a ProxyJump host for QUIC.
//!
//! A client reaching its destination over QUIC through this server needs
//! its UDP datagrams relayed. It opens a session channel, requests this
//! subsystem, sends the target (`string host || uint32 port`), and from then
//! on each datagram travels in the channel as `uint16 length || payload`,
//! both ways. The framing is `sshq_quic::wire::udp_relay`'s codec, shared
//! with the client (`client::jump`); this module reads and relays. QUIC runs end to end through the
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

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use sshq_core::channel::ChannelRequest;
use sshq_core::log_escape;
use sshq_core::transport::ChannelControl;
use sshq_quic::stream_socket::{write_datagram, DatagramReader};
use sshq_quic::wire::udp_relay::TARGET_HEADER_LEN;
use sshq_quic::wire::{Codec, DecodeError, UdpRelayTarget};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use self::quic_gate::{ClientVerdict, QuicGate};
use super::context::SessionContext;
pub use super::context::{AllowUdpRelay, UdpRelayPolicy, ALLOW_UDP_RELAY};

/// The subsystem's name (the client side is `client::jump`).
pub const SUBSYSTEM: &str = sshq_quic::wire::udp_relay::SUBSYSTEM;

/// How long the client has to name its target.
const TARGET_TIMEOUT: Duration = Duration::from_secs(10);

/// The SSH port that every sshqd and sshd listens on unless told otherwise.
const STANDARD_SSH_PORT: u16 = 22;

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
    ctx.forwarding.allow_local && ctx.forwarding.udp_relay.allow != AllowUdpRelay::No
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

/// Why a relay ended with exit status 1; the text is sent to the client
/// (extended data) and logged.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("the client did not name a target in time")]
    TargetTimeout,
    #[error("bad relay target from the client: {0}")]
    BadTarget(#[from] TargetError),
    #[error(
        "relaying UDP to {host} port {port} is not permitted by this server \
         (AllowUdpRelay ssh-port allows only SSH ports)"
    )]
    PortNotAllowed { host: String, port: u16 },
    #[error("relaying UDP to {host} port {port} is not permitted by this server (PermitOpen)")]
    NotPermitted { host: String, port: u16 },
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: io::Error },
    #[error("cannot resolve {host}")]
    NoAddress { host: String },
    #[error("cannot open a UDP socket: {0}")]
    Socket(io::Error),
    #[error("cannot reach {target}: {source}")]
    Unreachable {
        target: SocketAddr,
        source: io::Error,
    },
    #[error("relaying UDP to {host} port {port}: {source}")]
    Relaying {
        host: String,
        port: u16,
        source: ShuttleError,
    },
}

/// Why the client's target could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("truncated")]
    Truncated,
    #[error("{0}")]
    Invalid(#[from] DecodeError),
}

/// Why relaying stopped early.
#[derive(Debug, thiserror::Error)]
enum ShuttleError {
    #[error("{0} (AllowUdpRelay relays only QUIC)")]
    NotQuic(&'static str),
    #[error("bad datagram framing from the client: {0}")]
    Framing(io::Error),
}

async fn relay<R, W>(input: &mut R, output: &mut W, ctx: &SessionContext) -> Result<(), RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // draft §11.1: a target that does not arrive within 10 seconds is refused
    let UdpRelayTarget { host, port } = tokio::time::timeout(TARGET_TIMEOUT, read_target(input))
        .await
        .map_err(|_| RelayError::TargetTimeout)??;
    if !ctx.forwarding.udp_relay.allows_port(port) {
        return Err(RelayError::PortNotAllowed { host, port });
    }
    // draft §12.9: the UDP relay is governed by the direct-tcpip policy as well as its own
    if !ctx.forwarding.permit_open.allows(&host, port) {
        return Err(RelayError::NotPermitted { host, port });
    }
    let resolved = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map(|mut addresses| addresses.next());
    let target = match resolved {
        Ok(target) => target,
        Err(source) => return Err(RelayError::Resolve { host, source }),
    };
    let Some(target) = target else {
        return Err(RelayError::NoAddress { host });
    };
    let bind = match target {
        SocketAddr::V4(_) => "0.0.0.0:0",
        SocketAddr::V6(_) => "[::]:0",
    };
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(RelayError::Socket)?;
    socket
        .connect(target)
        .await
        .map_err(|source| RelayError::Unreachable { target, source })?;
    tracing::info!(
        "{}: relaying UDP to {} port {port} ({target})",
        ctx.peer,
        log_escape::peer_text(&host.to_string())
    );
    let counts = match shuttle(input, output, &socket, ctx.forwarding.udp_relay.gate()).await {
        Ok(counts) => counts,
        Err(source) => return Err(RelayError::Relaying { host, port, source }),
    };
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
) -> Result<Counts, ShuttleError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // draft §11.1: a jump host MUST keep a partly received datagram until the rest arrives
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
                            return Err(ShuttleError::NotQuic(why));
                        }
                    }
                    // UDP may lose a datagram (a refused port, a full
                    // buffer): QUIC recovers, so the relay carries on.
                    if socket.send(&payload).await.is_ok() {
                        counts.sent += 1;
                    }
                }
                Ok(None) => return Ok(counts),
                Err(e) => return Err(ShuttleError::Framing(e)),
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

/// The client's target, read exactly (the datagrams follow it), with a bad
/// host length refused before its bytes are waited for.
pub(crate) async fn read_target<R: AsyncRead + Unpin>(
    input: &mut R,
) -> Result<UdpRelayTarget, TargetError> {
    let mut header = [0u8; TARGET_HEADER_LEN];
    input
        .read_exact(&mut header)
        .await
        .map_err(|_| TargetError::Truncated)?;
    let mut target = vec![0u8; UdpRelayTarget::remaining_len(header)?];
    input
        .read_exact(&mut target)
        .await
        .map_err(|_| TargetError::Truncated)?;
    target.splice(0..0, header);
    Ok(UdpRelayTarget::decode(&target)?)
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
            UdpRelayTarget {
                host: "h.example".to_string(),
                port: 443
            }
        );
        // Only the target is read: the datagrams after it stay.
        let mut followed = [&ok[..], b"\x00\x01x"].concat();
        let mut input = &followed[..];
        assert!(read_target(&mut input).await.is_ok());
        assert_eq!(input, b"\x00\x01x");
        followed.truncate(ok.len() - 1);
        assert!(matches!(
            read_target(&mut &followed[..]).await,
            Err(TargetError::Truncated)
        ));
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
