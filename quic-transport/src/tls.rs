//! The TLS 1.3 layer of sshq's QUIC transport, and the quinn configuration
//! built on it.
//!
//! **Identity.** The server proves its identity with its SSH Ed25519 host key,
//! sent as an RFC 7250 raw public key (a bare SubjectPublicKeyInfo, no X.509
//! certificate, no CA). The client checks that key exactly as SSH over TCP
//! does, through [`sshq_core::auth::ServerKeyVerifier`] (known_hosts,
//! StrictHostKeyChecking), so both transports trust the same servers and one
//! known_hosts entry serves both.
//!
//! **Protocol.** TLS 1.3 only (QUIC requires it), ALPN [`ALPN`] on both sides,
//! no client certificates (users authenticate inside, the SSH way, bound to the
//! connection with the TLS exporter), no session resumption and no 0-RTT (see
//! [`client_tls`] for why).
//!
//! The key-exchange groups come from the [`CryptoProvider`] the caller passes
//! (see `crate::kx`); nothing here depends on which groups it holds.
//!
//! [`CryptoProvider`]: rustls::crypto::CryptoProvider

mod client;
#[cfg(test)]
mod exporter_vector;
mod keys;
mod quic;
mod server;
#[cfg(test)]
mod tests;

pub(crate) use client::client_tls_deferring;
pub use client::{
    client_tls, client_tls_with_outcome, HandshakeFailure, HostKeyOutcome, HostKeyVerdict,
    SshHostKeyVerifier,
};
pub use keys::{ed25519_spki, parse_ed25519_spki, ED25519_SPKI_LEN, ED25519_SPKI_PREFIX};
pub use quic::{
    bind_endpoint_socket, client_config, server_config, transport_config, transport_config_with,
    CongestionControl, Liveness, INITIAL_BIDI_STREAMS, MAX_CONCURRENT_BIDI_STREAMS, RECEIVE_WINDOW,
    SOCKET_BUFFER_BYTES,
};
pub use server::server_tls;

/// The ALPN protocol identifier of SSH over QUIC, version 1.
///
/// Both sides set it as their only protocol. QUIC (RFC 9001 §8.1) makes ALPN
/// mandatory, and rustls in QUIC mode refuses a peer that offers no protocol
/// in common (TLS alert `no_application_protocol`, QUIC error 0x178), so a
/// client of another QUIC protocol (HTTP/3, ...) cannot reach the SSH service
/// by accident, and a future incompatible `sshq/2` is told apart before any
/// SSH byte is exchanged.
pub const ALPN: &[u8] = b"sshq/1";

/// Why a TLS or QUIC configuration could not be built.
///
/// These are configuration problems on this side (the wrong kind of host key,
/// a crypto provider lacking something), reported before any connection is
/// attempted; each message says what to change. A host key refused while
/// connecting is not an error here: see [`HostKeyOutcome`].
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The host key is not Ed25519.
    #[error(
        "the host key is {algorithm}, but SSH over QUIC needs an Ed25519 host key \
         (it is sent as a TLS raw public key); create one with \
         `ssh-keygen -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key` and use it"
    )]
    UnsupportedHostKey {
        /// The SSH name of the key's algorithm, e.g. `ecdsa-sha2-nistp256`.
        algorithm: String,
    },

    /// The host key file is protected by a passphrase.
    #[error(
        "the host key is encrypted with a passphrase; host keys must be stored \
         unencrypted (as `ssh-keygen -N ''` makes them), remove it with `ssh-keygen -p`"
    )]
    EncryptedHostKey,

    /// The crypto provider could not load the Ed25519 private key, or the key's
    /// public half does not match its private half.
    #[error(
        "the crypto provider cannot sign with the Ed25519 host key ({reason}); \
         check that the host key file is intact, or regenerate it with `ssh-keygen -t ed25519`"
    )]
    HostKeyUnusable {
        /// What the provider (or the consistency check) said.
        reason: String,
    },

    /// The crypto provider cannot verify Ed25519 signatures, so no sshq host
    /// key could ever be checked.
    #[error(
        "the crypto provider cannot verify Ed25519 signatures, which every sshq host key needs; \
         build it from rustls's ring or aws-lc-rs default provider"
    )]
    NoEd25519Verification,

    /// rustls refused the provider for TLS 1.3 (e.g. no TLS 1.3 cipher suite
    /// or no key-exchange group).
    #[error(
        "the crypto provider cannot do TLS 1.3, which QUIC requires ({0}); \
         it needs at least one TLS 1.3 cipher suite and one key-exchange group"
    )]
    Tls13Unavailable(#[source] rustls::Error),

    /// quinn needs TLS_AES_128_GCM_SHA256 (the suite of QUIC's Initial packets).
    #[error(
        "QUIC protects its first packets with TLS_AES_128_GCM_SHA256, and the crypto provider \
         lacks it ({0}); keep that cipher suite in the provider"
    )]
    NoInitialCipherSuite(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
}
