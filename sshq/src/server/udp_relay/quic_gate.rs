//! The default `AllowUdpRelay quic`: the relay carries a QUIC connection
//! to its target and nothing else.
//!
//! A ProxyJump over QUIC needs only that, and UDP services behind the jump
//! host (DNS resolvers, syslog, VPNs, anything bound to loopback) must not
//! become reachable through it. Until the target has answered as a QUIC
//! server, the client may send only QUIC version 1 Initial packets, padded
//! to 1200 bytes as RFC 9000 §14.1 requires of a client's first datagrams,
//! and at most [`MAX_UNANSWERED`] of them; only a long-header version 1
//! packet addressed to a connection ID the client chose (and not merely
//! echoing the client's own) counts as the answer, and nothing else from
//! the target is passed back before it. After that the datagrams flow
//! unchecked: short headers carry nothing a relay could verify (RFC 9287
//! even lets peers grease the one fixed bit).
//!
//! What a client can still make the target receive is a few Initial-shaped
//! datagrams; what it gets back is only what a QUIC server would send.

/// Client datagrams relayed before the target answers: a handshake needs
/// two or three (a post-quantum ClientHello spans two Initials) and a few
/// retransmissions; a target that stays silent gets no more than this.
pub const MAX_UNANSWERED: usize = 16;

/// RFC 9000 §14.1: a client's datagrams carrying Initial packets are at
/// least this large.
const MIN_INITIAL_DATAGRAM: usize = 1200;

/// RFC 9000 §17.2: connection IDs of version 1 are at most 20 bytes.
const MAX_CID_LEN: usize = 20;

const QUIC_V1: [u8; 4] = [0, 0, 0, 1];

/// Where a relayed connection stands.
#[derive(Debug, Default)]
pub struct QuicGate {
    /// (destination, source) connection IDs of the client's Initials.
    client_ids: Vec<(Vec<u8>, Vec<u8>)>,
    relayed: usize,
    answered: bool,
}

/// What to do with one datagram from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientVerdict {
    Relay,
    /// The target has not answered yet and had its share of Initials.
    Drop,
    /// Not QUIC: the relay ends with this reason.
    Refuse(&'static str),
}

/// The fields of a long header this gate looks at.
struct LongHeader<'a> {
    first: u8,
    version: &'a [u8],
    dcid: &'a [u8],
    scid: &'a [u8],
}

fn long_header(datagram: &[u8]) -> Option<LongHeader<'_>> {
    let first = *datagram.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    let version = datagram.get(1..5)?;
    let dcid_len = usize::from(*datagram.get(5)?);
    let dcid = datagram.get(6..6 + dcid_len)?;
    let scid_len = usize::from(*datagram.get(6 + dcid_len)?);
    let scid_start = 7 + dcid_len;
    let scid = datagram.get(scid_start..scid_start + scid_len)?;
    if dcid_len > MAX_CID_LEN || scid_len > MAX_CID_LEN {
        return None;
    }
    Some(LongHeader {
        first,
        version,
        dcid,
        scid,
    })
}

impl QuicGate {
    pub fn new() -> QuicGate {
        QuicGate::default()
    }

    /// Whether the target has answered as a QUIC server.
    #[cfg(test)]
    pub fn answered(&self) -> bool {
        self.answered
    }

    pub fn check_client_datagram(&mut self, datagram: &[u8]) -> ClientVerdict {
        if self.answered {
            return ClientVerdict::Relay;
        }
        let Some(header) = long_header(datagram) else {
            return ClientVerdict::Refuse("the first datagrams are not QUIC long-header packets");
        };
        // Initial: fixed bit set, long packet type 0.
        let initial = header.first & 0x40 != 0 && header.first & 0x30 == 0;
        if header.version != QUIC_V1 || !initial {
            return ClientVerdict::Refuse("the first datagrams are not QUIC version 1 Initials");
        }
        // draft §11.1: until the target answers, each client datagram MUST be a padded QUIC v1 Initial of at least 1200 octets
        if datagram.len() < MIN_INITIAL_DATAGRAM {
            return ClientVerdict::Refuse("the first datagrams are not padded QUIC Initials");
        }
        // draft §11.1: at most 16 datagrams are relayed before the target has answered
        if self.relayed >= MAX_UNANSWERED {
            return ClientVerdict::Drop;
        }
        let ids = (header.dcid.to_vec(), header.scid.to_vec());
        if !self.client_ids.contains(&ids) {
            self.client_ids.push(ids);
        }
        self.relayed += 1;
        ClientVerdict::Relay
    }

    /// Whether a datagram from the target goes to the client.
    pub fn check_target_datagram(&mut self, datagram: &[u8]) -> bool {
        if self.answered {
            return true;
        }
        let Some(header) = long_header(datagram) else {
            return false;
        };
        // A server's packets go to the connection ID the client chose as
        // its source; an echo of the client's own packet would carry that
        // same ID as its source, which a server never does.
        // draft §11.1: the target answers only with a v1 long header to a client SCID whose own SCID differs
        let answers = header.version == QUIC_V1
            && self
                .client_ids
                .iter()
                .any(|(_, scid)| header.dcid == scid.as_slice() && header.scid != scid.as_slice());
        self.answered = answers;
        answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long-header packet padded to `len` bytes.
    fn packet(first: u8, version: [u8; 4], dcid: &[u8], scid: &[u8], len: usize) -> Vec<u8> {
        let mut p = vec![first];
        p.extend_from_slice(&version);
        p.push(dcid.len() as u8);
        p.extend_from_slice(dcid);
        p.push(scid.len() as u8);
        p.extend_from_slice(scid);
        p.resize(len.max(p.len()), 0);
        p
    }

    const CLIENT_DCID: &[u8] = b"\x11\x22\x33\x44\x55\x66\x77\x88";
    const CLIENT_SCID: &[u8] = b"\xaa\xbb\xcc\xdd\xee\xff\x00\x01";

    fn initial() -> Vec<u8> {
        packet(0xc3, QUIC_V1, CLIENT_DCID, CLIENT_SCID, 1200)
    }

    #[test]
    fn a_quic_handshake_opens_the_gate() {
        let mut gate = QuicGate::new();
        assert_eq!(gate.check_client_datagram(&initial()), ClientVerdict::Relay);
        // The server's Initial: to the client's source ID, from its own.
        let answer = packet(0xc0, QUIC_V1, CLIENT_SCID, b"\x01\x02\x03\x04", 1200);
        assert!(gate.check_target_datagram(&answer));
        assert!(gate.answered());
        // From now on short headers flow both ways.
        assert_eq!(
            gate.check_client_datagram(b"\x41short"),
            ClientVerdict::Relay
        );
        assert!(gate.check_target_datagram(b"\x41short"));
    }

    #[test]
    fn anything_but_padded_v1_initials_is_refused_first() {
        let refused = [
            b"\x00\x01dns query".to_vec(),
            packet(0xc3, QUIC_V1, CLIENT_DCID, CLIENT_SCID, 1199),
            packet(0xc3, [0, 0, 0, 2], CLIENT_DCID, CLIENT_SCID, 1200),
            packet(0xe3, QUIC_V1, CLIENT_DCID, CLIENT_SCID, 1200), // Handshake type
            packet(0x83, QUIC_V1, CLIENT_DCID, CLIENT_SCID, 1200), // fixed bit clear
            packet(0xc3, QUIC_V1, &[7; 21], CLIENT_SCID, 1200),
            vec![0xc3, 0, 0, 0, 1, 40],
        ];
        for datagram in refused {
            let mut gate = QuicGate::new();
            assert!(
                matches!(
                    gate.check_client_datagram(&datagram),
                    ClientVerdict::Refuse(_)
                ),
                "{:02x?}",
                &datagram[..8.min(datagram.len())]
            );
        }
    }

    #[test]
    fn an_echo_or_a_stranger_does_not_count_as_an_answer() {
        let mut gate = QuicGate::new();
        assert_eq!(gate.check_client_datagram(&initial()), ClientVerdict::Relay);
        // An echo service sends the Initial back as it came.
        assert!(!gate.check_target_datagram(&initial()));
        // An echo of a packet whose two IDs are equal is still the client's own.
        let mut twin = QuicGate::new();
        let same = packet(0xc3, QUIC_V1, CLIENT_SCID, CLIENT_SCID, 1200);
        assert_eq!(twin.check_client_datagram(&same), ClientVerdict::Relay);
        assert!(!twin.check_target_datagram(&same));
        // A reply not addressed to the client's ID, or not QUIC.
        assert!(!gate.check_target_datagram(&packet(0xc0, QUIC_V1, b"other", b"\x01", 1200)));
        assert!(!gate.check_target_datagram(b"\x81\x80\x00\x01plain udp reply"));
        assert!(!gate.answered());
    }

    #[test]
    fn a_silent_target_gets_a_bounded_number_of_initials() {
        let mut gate = QuicGate::new();
        for _ in 0..MAX_UNANSWERED {
            assert_eq!(gate.check_client_datagram(&initial()), ClientVerdict::Relay);
        }
        assert_eq!(gate.check_client_datagram(&initial()), ClientVerdict::Drop);
    }
}
