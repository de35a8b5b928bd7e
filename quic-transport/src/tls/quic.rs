//! quinn configuration on top of the TLS configurations, tuned for SSH:
//! bulk transfers (scp, sftp, forwarded ports) and interactive sessions on
//! the same connection.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use socket2::{Domain, Protocol, Socket, Type};

use super::TlsError;

const MIB: u32 = 1024 * 1024;

/// The UDP socket buffer size [`bind_endpoint_socket`] asks for, each way.
///
/// Measured on loopback: with Linux's default ~208 KiB receive buffer, quinn
/// (which sends ~10 datagrams per GSO syscall) loses thousands of packets per
/// GiB transferred, and every loss costs a congestion-window cut; 4 MiB
/// removed the loss at 1472-byte datagrams. At 6500-byte datagrams
/// (`crate::path_mtu`) 4 MiB lost 1,000 to 5,500 packets per GiB again and
/// a 1 GiB upload ran at 507 to 620 MiB/s; 16 MiB lost none and ran at 577
/// to 831 MiB/s (5 runs each). It is a limit, not an allocation: the kernel
/// charges only what is queued, so an idle endpoint costs nothing.
pub const SOCKET_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// The connection-level receive window of [`transport_config`].
pub const RECEIVE_WINDOW: u32 = 64 * MIB;

/// The concurrent bidirectional streams of [`transport_config`]: sshqd's
/// 256 channels per connection (draft §12.7), the control stream, and one
/// more, so that an open beyond the cap is answered (OPEN_FAILURE, reason
/// 4, as over TCP) instead of waiting for stream credit that never comes.
/// Not more: quinn keeps state for every stream allowed, a cost per idle
/// connection (interop/results/bench-idle).
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 258;

/// The concurrent bidirectional streams a connection starts with once the
/// user has logged in: the control stream and 31 channels. quinn allocates
/// the state of every stream the peer may open as soon as it may, so the
/// credit is raised only as the peer's channels need it, up to
/// [`MAX_CONCURRENT_BIDI_STREAMS`] (`crate::channel_streams`): an idle
/// session costs a 32-stream table, not a 258-stream one.
pub const INITIAL_BIDI_STREAMS: u32 = 32;

/// Wraps a server TLS configuration (from [`super::server_tls`]) for quinn,
/// with [`transport_config`] under the pre-authentication limits
/// ([`crate::preauth`]).
pub fn server_config(tls: rustls::ServerConfig) -> Result<quinn::ServerConfig, TlsError> {
    // A hybrid group whenever the client offers one (draft §4.4.4).
    let crypto = crate::kx::server_crypto(tls).map_err(TlsError::NoInitialCipherSuite)?;
    let mut config = quinn::ServerConfig::with_crypto(crypto);
    let mut transport =
        base_transport_config(crate::path_mtu::ETHERNET_IPV4_UDP_PAYLOAD, Liveness::SERVER);
    crate::preauth::restrict(&mut transport);
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Wraps a client TLS configuration (from [`super::client_tls`]) for quinn,
/// with [`transport_config`].
pub fn client_config(tls: rustls::ClientConfig) -> Result<quinn::ClientConfig, TlsError> {
    let crypto = QuicClientConfig::try_from(tls).map_err(TlsError::NoInitialCipherSuite)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// How long a connection lives without hearing from its peer, and how often
/// it speaks up itself when it has nothing to say: `QuicIdleTimeout` and
/// `QuicKeepAlive` in sshq's and sshqd's configuration.
///
/// The defaults are chosen for laptops and phones (draft §4.1):
/// - **idle timeout 60 s** on both sides: a lid closed for half a minute,
///   a train tunnel or a Wi-Fi hand-over come back to the same connection,
///   without the reattach of `sshq::reattach`. QUIC uses the smaller of the
///   two sides' values. Longer gains little: after a longer silence the
///   client reattaches to its session anyway, and a server should not hold
///   a dead client's connection state for long.
/// - **keep-alive 15 s from the client**, none from the server. NAT and
///   firewall UDP mappings commonly expire after 30 s without traffic
///   (Linux conntrack's unreplied timeout, many home routers); a PING every
///   15 s keeps them with one PING lost. Only the client needs to send: its
///   PING refreshes the mapping and the server's acknowledgement resets the
///   server's idle timer too. A server that pinged as well would only wake
///   a sleeping phone's radio for nothing. mosh sends every 3 s; 15 s costs
///   a radio a quarter of the wake-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// `None`: never time out (only for labs; a vanished peer's state is
    /// then kept for ever).
    pub idle_timeout: Option<Duration>,
    /// `None`: send no keep-alive PINGs.
    pub keep_alive: Option<Duration>,
}

impl Liveness {
    /// The default idle timeout, on both sides.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// The client's default keep-alive interval.
    pub const DEFAULT_CLIENT_KEEP_ALIVE: Duration = Duration::from_secs(15);

    /// A client's defaults.
    pub const CLIENT: Liveness = Liveness {
        idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
        keep_alive: Some(Self::DEFAULT_CLIENT_KEEP_ALIVE),
    };
    /// A server's defaults.
    pub const SERVER: Liveness = Liveness {
        idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
        keep_alive: None,
    };

    fn apply(self, config: &mut TransportConfig) {
        // quinn takes milliseconds up to 2^62; anything beyond a VarInt is
        // as good as no timeout at all.
        let idle = self.idle_timeout.map(|timeout| {
            let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            IdleTimeout::from(VarInt::from_u64(millis).unwrap_or(VarInt::MAX))
        });
        config
            .max_idle_timeout(idle)
            .keep_alive_interval(self.keep_alive);
    }
}

/// The QUIC transport parameters both sides use, for a peer whose route is
/// not known yet: MTU discovery stops at an Ethernet path's 1472 bytes, and
/// the client's [`Liveness`]. [`transport_config_with`] is the same, tuned
/// to a peer's route and a side's liveness settings.
///
/// Flow-control windows are limits, not allocations: memory is only used
/// when the application falls behind reading, and the connection window caps
/// the total across all streams.
pub fn transport_config() -> TransportConfig {
    base_transport_config(crate::path_mtu::ETHERNET_IPV4_UDP_PAYLOAD, Liveness::CLIENT)
}

fn base_transport_config(mtu_upper_bound: u16, liveness: Liveness) -> TransportConfig {
    let mut mtu_discovery = MtuDiscoveryConfig::default();
    mtu_discovery.upper_bound(mtu_upper_bound);
    let mut config = TransportConfig::default();
    config
        .mtu_discovery_config(Some(mtu_discovery))
        // One stream carries one SSH channel, and a single scp/sftp stream
        // should be able to fill the path: 32 MiB covers ~2.5 Gbit/s at
        // 100 ms RTT. Measured on loopback, 32/64 MiB windows gave ~386 MB/s
        // against ~343 MB/s with quinn's defaults.
        .stream_receive_window(VarInt::from_u32(32 * MIB))
        // Twice the stream window, so two bulk channels (or one bulk and many
        // interactive ones) run at full speed side by side, while a peer that
        // stops reading can pin at most 64 MiB of our memory.
        .receive_window(VarInt::from_u32(RECEIVE_WINDOW))
        // Matching the peer's receive window: data we may send but have not
        // had acknowledged is buffered here.
        .send_window(u64::from(64 * MIB))
        // Each SSH channel (session, forwarded connection, agent request) is
        // a bidirectional stream. The peer starts with credit for 32 at
        // once, raised ahead of its demand up to 258
        // (MAX_CONCURRENT_BIDI_STREAMS): far beyond an ordinary session
        // (browsers keep a few dozen connections per proxy) yet a bound on
        // what one peer can make us track. quinn allocates the state of
        // every stream the peer may open up front (with 1024 that was ~86
        // KiB per connection, most of sshqd's memory per idle session,
        // interop/results/bench-idle), hence the small start.
        .max_concurrent_bidi_streams(VarInt::from_u32(INITIAL_BIDI_STREAMS))
        // sshq/1 uses neither unidirectional streams nor DATAGRAM frames
        // (draft §3.2): allowing none means a peer cannot make us hold
        // streams or datagrams that nothing ever reads.
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .datagram_receive_buffer_size(None)
        // Initial RTT: quinn's default (333 ms, RFC 9002), deliberately not
        // lowered: it only matters until the first sample, and too low a
        // guess causes spurious retransmissions on long paths.
        // Segmentation offload (GSO): on, which is quinn's default; stated
        // because it is most of quinn's bulk speed (~10 datagrams per send
        // syscall) and must not be turned off casually.
        .enable_segmentation_offload(true);
    // draft §4.1: a client MUST keep an idle connection alive for as long as its session lasts
    liveness.apply(&mut config);
    // MTU discovery searches up to `mtu_upper_bound` (crate::path_mtu:
    // the route's MTU, at most what a GSO batch carries). On a path that
    // carries less, the probe is lost and the largest size that got
    // through stays. Asking the peer to acknowledge less often (ACK
    // frequency, thresholds 9 and 31) was measured and made no difference
    // above the noise.
    config
}

/// A QUIC congestion controller, chosen with `CongestionControl` in sshq's
/// and sshqd's configuration (quinn's default, CUBIC, when not set).
///
/// It is a knob for experiments and unusual paths: comparing QUIC with TCP
/// fairly needs the same controller on both (the lossy-link experiments
/// run TCP with CUBIC or BBR), and BBR keeps far more throughput than
/// CUBIC under random loss. quinn's BBR is marked experimental by quinn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CongestionControl {
    #[default]
    Cubic,
    Bbr,
    NewReno,
}

impl CongestionControl {
    /// The configuration values, as written in config files.
    pub const NAMES: &'static [(&'static str, CongestionControl)] = &[
        ("cubic", CongestionControl::Cubic),
        ("bbr", CongestionControl::Bbr),
        ("newreno", CongestionControl::NewReno),
    ];

    /// The value that names `self` in a config file (and in logs).
    pub fn name(self) -> &'static str {
        match self {
            CongestionControl::Cubic => "cubic",
            CongestionControl::Bbr => "bbr",
            CongestionControl::NewReno => "newreno",
        }
    }
}

/// [`transport_config`] with congestion controller `controller`, MTU
/// discovery up to `mtu_upper_bound` ([`crate::path_mtu::upper_bound`] of
/// the peer's address) and `liveness`.
pub fn transport_config_with(
    controller: CongestionControl,
    mtu_upper_bound: u16,
    liveness: Liveness,
) -> TransportConfig {
    use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
    let mut config = base_transport_config(mtu_upper_bound, liveness);
    match controller {
        CongestionControl::Cubic => {
            config.congestion_controller_factory(Arc::new(CubicConfig::default()))
        }
        CongestionControl::Bbr => {
            config.congestion_controller_factory(Arc::new(BbrConfig::default()))
        }
        CongestionControl::NewReno => {
            config.congestion_controller_factory(Arc::new(NewRenoConfig::default()))
        }
    };
    config
}

/// Binds the UDP socket for a quinn endpoint (client or server), with
/// [`SOCKET_BUFFER_BYTES`] of receive and send buffer.
///
/// Pass it to `quinn::Endpoint::new(EndpointConfig::default(), server_config,
/// socket, Arc::new(quinn::TokioRuntime))`. It is left non-blocking, as the
/// tokio runtime requires.
///
/// The buffer sizes are best effort: a socket with the kernel's default
/// buffers still works, only slower, so failing to enlarge them is logged,
/// not returned. On Linux the kernel silently caps SO_RCVBUF/SO_SNDBUF at
/// `net.core.rmem_max` / `net.core.wmem_max` (often 208 KiB); the privileged
/// SO_RCVBUFFORCE/SO_SNDBUFFORCE are then tried (they work with
/// CAP_NET_ADMIN, e.g. a root sshqd), and otherwise a warning says to raise
/// the limits (`sysctl -w net.core.rmem_max=16777216 net.core.wmem_max=16777216`).
pub fn bind_endpoint_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    grow_buffer(&socket, Direction::Receive);
    grow_buffer(&socket, Direction::Send);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[derive(Clone, Copy, Debug)]
enum Direction {
    Receive,
    Send,
}

impl Direction {
    fn set(self, socket: &Socket, size: usize) -> io::Result<()> {
        match self {
            Direction::Receive => socket.set_recv_buffer_size(size),
            Direction::Send => socket.set_send_buffer_size(size),
        }
    }

    /// The usable size. Linux reports twice what was granted (the extra half
    /// is its bookkeeping allowance), other systems report the size itself.
    fn effective(self, socket: &Socket) -> io::Result<usize> {
        let reported = match self {
            Direction::Receive => socket.recv_buffer_size()?,
            Direction::Send => socket.send_buffer_size()?,
        };
        Ok(if cfg!(any(target_os = "linux", target_os = "android")) {
            reported / 2
        } else {
            reported
        })
    }

    fn sysctl(self) -> &'static str {
        match self {
            Direction::Receive => "net.core.rmem_max",
            Direction::Send => "net.core.wmem_max",
        }
    }
}

/// Asks for [`SOCKET_BUFFER_BYTES`] in one direction, forcing past the
/// kernel's cap where allowed, and warns when the result is smaller.
fn grow_buffer(socket: &Socket, direction: Direction) {
    if let Err(e) = direction.set(socket, SOCKET_BUFFER_BYTES) {
        // E.g. macOS refuses sizes above kern.ipc.maxsockbuf outright.
        tracing::debug!(
            "could not set the UDP {direction:?} buffer to {SOCKET_BUFFER_BYTES} bytes: {e}"
        );
    }
    let effective = direction.effective(socket).unwrap_or(0);

    #[cfg(target_os = "linux")]
    let effective = if effective < SOCKET_BUFFER_BYTES {
        match force_buffer_size(socket, direction, SOCKET_BUFFER_BYTES) {
            Ok(()) => direction.effective(socket).unwrap_or(0),
            Err(e) => {
                tracing::debug!("forcing the UDP {direction:?} buffer size: {e}");
                effective
            }
        }
    } else {
        effective
    };

    if effective < SOCKET_BUFFER_BYTES {
        tracing::warn!(
            "the UDP {direction:?} buffer is {effective} bytes instead of {SOCKET_BUFFER_BYTES}: \
             expect packet loss and lower throughput on fast paths; raise {sysctl} to at least \
             {SOCKET_BUFFER_BYTES} (sysctl -w {sysctl}={SOCKET_BUFFER_BYTES})",
            sysctl = direction.sysctl(),
        );
    }
}

/// SO_RCVBUFFORCE / SO_SNDBUFFORCE: like SO_RCVBUF / SO_SNDBUF, but not
/// capped by the sysctl limits; the kernel allows it with CAP_NET_ADMIN only
/// (EPERM otherwise). socket2 does not wrap these options.
#[cfg(target_os = "linux")]
fn force_buffer_size(socket: &Socket, direction: Direction, size: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let option = match direction {
        Direction::Receive => libc::SO_RCVBUFFORCE,
        Direction::Send => libc::SO_SNDBUFFORCE,
    };
    let value =
        libc::c_int::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the descriptor is open for the duration of the call (borrowed
    // from `socket`), and the pointer and length describe `value`, a live
    // c_int that the kernel only reads.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(&value).cast::<libc::c_void>(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Exercises SO_RCVBUFFORCE past the sysctl cap: it either works
    /// (CAP_NET_ADMIN) and gives the full size, or fails with EPERM.
    #[test]
    fn forcing_a_buffer_past_the_cap_works_or_is_refused_cleanly() {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        let beyond_cap = 2 * SOCKET_BUFFER_BYTES.max(
            std::fs::read_to_string("/proc/sys/net/core/rmem_max")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        );
        match force_buffer_size(&socket, Direction::Receive, beyond_cap) {
            Ok(()) => assert_eq!(
                Direction::Receive.effective(&socket).expect("SO_RCVBUF"),
                beyond_cap
            ),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
        }
    }
}
