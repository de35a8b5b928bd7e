//! The framing of the `direct-udp@sshq` subsystem (draft §11.1): the
//! target the client names first ([`UdpRelayTarget`]), then datagrams as
//! `uint16 length || payload` ([`Datagram`]), both ways.
//!
//! The client (`sshq`'s ProxyJump) writes these and the jump host
//! (sshqd's relay) reads them; both use this one codec. Reading from a
//! byte stream is left to the callers, which need it cancel-safe
//! (`crate::stream_socket::DatagramReader`) or time-limited.

use bytes::{Bytes, BytesMut};

use super::codec::{Codec, DecodeError, EncodeError, Reader, Writer};

/// The subsystem's name as sshq 0.1 sends it. It has no domain, which
/// RFC 4251 §6 asks of an unregistered name; clients keep sending it until
/// the domain of [`SUBSYSTEM_WITH_DOMAIN`] is settled (draft Appendix A,
/// item 24).
pub const SUBSYSTEM: &str = "direct-udp@sshq";

/// The subsystem's name in the draft (draft §11.1).
pub const SUBSYSTEM_WITH_DOMAIN: &str = "direct-udp@sshq.dev";

/// Whether a subsystem request names this relay.
pub fn is_subsystem(name: &str) -> bool {
    // draft §11.1: servers SHOULD accept both names during the transition
    name == SUBSYSTEM_WITH_DOMAIN || name == SUBSYSTEM
}

/// Host names are at most 255 bytes (draft §11.1: 1 to 255 octets).
pub const MAX_HOST_LEN: usize = 255;

/// Bytes before a target's host name: its uint32 length.
pub const TARGET_HEADER_LEN: usize = 4;

/// The first bytes a client sends: `string host || uint32 port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpRelayTarget {
    pub host: String,
    pub port: u16,
}

impl UdpRelayTarget {
    /// How many bytes follow a target's 4-byte header (the host's length),
    /// checked before any of them is waited for: a bad length is refused
    /// at once.
    pub fn remaining_len(header: [u8; TARGET_HEADER_LEN]) -> Result<usize, DecodeError> {
        let host_len = host_len(u32::from_be_bytes(header))?;
        Ok(host_len + 4)
    }
}

/// draft §11.1: host is 1 to 255 octets.
fn host_len(announced: u32) -> Result<usize, DecodeError> {
    usize::try_from(announced)
        .ok()
        .filter(|len| (1..=MAX_HOST_LEN).contains(len))
        .ok_or(DecodeError::TargetHostLength(announced))
}

impl Codec for UdpRelayTarget {
    fn read(r: &mut Reader) -> Result<UdpRelayTarget, DecodeError> {
        let announced = r.u32().ok_or(DecodeError::TargetTruncated)?;
        let host = r
            .take(host_len(announced)?)
            .ok_or(DecodeError::TargetTruncated)?;
        // draft §11.1: host is UTF-8.
        let host = String::from_utf8(host.to_vec()).map_err(|_| DecodeError::TargetHostNotUtf8)?;
        let port = r.u32().ok_or(DecodeError::TargetTruncated)?;
        // draft §11.1: port is 1 to 65535.
        let port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or(DecodeError::TargetPort(port))?;
        Ok(UdpRelayTarget { host, port })
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if !(1..=MAX_HOST_LEN).contains(&self.host.len()) {
            return Err(EncodeError::TargetHostLength(self.host.len()));
        }
        if self.port == 0 {
            return Err(EncodeError::TargetPort);
        }
        Writer::new(out)
            .string("host", self.host.as_bytes())?
            .u32(u32::from(self.port));
        Ok(())
    }
}

/// One relayed datagram: `uint16 length || payload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram(pub Bytes);

/// Bytes before a datagram's payload: its uint16 length.
pub const DATAGRAM_HEADER_LEN: usize = 2;

impl Datagram {
    /// The header of a datagram of `len` bytes, for writing the payload
    /// separately without copying it.
    pub fn header(len: usize) -> Result<[u8; DATAGRAM_HEADER_LEN], EncodeError> {
        u16::try_from(len)
            .map(u16::to_be_bytes)
            .map_err(|_| EncodeError::DatagramTooLong(len))
    }

    /// Splits the first datagram off `pending` if all of it has arrived;
    /// `None` (taking nothing) otherwise. Every length is valid, so this
    /// cannot fail: a stream can only end inside a datagram.
    pub fn split_complete(pending: &mut BytesMut) -> Option<Bytes> {
        let header = pending.get(..DATAGRAM_HEADER_LEN)?;
        let len = usize::from(u16::from_be_bytes([*header.first()?, *header.get(1)?]));
        if pending.len() < DATAGRAM_HEADER_LEN + len {
            return None;
        }
        let mut framed = pending.split_to(DATAGRAM_HEADER_LEN + len);
        Some(framed.split_off(DATAGRAM_HEADER_LEN).freeze())
    }
}

impl Codec for Datagram {
    fn read(r: &mut Reader) -> Result<Datagram, DecodeError> {
        let len = r.u16().ok_or(DecodeError::DatagramTruncated)?;
        r.take(usize::from(len))
            .map(Datagram)
            .ok_or(DecodeError::DatagramTruncated)
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let header = Datagram::header(self.0.len())?;
        Writer::new(out).raw(&header).raw(&self.0);
        Ok(())
    }
}
