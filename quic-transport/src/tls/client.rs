//! The client's TLS configuration: the server's raw public key is checked as
//! an SSH host key, by the same known_hosts policy SSH over TCP uses.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{
    verify_tls13_signature_with_raw_key, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{
    CertificateError, DigitallySignedStruct, OtherError, PeerMisbehaved, SignatureScheme,
};
use sshq_core::auth::ServerKeyVerifier;
use sshq_core::ssh_key::PublicKey;

use super::keys::parse_ed25519_spki;
use super::{TlsError, ALPN};

/// What happened to the server's host key in the most recent handshake seen
/// by one [`SshHostKeyVerifier`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HostKeyVerdict {
    /// No handshake has reached the host key yet (or the last one failed
    /// before it, e.g. on ALPN or a network error).
    #[default]
    NotChecked,
    /// The server proved it holds this key and the policy accepted it.
    Accepted(PublicKey),
    /// The server proved it holds this key, which known_hosts does not
    /// know, but an `@cert-authority` line could vouch for it: the
    /// decision waits for the server's host certificate (draft §5.5).
    /// Nothing but HOST_CERTIFICATE_REQUEST may be sent meanwhile.
    AwaitingCertificate(PublicKey),
    /// The server proved it holds this key and the policy refused it. The
    /// policy has shown its messages; the caller reports
    /// "Host key verification failed." and exits as ssh does.
    Rejected(PublicKey),
    /// The server's TLS identity was not an SSH Ed25519 raw public key (an
    /// X.509 certificate, another key type, garbage): this is not an sshq
    /// server, or something in the path answers in its place.
    NotAnSshHostKey,
    /// The server sent an Ed25519 key but could not sign with it: the key
    /// was never shown to the policy. A man in the middle replaying the real
    /// server's public key looks like this.
    BadSignature,
}

/// A shared view of the [`HostKeyVerdict`] of the verifier it came from.
///
/// quinn reports a failed handshake as a generic TLS alert (a QUIC
/// `CONNECTION_CLOSE` with a crypto error code), which does not say whether
/// the user's known_hosts refused the key or something else went wrong. The
/// caller keeps this handle and asks it after `connect` fails.
///
/// The verdict belongs to the verifier, not to a connection: build one client
/// configuration per connection attempt (it is cheap) when the answer must
/// refer to that attempt.
#[derive(Debug, Clone, Default)]
pub struct HostKeyOutcome(Arc<Mutex<HostKeyVerdict>>);

impl HostKeyOutcome {
    /// The verdict of the most recent handshake.
    pub fn verdict(&self) -> HostKeyVerdict {
        self.lock().clone()
    }

    /// Whether the last handshake failed because the host-key policy refused
    /// the key (and only that: "Host key verification failed.").
    pub fn host_key_rejected(&self) -> bool {
        matches!(*self.lock(), HostKeyVerdict::Rejected(_))
    }

    fn set(&self, verdict: HostKeyVerdict) {
        *self.lock() = verdict;
    }

    fn lock(&self) -> MutexGuard<'_, HostKeyVerdict> {
        // The value is a plain enum, consistent even if a holder panicked.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Checks the server's raw public key as an SSH host key.
///
/// This is installed through rustls's `dangerous()` API because it replaces
/// the WebPKI checks (a chain to a trusted CA, a certificate valid for the
/// host name, expiry) entirely. That is right here: an SSH server has no CA
/// certificate, and its identity is the host key itself, checked against
/// known_hosts (or the user's answer to the first-connection question) by
/// [`ServerKeyVerifier`] — the trust model of SSH, not of the web. What must
/// not be skipped is still done: the server proves possession of the key by
/// its TLS 1.3 CertificateVerify signature over the handshake transcript.
///
/// **Order.** rustls calls `verify_server_cert` and then
/// `verify_tls13_signature` back to back, on receiving CertificateVerify. The
/// policy is consulted in the second, after the signature has been checked,
/// as SSH checks the exchange-hash signature before consulting known_hosts:
/// the user is never asked about, and known_hosts never records, a key the
/// peer has not proved it holds. Resumption is disabled ([`client_tls`]), so
/// every handshake runs both checks and the policy is called exactly once.
///
/// The policy may block (a terminal prompt); rustls's verifier is
/// synchronous, so it blocks the thread driving the connection meanwhile.
pub struct SshHostKeyVerifier {
    policy: Arc<dyn ServerKeyVerifier>,
    algorithms: WebPkiSupportedAlgorithms,
    outcome: HostKeyOutcome,
    /// Whether a key only a CA could vouch for may wait for the host
    /// certificate ([`HostKeyVerdict::AwaitingCertificate`]): only for a
    /// caller that then asks for it and decides before sending anything
    /// (`ClientEndpoint`); for any other the policy decides at once.
    defer_to_certificate: bool,
}

impl SshHostKeyVerifier {
    /// Wraps the host-key policy; signatures are checked with `provider`'s
    /// algorithms, which must include Ed25519.
    pub fn new(
        policy: Arc<dyn ServerKeyVerifier>,
        provider: &CryptoProvider,
    ) -> Result<Self, TlsError> {
        let algorithms = provider.signature_verification_algorithms;
        let has_ed25519 = algorithms
            .mapping
            .iter()
            .any(|(scheme, algs)| *scheme == SignatureScheme::ED25519 && !algs.is_empty());
        if !has_ed25519 {
            return Err(TlsError::NoEd25519Verification);
        }
        Ok(SshHostKeyVerifier {
            policy,
            algorithms,
            outcome: HostKeyOutcome::default(),
            defer_to_certificate: false,
        })
    }

    /// A handle on this verifier's verdicts.
    pub fn outcome(&self) -> HostKeyOutcome {
        self.outcome.clone()
    }

    fn not_an_ssh_host_key(&self, why: &'static str) -> rustls::Error {
        self.outcome.set(HostKeyVerdict::NotAnSshHostKey);
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
            NotAnSshHostKey(why),
        ))))
    }
}

impl fmt::Debug for SshHostKeyVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshHostKeyVerifier")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for SshHostKeyVerifier {
    /// Only checks the shape: one Ed25519 SubjectPublicKeyInfo, nothing else.
    /// The decision waits for the signature (see the type's documentation).
    /// `server_name` is not consulted: the policy already knows which host it
    /// was asked to check.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.outcome.set(HostKeyVerdict::NotChecked);
        // draft §5.1: the server's Certificate carries exactly one entry, no chain
        if !intermediates.is_empty() {
            return Err(self.not_an_ssh_host_key("it sent a certificate chain"));
        }
        if parse_ed25519_spki(end_entity.as_ref()).is_none() {
            return Err(self.not_an_ssh_host_key("it is not an Ed25519 public key"));
        }
        Ok(ServerCertVerified::assertion())
    }

    /// TLS 1.2 is never negotiated (the configuration is TLS 1.3 only, as
    /// QUIC requires); refuse rather than trust an unexpected path.
    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let Some(key) = parse_ed25519_spki(cert.as_ref()) else {
            return Err(self.not_an_ssh_host_key("it is not an Ed25519 public key"));
        };
        // draft §4.3: CertificateVerify MUST use ed25519
        if dss.scheme != SignatureScheme::ED25519 {
            self.outcome.set(HostKeyVerdict::BadSignature);
            return Err(PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme.into());
        }
        let spki = SubjectPublicKeyInfoDer::from(cert.as_ref());
        let valid = verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algorithms)
            .inspect_err(|_| self.outcome.set(HostKeyVerdict::BadSignature))?;

        let key = PublicKey::from(key);
        // draft §5.5: a key only a certificate authority could vouch for waits for the certificate
        if self.defer_to_certificate && self.policy.wants_certificate(&key) {
            self.outcome.set(HostKeyVerdict::AwaitingCertificate(key));
            return Ok(valid);
        }
        // draft §5.2: the host-key policy is consulted only after CertificateVerify has verified
        if self.policy.verify(&key) {
            self.outcome.set(HostKeyVerdict::Accepted(key));
            Ok(valid)
        } else {
            self.outcome.set(HostKeyVerdict::Rejected(key));
            // Sent to the server as an `access_denied` alert, distinct from
            // the `certificate_unknown` of a malformed identity.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    /// Only Ed25519, the one host key type a server can present: the server
    /// is never asked for a signature the client cannot relate to an SSH key.
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// The reason inside the TLS error when the server's identity is not an SSH
/// host key; it ends up in quinn's connection error text.
struct NotAnSshHostKey(&'static str);

/// rustls formats the error inside `CertificateError::Other` with `Debug`,
/// and that text is what quinn reports: make it the readable message.
impl fmt::Debug for NotAnSshHostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for NotAnSshHostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's TLS identity is not an SSH Ed25519 host key ({}); \
             is this an sshq server?",
            self.0
        )
    }
}

impl std::error::Error for NotAnSshHostKey {}

/// Builds the client's TLS configuration around the host-key policy.
///
/// TLS 1.3 only, ALPN [`ALPN`], the server's raw public key checked by
/// [`SshHostKeyVerifier`], no client certificate (users authenticate inside,
/// the SSH way).
///
/// No resumption and no 0-RTT, for now: a resumed handshake skips the server
/// signature and the host key check (it trusts the earlier one), so a stolen
/// or leaked ticket, or a key later removed from known_hosts, would keep
/// working; and 0-RTT data can be replayed. The saving is one round trip per
/// connection; revisit with tickets bound to the known_hosts entry if that
/// round trip ever matters.
///
/// No SNI either: the server has one host key whatever name it is reached
/// by, and SSH never sends the host name in the clear; sending it would tell
/// on-path observers which host the user typed.
///
/// Use [`client_tls_with_outcome`] to learn afterwards whether a failure was
/// the host key being refused.
pub fn client_tls(
    verifier: Arc<dyn ServerKeyVerifier>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ClientConfig, TlsError> {
    client_tls_with_outcome(verifier, provider).map(|(config, _)| config)
}

/// [`client_tls`], also returning the handle that tells, after `connect`
/// fails, whether the host-key policy refused the server's key.
pub fn client_tls_with_outcome(
    verifier: Arc<dyn ServerKeyVerifier>,
    provider: Arc<CryptoProvider>,
) -> Result<(rustls::ClientConfig, HostKeyOutcome), TlsError> {
    client_tls_judging(verifier, provider, false)
}

/// [`client_tls_with_outcome`] whose verdict may wait for the server's
/// host certificate (draft §5.5), for a caller that settles it before
/// it sends anything.
pub(crate) fn client_tls_deferring(
    verifier: Arc<dyn ServerKeyVerifier>,
    provider: Arc<CryptoProvider>,
) -> Result<(rustls::ClientConfig, HostKeyOutcome), TlsError> {
    client_tls_judging(verifier, provider, true)
}

fn client_tls_judging(
    verifier: Arc<dyn ServerKeyVerifier>,
    provider: Arc<CryptoProvider>,
    defer_to_certificate: bool,
) -> Result<(rustls::ClientConfig, HostKeyOutcome), TlsError> {
    let mut host_key_verifier = SshHostKeyVerifier::new(verifier, &provider)?;
    host_key_verifier.defer_to_certificate = defer_to_certificate;
    let outcome = host_key_verifier.outcome();

    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::Tls13Unavailable)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(host_key_verifier))
        .with_no_client_auth();

    // draft §4.2: clients MUST offer sshq/1
    config.alpn_protocols = vec![ALPN.to_vec()];
    // draft §4.3: clients MUST NOT attempt PSK resumption
    config.resumption = Resumption::disabled();
    // draft §4.3: clients MUST NOT send early data
    config.enable_early_data = false;
    // draft §4.3: clients SHOULD NOT send server_name
    config.enable_sni = false;
    Ok((config, outcome))
}

/// Why a client's QUIC handshake failed, sorted by what may follow it.
///
/// Only a failure that says nothing about the server's identity lets
/// `Transport=auto` try TCP ([`Self::allows_fallback`]): no answer, a
/// refusal before any TLS, or a server that does not speak the protocol
/// asked for. Those are also what anyone on the path can cause anyway, by
/// dropping or forging unprotected Initial packets. Every other failure
/// means a peer answered TLS and either failed to authenticate as an sshq
/// server or was refused by us: trying TCP after it would hide a
/// possible attack (or a policy decision) behind a quieter transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeFailure {
    /// Nothing answered before the idle timeout (packets lost, UDP
    /// filtered, or the port closed: ICMP errors do not reach quinn).
    #[error("no QUIC answer (timed out)")]
    TimedOut,
    /// QUIC did not get through to a TLS handshake: no QUIC version in
    /// common, or the server refused new connections (CONNECTION_REFUSED).
    #[error("{0}")]
    Unreachable(String),
    /// The server answered QUIC but refused the ALPN asked for: it is not
    /// an sshq server (or not one offering that service).
    #[error("the server answered QUIC but refused the application protocol (it does not speak sshq over QUIC)")]
    ProtocolRefused,
    /// The host-key policy refused the key the server proved it holds; the
    /// policy has shown its messages.
    #[error("Host key verification failed.")]
    HostKeyRejected,
    /// The two sides share no key-exchange group.
    #[error("{0}")]
    NoCommonGroup(crate::kx::KexError),
    /// The peer did not authenticate as an SSH server: its TLS identity is
    /// not an SSH Ed25519 host key, it could not sign for the key it showed
    /// (bad CertificateVerify), or TLS failed with a cryptographic alert.
    #[error("the QUIC server failed authentication: {0}")]
    AuthenticityFailed(String),
    /// The handshake ended otherwise after the peer answered (a transport
    /// error, an application close, a reset).
    #[error("the QUIC handshake failed: {0}")]
    PeerRejected(String),
}

impl HandshakeFailure {
    /// Sorts a failed `connect`: `outcome` is the handle of the verifier
    /// used for that connection, `kex` the groups offered.
    pub fn classify<S: AsRef<str>>(
        error: &quinn::ConnectionError,
        outcome: &HostKeyOutcome,
        kex: &[S],
    ) -> Self {
        use quinn::{ConnectionError, TransportErrorCode};
        match outcome.verdict() {
            HostKeyVerdict::Rejected(_) => return Self::HostKeyRejected,
            HostKeyVerdict::NotAnSshHostKey => {
                return Self::AuthenticityFailed(format!(
                    "its TLS identity is not an SSH Ed25519 host key ({error})"
                ))
            }
            HostKeyVerdict::BadSignature => {
                return Self::AuthenticityFailed(
                    "it could not prove it holds the host key it showed \
                     (invalid TLS CertificateVerify signature)"
                        .to_string(),
                )
            }
            HostKeyVerdict::NotChecked
            | HostKeyVerdict::Accepted(_)
            | HostKeyVerdict::AwaitingCertificate(_) => {}
        }
        if let Some(kex_error) = crate::kx::explain_handshake_failure(error, kex) {
            return Self::NoCommonGroup(kex_error);
        }
        if crate::tunnel::alpn_refused(error) {
            return Self::ProtocolRefused;
        }
        let is_crypto = |code: TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
        match error {
            ConnectionError::TimedOut => Self::TimedOut,
            ConnectionError::VersionMismatch => {
                Self::Unreachable("the server speaks no QUIC version in common".to_string())
            }
            ConnectionError::ConnectionClosed(close)
                if close.error_code == TransportErrorCode::CONNECTION_REFUSED =>
            {
                Self::Unreachable("the server refused the QUIC connection".to_string())
            }
            ConnectionError::ConnectionClosed(close) if is_crypto(close.error_code) => {
                Self::AuthenticityFailed(format!("the server ended TLS: {close}"))
            }
            ConnectionError::TransportError(e) if is_crypto(e.code) => {
                Self::AuthenticityFailed(format!("TLS failed: {e}"))
            }
            other => Self::PeerRejected(other.to_string()),
        }
    }

    /// Whether another transport may be tried after this failure: only
    /// when nothing was learnt about the server's identity.
    // draft §11: the client MUST NOT fall back to TCP once a QUIC peer answered TLS and failed
    pub fn allows_fallback(&self) -> bool {
        match self {
            Self::TimedOut | Self::Unreachable(_) | Self::ProtocolRefused => true,
            Self::HostKeyRejected
            | Self::NoCommonGroup(_)
            | Self::AuthenticityFailed(_)
            | Self::PeerRejected(_) => false,
        }
    }
}

#[cfg(test)]
mod classification_tests {
    use super::*;
    use quinn::{ConnectionClose, ConnectionError, TransportErrorCode};

    const OFFERED: &[&str] = &["x25519-sntrup761", "x25519"];

    fn closed(code: TransportErrorCode) -> ConnectionError {
        ConnectionError::ConnectionClosed(ConnectionClose {
            error_code: code,
            frame_type: None,
            reason: bytes::Bytes::new(),
        })
    }

    fn classify(error: &ConnectionError, verdict: HostKeyVerdict) -> HandshakeFailure {
        let outcome = HostKeyOutcome::default();
        outcome.set(verdict);
        HandshakeFailure::classify(error, &outcome, OFFERED)
    }

    #[test]
    fn only_failures_to_get_through_allow_another_transport() {
        let fallback = [
            classify(&ConnectionError::TimedOut, HostKeyVerdict::NotChecked),
            classify(
                &ConnectionError::VersionMismatch,
                HostKeyVerdict::NotChecked,
            ),
            classify(
                &closed(TransportErrorCode::CONNECTION_REFUSED),
                HostKeyVerdict::NotChecked,
            ),
            // no_application_protocol: not an sshq server.
            classify(
                &closed(TransportErrorCode::crypto(120)),
                HostKeyVerdict::NotChecked,
            ),
        ];
        for failure in &fallback {
            assert!(failure.allows_fallback(), "{failure:?}");
        }
        assert_eq!(fallback[0], HandshakeFailure::TimedOut);
        assert_eq!(fallback[3], HandshakeFailure::ProtocolRefused);
    }

    #[test]
    fn a_peer_that_answered_tls_and_failed_ends_the_attempt() {
        // A forged or real CONNECTION_CLOSE with a TLS alert (bad_certificate).
        let alert = classify(
            &closed(TransportErrorCode::crypto(42)),
            HostKeyVerdict::NotChecked,
        );
        assert!(
            matches!(alert, HandshakeFailure::AuthenticityFailed(_)),
            "{alert:?}"
        );
        // Our verifier's verdicts win over whatever quinn reports.
        let local = ConnectionError::TransportError(quinn_proto::TransportError {
            code: TransportErrorCode::crypto(51),
            frame: None,
            reason: "invalid peer certificate".into(),
        });
        let bad_signature = classify(&local, HostKeyVerdict::BadSignature);
        assert!(
            matches!(&bad_signature, HandshakeFailure::AuthenticityFailed(why) if why.contains("CertificateVerify")),
            "{bad_signature:?}"
        );
        let not_ssh = classify(&local, HostKeyVerdict::NotAnSshHostKey);
        assert!(matches!(not_ssh, HandshakeFailure::AuthenticityFailed(_)));
        // Even a timeout after the host key was judged is final.
        let key = sshq_core::ssh_key::PublicKey::from(
            sshq_core::ssh_key::public::Ed25519PublicKey([7; 32]),
        );
        let rejected = classify(&ConnectionError::TimedOut, HostKeyVerdict::Rejected(key));
        assert_eq!(rejected, HandshakeFailure::HostKeyRejected);
        // handshake_failure from the server: no group in common, final.
        let no_group = classify(
            &closed(TransportErrorCode::crypto(40)),
            HostKeyVerdict::NotChecked,
        );
        assert!(matches!(no_group, HandshakeFailure::NoCommonGroup(_)));
        let transport = classify(
            &closed(TransportErrorCode::PROTOCOL_VIOLATION),
            HostKeyVerdict::NotChecked,
        );
        assert!(matches!(transport, HandshakeFailure::PeerRejected(_)));
        for failure in [alert, bad_signature, not_ssh, rejected, no_group, transport] {
            assert!(!failure.allows_fallback(), "{failure:?}");
        }
    }
}
