//! The server's group choice: a hybrid whenever the client offers one.
//!
//! rustls (0.23) picks the first group of the *client's* `supported_groups`
//! that the server also has, then answers with a HelloRetryRequest if the
//! client sent no key share for it. A client listing `x25519` before a
//! hybrid therefore gets plain X25519 from a server that could have given
//! it post-quantum protection. Draft §4.4.4 makes it a MUST that an sshq
//! server selects a hybrid group whenever the client offers one, even when
//! a classical share is present: traffic recorded today must not become
//! readable once X25519 falls, whichever order or shares the client chose.
//!
//! rustls has no server-side group preference, so this module gets it from
//! outside: [`server_crypto`] wraps the quinn server configuration; each
//! connection's session reads the ClientHello's `supported_groups` before
//! rustls does and, if it lists a hybrid this server has, makes the
//! classical group step aside (its `usable_for_version` answers false) for
//! the duration of rustls's processing of that connection's handshake
//! bytes. rustls then selects the hybrid, through a HelloRetryRequest when
//! the client sent only an X25519 share. The flag is thread-local and set
//! only inside one synchronous `read_handshake` call, so no other
//! connection (nor a client on the same thread) ever sees it.

use std::any::Any;
use std::cell::Cell;
use std::sync::Arc;

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicServerConfig};
use quinn::crypto::{self, ExportKeyingMaterialError, KeyPair, Keys, PacketKey};
use quinn::{ConnectionId, Side};
use quinn_proto::transport_parameters::TransportParameters;
use quinn_proto::TransportError;
use rustls::crypto::{ActiveKeyExchange, CompletedKeyExchange, SupportedKxGroup};
use rustls::{Error, NamedGroup, ProtocolVersion};

use super::{group_name, X25519_MLKEM768_NAME, X25519_SNTRUP761_NAME};

thread_local! {
    /// Set while the current thread's rustls processes handshake bytes of a
    /// connection whose client offered a hybrid group this server has.
    static HYBRID_OFFERED: Cell<bool> = const { Cell::new(false) };
}

/// Sets [`HYBRID_OFFERED`] until dropped (also on unwinding).
struct HybridOffered;

impl HybridOffered {
    fn enter() -> Self {
        HYBRID_OFFERED.with(|flag| flag.set(true));
        HybridOffered
    }
}

impl Drop for HybridOffered {
    fn drop(&mut self) {
        HYBRID_OFFERED.with(|flag| flag.set(false));
    }
}

/// Plain X25519, unusable while the client being answered offers a hybrid.
/// The client side never sets the flag, so there it is plain X25519.
#[derive(Debug)]
pub(crate) struct ClassicalUnlessHybridOffered {
    inner: &'static dyn SupportedKxGroup,
}

/// The X25519 group sshq's providers hold.
pub(crate) static X25519_UNLESS_HYBRID_OFFERED: ClassicalUnlessHybridOffered =
    ClassicalUnlessHybridOffered {
        inner: rustls::crypto::ring::kx_group::X25519,
    };

impl SupportedKxGroup for ClassicalUnlessHybridOffered {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        self.inner.start()
    }

    fn start_and_complete(&self, peer_pub_key: &[u8]) -> Result<CompletedKeyExchange, Error> {
        self.inner.start_and_complete(peer_pub_key)
    }

    fn ffdhe_group(&self) -> Option<rustls::ffdhe_groups::FfdheGroup<'static>> {
        self.inner.ffdhe_group()
    }

    fn name(&self) -> NamedGroup {
        self.inner.name()
    }

    fn fips(&self) -> bool {
        self.inner.fips()
    }

    fn usable_for_version(&self, version: ProtocolVersion) -> bool {
        // draft §4.4.4: a server that supports a hybrid the client lists MUST select a hybrid, by HelloRetryRequest if needed
        !HYBRID_OFFERED.with(Cell::get) && self.inner.usable_for_version(version)
    }
}

fn is_hybrid(group: NamedGroup) -> bool {
    matches!(
        group_name(group),
        Some(X25519_SNTRUP761_NAME | X25519_MLKEM768_NAME)
    )
}

/// quinn's server crypto for `tls`, selecting a hybrid group whenever the
/// client offers one `tls`'s provider has (see the module documentation).
pub fn server_crypto(
    tls: rustls::ServerConfig,
) -> Result<Arc<dyn crypto::ServerConfig>, NoInitialCipherSuite> {
    let hybrids: Vec<NamedGroup> = tls
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|group| group.name())
        .filter(|&group| is_hybrid(group))
        .collect();
    let inner = Arc::new(QuicServerConfig::try_from(tls)?);
    if hybrids.is_empty() {
        // Nothing to prefer: rustls's own choice is the only one.
        return Ok(inner);
    }
    Ok(Arc::new(HybridFirstServerConfig { inner, hybrids }))
}

struct HybridFirstServerConfig {
    inner: Arc<QuicServerConfig>,
    /// The hybrid groups this server has.
    hybrids: Vec<NamedGroup>,
}

impl crypto::ServerConfig for HybridFirstServerConfig {
    fn initial_keys(
        &self,
        version: u32,
        dst_cid: &ConnectionId,
    ) -> Result<Keys, crypto::UnsupportedVersion> {
        self.inner.initial_keys(version, dst_cid)
    }

    fn retry_tag(&self, version: u32, orig_dst_cid: &ConnectionId, packet: &[u8]) -> [u8; 16] {
        self.inner.retry_tag(version, orig_dst_cid, packet)
    }

    fn start_session(
        self: Arc<Self>,
        version: u32,
        params: &TransportParameters,
    ) -> Box<dyn crypto::Session> {
        Box::new(HybridFirstSession {
            inner: self.inner.clone().start_session(version, params),
            hybrids: self.hybrids.clone(),
            hello: ClientHelloState::Reading(Vec::new()),
        })
    }
}

/// What is known of the client's first ClientHello.
enum ClientHelloState {
    /// Its bytes so far.
    Reading(Vec<u8>),
    /// Read: whether it offered a hybrid this server has.
    Read { hybrid_offered: bool },
}

struct HybridFirstSession {
    inner: Box<dyn crypto::Session>,
    hybrids: Vec<NamedGroup>,
    hello: ClientHelloState,
}

impl HybridFirstSession {
    fn note_client_hello(&mut self, buf: &[u8]) {
        let ClientHelloState::Reading(bytes) = &mut self.hello else {
            return;
        };
        bytes.extend_from_slice(buf);
        let hybrid_offered = match offered_groups(bytes) {
            HelloGroups::Incomplete => return,
            HelloGroups::Offered(groups) => groups.iter().any(|g| self.hybrids.contains(g)),
            // rustls will refuse it itself, with the right alert.
            HelloGroups::Malformed => false,
        };
        self.hello = ClientHelloState::Read { hybrid_offered };
    }

    fn hybrid_offered(&self) -> bool {
        matches!(
            self.hello,
            ClientHelloState::Read {
                hybrid_offered: true
            }
        )
    }
}

impl crypto::Session for HybridFirstSession {
    fn initial_keys(&self, dst_cid: &ConnectionId, side: Side) -> Keys {
        self.inner.initial_keys(dst_cid, side)
    }

    fn handshake_data(&self) -> Option<Box<dyn Any>> {
        self.inner.handshake_data()
    }

    fn peer_identity(&self) -> Option<Box<dyn Any>> {
        self.inner.peer_identity()
    }

    fn early_crypto(&self) -> Option<(Box<dyn crypto::HeaderKey>, Box<dyn PacketKey>)> {
        self.inner.early_crypto()
    }

    fn early_data_accepted(&self) -> Option<bool> {
        self.inner.early_data_accepted()
    }

    fn is_handshaking(&self) -> bool {
        self.inner.is_handshaking()
    }

    /// Both ClientHellos (the second after a HelloRetryRequest) are
    /// processed with the classical group stepped aside when the first
    /// offered a hybrid: rustls chooses again for the second one.
    fn read_handshake(&mut self, buf: &[u8]) -> Result<bool, TransportError> {
        self.note_client_hello(buf);
        let _stepped_aside = self.hybrid_offered().then(HybridOffered::enter);
        self.inner.read_handshake(buf)
    }

    fn transport_parameters(&self) -> Result<Option<TransportParameters>, TransportError> {
        self.inner.transport_parameters()
    }

    fn write_handshake(&mut self, buf: &mut Vec<u8>) -> Option<Keys> {
        self.inner.write_handshake(buf)
    }

    fn next_1rtt_keys(&mut self) -> Option<KeyPair<Box<dyn PacketKey>>> {
        self.inner.next_1rtt_keys()
    }

    fn is_valid_retry(&self, orig_dst_cid: &ConnectionId, header: &[u8], payload: &[u8]) -> bool {
        self.inner.is_valid_retry(orig_dst_cid, header, payload)
    }

    fn export_keying_material(
        &self,
        output: &mut [u8],
        label: &[u8],
        context: &[u8],
    ) -> Result<(), ExportKeyingMaterialError> {
        self.inner.export_keying_material(output, label, context)
    }
}

/// A ClientHello larger than this is not one sshq's peers send (a hybrid
/// one is ~1.4 KB); its groups are not looked at, rustls judges it alone.
const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// The groups a (possibly partial) ClientHello handshake message offers.
#[derive(Debug, PartialEq, Eq)]
enum HelloGroups {
    Incomplete,
    Offered(Vec<NamedGroup>),
    Malformed,
}

/// Reads `supported_groups` from the ClientHello at the start of `bytes`
/// (TLS 1.3, RFC 8446 §4.1.2 and §4.2.7). Every length is the peer's, so
/// every read is bounds-checked.
fn offered_groups(bytes: &[u8]) -> HelloGroups {
    const CLIENT_HELLO: u8 = 1;
    const SUPPORTED_GROUPS: u16 = 0x000a;
    let mut header = Reader(bytes);
    let (Some(kind), Some(length)) = (header.u8(), header.u24()) else {
        return HelloGroups::Incomplete;
    };
    if kind != CLIENT_HELLO || length > MAX_CLIENT_HELLO {
        return HelloGroups::Malformed;
    }
    let Some(body) = header.take(length) else {
        return HelloGroups::Incomplete;
    };
    let parse = || -> Option<Vec<NamedGroup>> {
        let mut hello = Reader(body);
        hello.take(2 + 32)?; // legacy_version, random
        let session_id = hello.u8()?;
        hello.take(usize::from(session_id))?;
        let suites = hello.u16()?;
        hello.take(usize::from(suites))?;
        let compression = hello.u8()?;
        hello.take(usize::from(compression))?;
        let extensions_len = hello.u16()?;
        let mut extensions = Reader(hello.take(usize::from(extensions_len))?);
        while !extensions.0.is_empty() {
            let kind = extensions.u16()?;
            let len = extensions.u16()?;
            let data = extensions.take(usize::from(len))?;
            if kind == SUPPORTED_GROUPS {
                let mut data = Reader(data);
                let list_len = data.u16()?;
                let mut list = Reader(data.take(usize::from(list_len))?);
                let mut groups = Vec::new();
                while !list.0.is_empty() {
                    groups.push(NamedGroup::from(list.u16()?));
                }
                return Some(groups);
            }
        }
        Some(Vec::new())
    };
    parse().map_or(HelloGroups::Malformed, HelloGroups::Offered)
}

/// Big-endian reads from a byte slice, `None` past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(
            usize::from(*b.first()?) << 16 | usize::from(*b.get(1)?) << 8 | usize::from(*b.get(2)?),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello handshake message with these extensions.
    fn client_hello(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![0x03, 0x03];
        body.extend_from_slice(&[7; 32]);
        body.push(0); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        let mut exts = Vec::new();
        for (kind, data) in extensions {
            exts.extend_from_slice(&kind.to_be_bytes());
            exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
            exts.extend_from_slice(data);
        }
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut message = vec![1];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        message
    }

    fn groups_ext(groups: &[u16]) -> (u16, Vec<u8>) {
        let mut data = ((groups.len() * 2) as u16).to_be_bytes().to_vec();
        for g in groups {
            data.extend_from_slice(&g.to_be_bytes());
        }
        (0x000a, data)
    }

    #[test]
    fn reads_supported_groups_whole_or_in_pieces() {
        let hello = client_hello(&[(0x0000, vec![1, 2, 3]), groups_ext(&[0x001d, 0xfe61])]);
        let expected = HelloGroups::Offered(vec![NamedGroup::X25519, NamedGroup::from(0xfe61)]);
        assert_eq!(offered_groups(&hello), expected);
        for cut in [0, 1, 3, 4, 40, hello.len() - 1] {
            assert_eq!(
                offered_groups(&hello[..cut]),
                HelloGroups::Incomplete,
                "{cut}"
            );
        }
        assert_eq!(
            offered_groups(&client_hello(&[])),
            HelloGroups::Offered(vec![])
        );
    }

    #[test]
    fn hostile_lengths_are_malformed_not_a_panic() {
        let mut hello = client_hello(&[groups_ext(&[0x001d])]);
        // The groups list claims more than its extension holds.
        let at = hello.len() - 4;
        hello[at] = 0xff;
        assert_eq!(offered_groups(&hello), HelloGroups::Malformed);
        assert_eq!(offered_groups(&[2, 0, 0, 0]), HelloGroups::Malformed);
        assert_eq!(
            offered_groups(&[1, 0xff, 0xff, 0xff]),
            HelloGroups::Malformed
        );
        assert_eq!(offered_groups(&[1, 0, 0, 1, 0]), HelloGroups::Malformed);
    }

    #[test]
    fn the_classical_group_steps_aside_only_inside_the_scope() {
        let v13 = ProtocolVersion::TLSv1_3;
        assert!(X25519_UNLESS_HYBRID_OFFERED.usable_for_version(v13));
        {
            let _scope = HybridOffered::enter();
            assert!(!X25519_UNLESS_HYBRID_OFFERED.usable_for_version(v13));
        }
        assert!(X25519_UNLESS_HYBRID_OFFERED.usable_for_version(v13));
    }
}
