//! NAT rebinding: after `rebind`, the server sees the client's UDP and TCP
//! flows come from new source ports, as when a NAT in front of the client
//! drops its mappings and makes new ones.
//!
//! Why inside the emulator rather than nftables snat plus `conntrack -D` in
//! the client namespace: it needs neither the nft and conntrack tools nor the
//! kernel's NAT modules (which this kind of machine cannot load), each rebind
//! gives every flow a port it has never had, and it is a pure function of the
//! packets, so it is unit-tested like the rest of the pipeline.
//!
//! Model: an endpoint-independent NAT on the client's side of the link. Until
//! the first rebind it is transparent. After it, the first client→server
//! packet of each flow (protocol, client address, client port) is given an
//! external port; server→client packets to that port are mapped back, and
//! packets to ports without a mapping (such as the ones a previous rebind
//! discarded) are dropped, as a real NAT drops them.

use std::collections::HashMap;

/// External ports are taken from this range, round robin, so successive
/// rebinds hand out different ports.
const EXTERNAL_PORTS: std::ops::RangeInclusive<u16> = 20_000..=59_999;

/// Mappings kept at most; beyond this new flows are dropped rather than let
/// the table grow without bound.
const MAX_MAPPINGS: usize = 4096;

const PROTOCOL_TCP: u8 = 6;
const PROTOCOL_UDP: u8 = 17;

/// (protocol, client address, port): the client's port on the way out, the
/// external port on the way back.
type FlowKey = (u8, [u8; 4], u16);

#[derive(Default)]
pub struct Rebinder {
    rebinds: u64,
    to_external: HashMap<FlowKey, u16>,
    to_client: HashMap<FlowKey, u16>,
    next_port: u16,
    dropped: u64,
}

/// Where the ports and checksum of an IPv4 TCP or UDP packet are.
struct Transport {
    protocol: u8,
    source: [u8; 4],
    destination: [u8; 4],
    /// Offset of the transport header (its source port; destination port +2).
    header: usize,
    /// Offset of the transport checksum.
    checksum: usize,
}

impl Rebinder {
    pub fn new() -> Rebinder {
        Rebinder {
            next_port: *EXTERNAL_PORTS.start(),
            ..Rebinder::default()
        }
    }

    /// Forgets every mapping: from now on every flow gets a new external port.
    pub fn rebind(&mut self) {
        self.rebinds += 1;
        self.to_external.clear();
        self.to_client.clear();
    }

    pub fn rebinds(&self) -> u64 {
        self.rebinds
    }

    /// Packets dropped for want of a mapping (stale port, or table full).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Rewrites the source port of a client→server packet. Returns false if
    /// the packet must be dropped (no room for a new mapping).
    pub fn outbound(&mut self, packet: &mut [u8]) -> bool {
        if self.rebinds == 0 {
            return true;
        }
        let Some(transport) = locate_transport(packet) else {
            return true; // not TCP/UDP over IPv4, or a later fragment: no port to change
        };
        let client_port = read_u16(packet, transport.header);
        let key = (transport.protocol, transport.source, client_port);
        let external = match self.to_external.get(&key) {
            Some(&port) => port,
            None => match self.allocate(key) {
                Some(port) => port,
                None => {
                    self.dropped += 1;
                    return false;
                }
            },
        };
        rewrite_port(packet, &transport, transport.header, external);
        true
    }

    /// Rewrites the destination port of a server→client packet back to the
    /// client's. Returns false if the packet must be dropped (no mapping).
    pub fn inbound(&mut self, packet: &mut [u8]) -> bool {
        if self.rebinds == 0 {
            return true;
        }
        let Some(transport) = locate_transport(packet) else {
            return true;
        };
        let external = read_u16(packet, transport.header + 2);
        let key = (transport.protocol, transport.destination, external);
        let Some(&client_port) = self.to_client.get(&key) else {
            self.dropped += 1;
            return false;
        };
        rewrite_port(packet, &transport, transport.header + 2, client_port);
        true
    }

    fn allocate(&mut self, (protocol, address, client_port): FlowKey) -> Option<u16> {
        if self.to_external.len() >= MAX_MAPPINGS {
            return None;
        }
        // At most MAX_MAPPINGS + 1 ports are unusable (taken, or equal to the
        // client's own port, which would make the rebind invisible), so this
        // bounded scan always finds one.
        for _ in 0..=MAX_MAPPINGS + 1 {
            let candidate = self.next_port;
            self.next_port = if candidate >= *EXTERNAL_PORTS.end() {
                *EXTERNAL_PORTS.start()
            } else {
                candidate + 1
            };
            let back = (protocol, address, candidate);
            if candidate != client_port && !self.to_client.contains_key(&back) {
                self.to_external
                    .insert((protocol, address, client_port), candidate);
                self.to_client.insert(back, client_port);
                return Some(candidate);
            }
        }
        None
    }
}

fn read_u16(packet: &[u8], offset: usize) -> u16 {
    u16::from_be_bytes([packet[offset], packet[offset + 1]])
}

fn write_u16(packet: &mut [u8], offset: usize, value: u16) {
    packet[offset..offset + 2].copy_from_slice(&value.to_be_bytes());
}

/// Finds the TCP or UDP header of an IPv4 packet, checking every length so
/// that the offsets returned are inside `packet`. `None` for anything else,
/// including truncated packets and fragments after the first (which carry no
/// ports).
fn locate_transport(packet: &[u8]) -> Option<Transport> {
    let version_and_length = *packet.first()?;
    if version_and_length >> 4 != 4 || packet.len() < 20 {
        return None;
    }
    let header = usize::from(version_and_length & 0x0f) * 4;
    let fragment_offset = read_u16(packet, 6) & 0x1fff;
    if header < 20 || fragment_offset != 0 {
        return None;
    }
    let protocol = packet[9];
    let checksum = match protocol {
        PROTOCOL_UDP => header + 6,
        PROTOCOL_TCP => header + 16,
        _ => return None,
    };
    if packet.len() < checksum + 2 {
        return None;
    }
    let address = |offset: usize| {
        [
            packet[offset],
            packet[offset + 1],
            packet[offset + 2],
            packet[offset + 3],
        ]
    };
    Some(Transport {
        protocol,
        source: address(12),
        destination: address(16),
        header,
        checksum,
    })
}

/// Replaces the port at `offset` and updates the transport checksum
/// incrementally (RFC 1624, equation 3), which stays valid whatever the rest
/// of the packet holds.
fn rewrite_port(packet: &mut [u8], transport: &Transport, offset: usize, new_port: u16) {
    let old_port = read_u16(packet, offset);
    write_u16(packet, offset, new_port);
    let checksum = read_u16(packet, transport.checksum);
    if transport.protocol == PROTOCOL_UDP && checksum == 0 {
        return; // UDP over IPv4 without a checksum: nothing to update
    }
    let mut sum = u32::from(!checksum) + u32::from(!old_port) + u32::from(new_port);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    let mut updated = !(sum as u16);
    if transport.protocol == PROTOCOL_UDP && updated == 0 {
        updated = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    write_u16(packet, transport.checksum, updated);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: [u8; 4] = [10, 77, 0, 1];
    const SERVER: [u8; 4] = [10, 77, 1, 1];

    /// One's-complement sum over the pseudo-header and transport segment.
    fn transport_checksum(packet: &[u8]) -> u16 {
        let header = usize::from(packet[0] & 0x0f) * 4;
        let segment = &packet[header..];
        let mut sum: u32 = 0;
        let mut add = |bytes: &[u8]| {
            for pair in bytes.chunks(2) {
                let high = u32::from(pair[0]) << 8;
                sum += high | u32::from(pair.get(1).copied().unwrap_or(0));
            }
        };
        add(&packet[12..20]);
        add(&[0, packet[9]]);
        add(&(segment.len() as u16).to_be_bytes());
        add(segment);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// A valid IPv4 UDP packet (or TCP with `protocol` 6) with a correct checksum.
    fn packet(protocol: u8, from: ([u8; 4], u16), to: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
        let transport_len = if protocol == PROTOCOL_TCP { 20 } else { 8 };
        let total = 20 + transport_len + payload.len();
        let mut p = vec![0u8; total];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[8] = 64;
        p[9] = protocol;
        p[12..16].copy_from_slice(&from.0);
        p[16..20].copy_from_slice(&to.0);
        p[20..22].copy_from_slice(&from.1.to_be_bytes());
        p[22..24].copy_from_slice(&to.1.to_be_bytes());
        if protocol == PROTOCOL_UDP {
            p[24..26].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        } else {
            p[32] = 5 << 4;
        }
        p[20 + transport_len..].copy_from_slice(payload);
        let checksum_at = if protocol == PROTOCOL_TCP { 36 } else { 26 };
        let checksum = transport_checksum(&p);
        p[checksum_at..checksum_at + 2].copy_from_slice(&checksum.to_be_bytes());
        p
    }

    fn ports(p: &[u8]) -> (u16, u16) {
        (read_u16(p, 20), read_u16(p, 22))
    }

    #[test]
    fn transparent_until_the_first_rebind() {
        let mut nat = Rebinder::new();
        let original = packet(PROTOCOL_UDP, (CLIENT, 5000), (SERVER, 443), b"hello");
        let mut p = original.clone();
        assert!(nat.outbound(&mut p));
        assert_eq!(p, original);
    }

    #[test]
    fn rebind_changes_the_source_port_and_maps_replies_back() {
        let mut nat = Rebinder::new();
        nat.rebind();
        for protocol in [PROTOCOL_UDP, PROTOCOL_TCP] {
            let mut out = packet(protocol, (CLIENT, 5000), (SERVER, 443), b"odd-length");
            assert!(nat.outbound(&mut out));
            let (external, _) = ports(&out);
            assert_ne!(external, 5000);
            assert_eq!(transport_checksum(&out), 0, "checksum broken after rewrite");

            let mut reply = packet(protocol, (SERVER, 443), (CLIENT, external), b"reply");
            assert!(nat.inbound(&mut reply));
            assert_eq!(ports(&reply), (443, 5000));
            assert_eq!(transport_checksum(&reply), 0);

            // The same flow keeps its external port until the next rebind.
            let mut again = packet(protocol, (CLIENT, 5000), (SERVER, 443), b"x");
            assert!(nat.outbound(&mut again));
            assert_eq!(ports(&again).0, external);
        }
    }

    #[test]
    fn a_second_rebind_gives_a_new_port_and_drops_replies_to_the_old() {
        let mut nat = Rebinder::new();
        nat.rebind();
        let mut first = packet(PROTOCOL_UDP, (CLIENT, 5000), (SERVER, 443), b"a");
        nat.outbound(&mut first);
        let old = ports(&first).0;
        nat.rebind();
        let mut second = packet(PROTOCOL_UDP, (CLIENT, 5000), (SERVER, 443), b"a");
        nat.outbound(&mut second);
        assert_ne!(ports(&second).0, old);
        let mut stale = packet(PROTOCOL_UDP, (SERVER, 443), (CLIENT, old), b"late");
        assert!(!nat.inbound(&mut stale));
        assert_eq!(nat.dropped(), 1);
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut nat = Rebinder::new();
        nat.rebind();
        let mut p = packet(PROTOCOL_UDP, (CLIENT, 5000), (SERVER, 443), b"abc");
        p[26] = 0;
        p[27] = 0;
        assert!(nat.outbound(&mut p));
        assert_eq!(read_u16(&p, 26), 0);
    }

    #[test]
    fn malformed_and_foreign_packets_pass_untouched() {
        let mut nat = Rebinder::new();
        nat.rebind();
        let udp = packet(PROTOCOL_UDP, (CLIENT, 5000), (SERVER, 443), b"abc");
        let mut icmp = udp.clone();
        icmp[9] = 1;
        let mut later_fragment = udp.clone();
        later_fragment[7] = 10;
        let mut bad_header_length = udp.clone();
        bad_header_length[0] = 0x4f; // 60-byte header in a 31-byte packet
        let ipv6 = vec![0x60u8; 60];
        let cases = [
            Vec::new(),
            vec![0x45],
            udp[..25].to_vec(),
            icmp,
            later_fragment,
            bad_header_length,
            ipv6,
        ];
        for case in cases {
            let mut p = case.clone();
            assert!(nat.outbound(&mut p));
            assert!(nat.inbound(&mut p));
            assert_eq!(p, case);
        }
    }

    #[test]
    fn the_mapping_table_is_bounded() {
        let mut nat = Rebinder::new();
        nat.rebind();
        for port in 0..MAX_MAPPINGS as u16 {
            let mut p = packet(PROTOCOL_UDP, (CLIENT, 1000 + port), (SERVER, 443), b"");
            assert!(nat.outbound(&mut p));
        }
        let mut one_more = packet(PROTOCOL_UDP, (CLIENT, 9999), (SERVER, 443), b"");
        assert!(!nat.outbound(&mut one_more));
        nat.rebind();
        assert!(nat.outbound(&mut one_more));
    }
}
