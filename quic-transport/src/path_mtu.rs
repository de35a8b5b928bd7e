//! How large a datagram MTU discovery may try on the way to a peer.
//!
//! Every QUIC packet costs a fixed amount of work (a header, an AEAD tag
//! and header protection, an acknowledgement, a slot in a GSO batch), so
//! larger datagrams are most of where bulk speed hides: on loopback, 6500
//! byte datagrams took the CPU per GiB uploaded from about 1.9 s to 1.2 s
//! in the client and from 1.85 s to 1.35 s in sshqd (interop/run
//! bench-loopback). MTU discovery (RFC 8899, quinn's binary search) finds
//! what the path carries; this module picks the ceiling it searches up to:
//! the MTU of the route to the peer, as the kernel knows it, so that a
//! 1500-byte Ethernet path never sees a probe it could not carry in the
//! first place, while loopback and jumbo-frame links get large datagrams.

use std::net::SocketAddr;

/// The most a UDP payload may be here, whatever the route: quinn hands the
/// kernel up to 10 datagrams per GSO send (quinn's MAX_TRANSMIT_SEGMENTS)
/// and the kernel refuses a batch over 64 KiB (it is one IP packet until
/// it is segmented), so 10 x 6500 bytes plus headers is the largest that
/// still goes out. Measured: with loopback's whole 64 KiB allowed, every
/// batch of large datagrams failed, quinn took the losses for a black hole
/// and fell back to 1200-byte packets.
pub const MAX_UDP_PAYLOAD: u16 = 6500;

/// The ceiling when the route's MTU cannot be read: what an Ethernet MTU
/// of 1500 carries over IPv4 (1500 - 20 - 8).
pub const ETHERNET_IPV4_UDP_PAYLOAD: u16 = 1472;

/// QUIC's own floor (RFC 9000 §14): no path below it is usable, and quinn
/// never searches below it.
const QUIC_MIN_UDP_PAYLOAD: u16 = 1200;

/// The ceiling of MTU discovery toward `peer`: the MTU of the kernel's
/// route to it, less the IP and UDP headers, within
/// [`QUIC_MIN_UDP_PAYLOAD`]..=[`MAX_UDP_PAYLOAD`].
///
/// Reading the route sends nothing (a connected UDP socket that is closed
/// unused). Where it cannot be read (another OS, no route), the answer is
/// [`ETHERNET_IPV4_UDP_PAYLOAD`], which is what every path got before.
pub fn upper_bound(peer: SocketAddr) -> u16 {
    match route_mtu(peer) {
        Some(mtu) => udp_payload_within(mtu, peer),
        None => ETHERNET_IPV4_UDP_PAYLOAD,
    }
}

/// The UDP payload an IP MTU of `mtu` carries to `peer`, clamped to the
/// range discovery may use.
fn udp_payload_within(mtu: u32, peer: SocketAddr) -> u16 {
    let headers = match peer {
        SocketAddr::V4(_) => 20 + 8,
        SocketAddr::V6(_) => 40 + 8,
    };
    let payload = mtu.saturating_sub(headers);
    let clamped = payload.clamp(u32::from(QUIC_MIN_UDP_PAYLOAD), u32::from(MAX_UDP_PAYLOAD));
    u16::try_from(clamped).unwrap_or(MAX_UDP_PAYLOAD)
}

/// The MTU the kernel holds for the route to `peer` (IP_MTU / IPV6_MTU
/// on a connected socket): the outgoing link's MTU, or less where the
/// kernel has learned a smaller path MTU.
#[cfg(target_os = "linux")]
fn route_mtu(peer: SocketAddr) -> Option<u32> {
    use std::os::fd::AsRawFd;

    let local: SocketAddr = match peer {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(local).ok()?;
    socket.connect(peer).ok()?;
    let (level, name) = match peer {
        SocketAddr::V4(_) => (libc::IPPROTO_IP, libc::IP_MTU),
        SocketAddr::V6(_) => (libc::IPPROTO_IPV6, libc::IPV6_MTU),
    };
    let mut mtu: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the socket is open for the whole call; `mtu` and `len` are
    // valid for writes and `len` holds `mtu`'s size, as getsockopt needs.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut mtu as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if result != 0 {
        return None;
    }
    u32::try_from(mtu).ok()
}

#[cfg(not(target_os = "linux"))]
fn route_mtu(_peer: SocketAddr) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4() -> SocketAddr {
        "192.0.2.1:22".parse().unwrap()
    }

    fn v6() -> SocketAddr {
        "[2001:db8::1]:22".parse().unwrap()
    }

    #[test]
    fn ethernet_gives_the_classic_payloads() {
        assert_eq!(udp_payload_within(1500, v4()), 1472);
        assert_eq!(udp_payload_within(1500, v6()), 1452);
    }

    #[test]
    fn large_links_stop_at_what_a_gso_batch_carries() {
        assert_eq!(udp_payload_within(9000, v4()), MAX_UDP_PAYLOAD);
        assert_eq!(udp_payload_within(65536, v6()), MAX_UDP_PAYLOAD);
        // Ten datagrams of the largest size still fit in one 64 KiB send.
        assert!(10 * u32::from(MAX_UDP_PAYLOAD) + 48 <= 65535);
    }

    #[test]
    fn small_mtus_stay_at_quics_floor() {
        assert_eq!(udp_payload_within(1280, v6()), 1232);
        assert_eq!(udp_payload_within(1200, v4()), QUIC_MIN_UDP_PAYLOAD);
        assert_eq!(udp_payload_within(0, v4()), QUIC_MIN_UDP_PAYLOAD);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn loopback_routes_allow_large_datagrams() {
        // Loopback's MTU is 64 KiB on Linux (`ip link show lo`).
        assert_eq!(
            upper_bound("127.0.0.1:22".parse().unwrap()),
            MAX_UDP_PAYLOAD
        );
    }
}
