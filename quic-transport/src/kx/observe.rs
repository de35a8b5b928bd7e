//! Seeing which group a handshake used.
//!
//! rustls reports the negotiated group, but quinn hides the rustls
//! connection (only a private feature exposes it). So the groups themselves
//! report: [`observed`] wraps each group of a provider so that a successful
//! `complete` (client), `complete_hybrid_component` (client, when the
//! server picked the X25519 half) or `start_and_complete` (server) writes
//! the group's codepoint into a shared [`NegotiatedGroup`].

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use rustls::crypto::{ActiveKeyExchange, CompletedKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, ProtocolVersion, SupportedProtocolVersion};

/// The group of the last handshake that completed a key exchange through
/// the provider it was given to (see `crypto_provider_observed`).
///
/// Share one per connection to know that connection's group (the client
/// case); a server sharing one across connections sees the latest.
#[derive(Debug, Default)]
pub struct NegotiatedGroup {
    /// 0 = nothing yet (no TLS group has codepoint 0).
    code: AtomicU16,
}

impl NegotiatedGroup {
    /// A fresh, empty observer.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// sshq's name for the group (`x25519-sntrup761`, ...), once a key
    /// exchange completed; `None` before.
    pub fn get(&self) -> Option<&'static str> {
        self.named_group().and_then(super::group_name)
    }

    /// The TLS codepoint, once a key exchange completed.
    pub fn named_group(&self) -> Option<NamedGroup> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            code => Some(NamedGroup::from(code)),
        }
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        self.code.store(0, Ordering::Release);
    }

    fn record(&self, group: NamedGroup) {
        self.code.store(u16::from(group), Ordering::Release);
    }
}

/// Wraps `inner` so that it reports into `observer`.
///
/// rustls needs `&'static` groups, so the small wrapper is leaked: one
/// allocation (a pointer and an `Arc`) per group per call. Build providers
/// per connection or per endpoint, not per packet.
pub(crate) fn observed(
    inner: &'static dyn SupportedKxGroup,
    observer: &Arc<NegotiatedGroup>,
) -> &'static dyn SupportedKxGroup {
    Box::leak(Box::new(Observed {
        inner,
        observer: Arc::clone(observer),
    }))
}

#[derive(Debug)]
struct Observed {
    inner: &'static dyn SupportedKxGroup,
    observer: Arc<NegotiatedGroup>,
}

impl SupportedKxGroup for Observed {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        Ok(Box::new(ObservedActive {
            inner: self.inner.start()?,
            observer: Arc::clone(&self.observer),
        }))
    }

    fn start_and_complete(&self, peer_pub_key: &[u8]) -> Result<CompletedKeyExchange, Error> {
        let done = self.inner.start_and_complete(peer_pub_key)?;
        self.observer.record(done.group);
        Ok(done)
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
        self.inner.usable_for_version(version)
    }
}

struct ObservedActive {
    inner: Box<dyn ActiveKeyExchange>,
    observer: Arc<NegotiatedGroup>,
}

impl ActiveKeyExchange for ObservedActive {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        let group = self.inner.group();
        let secret = self.inner.complete(peer_pub_key)?;
        self.observer.record(group);
        Ok(secret)
    }

    fn complete_for_tls_version(
        self: Box<Self>,
        peer_pub_key: &[u8],
        tls_version: &SupportedProtocolVersion,
    ) -> Result<SharedSecret, Error> {
        let group = self.inner.group();
        let secret = self
            .inner
            .complete_for_tls_version(peer_pub_key, tls_version)?;
        self.observer.record(group);
        Ok(secret)
    }

    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        self.inner.hybrid_component()
    }

    fn complete_hybrid_component(
        self: Box<Self>,
        peer_pub_key: &[u8],
    ) -> Result<SharedSecret, Error> {
        let component = self.inner.hybrid_component().map(|(group, _)| group);
        let secret = self.inner.complete_hybrid_component(peer_pub_key)?;
        if let Some(group) = component {
            self.observer.record(group);
        }
        Ok(secret)
    }

    fn pub_key(&self) -> &[u8] {
        self.inner.pub_key()
    }

    fn ffdhe_group(&self) -> Option<rustls::ffdhe_groups::FfdheGroup<'static>> {
        self.inner.ffdhe_group()
    }

    fn group(&self) -> NamedGroup {
        self.inner.group()
    }
}
