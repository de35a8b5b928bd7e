//! Key-exchange groups for the QUIC path's TLS 1.3 handshake, and their
//! selection by name, mirroring OpenSSH's `-o KexAlgorithms=`.
//!
//! | name | TLS codepoint | client share | server share | secret |
//! |---|---|---|---|---|
//! | `x25519-sntrup761` (default, first) | 0xFE61 (private use) | 1158 + 32 | 1039 + 32 | 32 ‖ 32 |
//! | `x25519-mlkem768` | 0x11EC | 1184 + 32 | 1088 + 32 | 32 ‖ 32 |
//! | `x25519` | 0x001D | 32 | 32 | 32 |
//!
//! Why this default order: sntrup761+X25519 is what OpenSSH 9.x uses for
//! SSH, so sshq keeps the same post-quantum assumption over QUIC; ML-KEM
//! follows (OpenSSH 10's default and the TLS world's hybrid); plain X25519
//! last so classical-only peers still connect. The hybrids also offer their
//! X25519 half as a separate key share (rustls's `hybrid_component`), so an
//! X25519-only server answers without a HelloRetryRequest; an ML-KEM-only
//! server costs one HelloRetryRequest.
//!
//! Hybrid secrets are concatenated post-quantum part first and fed to the
//! key schedule unhashed, as in draft-ietf-tls-ecdhe-mlkem.

mod half;
mod hybrid_first;
mod mlkem;
mod observe;
mod pool;
mod sntrup;

#[cfg(test)]
mod handshake_tests;
#[cfg(test)]
mod vectors;

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{CipherSuite, NamedGroup};

pub use hybrid_first::server_crypto;
pub use mlkem::{X25519MlKem768, X25519_MLKEM768};
pub use observe::NegotiatedGroup;
pub use pool::prewarm as prewarm_sntrup761;
pub use sntrup::{X25519Sntrup761, X25519_SNTRUP761, X25519_SNTRUP761_CODEPOINT};

/// Share and secret lengths of `x25519-sntrup761`.
pub mod sntrup761_sizes {
    pub use super::sntrup::{
        CLIENT_SHARE_LEN, SECRET_LEN, SERVER_SHARE_LEN, SNTRUP761_CIPHERTEXT_LEN,
        SNTRUP761_PUBLIC_KEY_LEN,
    };
}

/// Share and secret lengths of `x25519-mlkem768`.
pub mod mlkem768_sizes {
    pub use super::mlkem::{
        CLIENT_SHARE_LEN, MLKEM768_CIPHERTEXT_LEN, MLKEM768_ENCAPSULATION_KEY_LEN, SECRET_LEN,
        SERVER_SHARE_LEN,
    };
}

/// Name of the X25519+sntrup761 hybrid.
pub const X25519_SNTRUP761_NAME: &str = "x25519-sntrup761";
/// Name of the X25519+ML-KEM-768 hybrid.
pub const X25519_MLKEM768_NAME: &str = "x25519-mlkem768";
/// Name of plain X25519.
pub const X25519_NAME: &str = "x25519";

/// Every name sshq knows, in default preference order.
pub const SUPPORTED_KEX: &[&str] = &[X25519_SNTRUP761_NAME, X25519_MLKEM768_NAME, X25519_NAME];

/// What is offered (client) or accepted (server) when nothing is configured.
pub const DEFAULT_KEX: &[&str] = sshq_core::kex::QUIC_DEFAULT;

/// Errors of key-exchange selection and negotiation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KexError {
    /// A name that is not a key exchange sshq implements.
    #[error("unknown key exchange algorithm `{name}` (supported: {supported})", supported = SUPPORTED_KEX.join(","))]
    Unknown {
        /// The offending name.
        name: String,
    },
    /// The list ended up empty.
    #[error("no key exchange algorithm left to use (supported: {supported})", supported = SUPPORTED_KEX.join(","))]
    Empty,
    /// A `KexAlgorithms` value that is wrong, or leaves QUIC nothing.
    #[error("{0}")]
    List(#[from] sshq_core::kex::KexListError),
    /// The handshake failed because the two sides share no group.
    #[error("TLS handshake failed: no key exchange algorithm in common with the {peer} (we offered: {ours}){hint}")]
    NoCommonGroup {
        /// "server" or "client": who we were talking to.
        peer: &'static str,
        /// Our groups, comma-separated.
        ours: String,
        /// Extra detail (what the alert was), possibly empty.
        hint: String,
    },
}

/// sshq's name for a TLS group, if it is one sshq implements.
pub fn group_name(group: NamedGroup) -> Option<&'static str> {
    match u16::from(group) {
        X25519_SNTRUP761_CODEPOINT => Some(X25519_SNTRUP761_NAME),
        0x11EC => Some(X25519_MLKEM768_NAME),
        0x001D => Some(X25519_NAME),
        _ => None,
    }
}

/// Names for a list of TLS groups, comma-separated; unknown groups as hex
/// (`0x0017`). Useful to log what a peer offered (a server's certificate
/// resolver sees `ClientHello::named_groups()`).
pub fn describe_groups(groups: &[NamedGroup]) -> String {
    let names: Vec<String> = groups
        .iter()
        .map(|&g| match group_name(g) {
            Some(name) => name.to_owned(),
            None => format!("0x{:04x}", u16::from(g)),
        })
        .collect();
    names.join(",")
}

fn group_by_name(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    match name {
        X25519_SNTRUP761_NAME => Some(X25519_SNTRUP761),
        X25519_MLKEM768_NAME => Some(X25519_MLKEM768),
        // Plain X25519, except on a server answering a client that also
        // offered a hybrid (see `hybrid_first`).
        X25519_NAME => Some(&hybrid_first::X25519_UNLESS_HYBRID_OFFERED),
        _ => None,
    }
}

/// The QUIC groups an OpenSSH-style `KexAlgorithms` value selects, in
/// order. The value may name TCP's algorithms too: OpenSSH's names for the
/// same hybrids select the matching groups, others are ignored here (see
/// [`sshq_core::kex`], which both transports share).
pub fn parse_kex_list(spec: &str) -> Result<Vec<String>, KexError> {
    let names = sshq_core::kex::resolve(
        Some(spec),
        sshq_core::transport::TransportKind::Quic,
        sshq_core::kex::Role::Client,
    )?;
    Ok(names.into_iter().map(str::to_owned).collect())
}

/// A rustls provider (ring) whose key exchange groups are `names`, in that
/// order, and whose cipher suites prefer TLS13_AES_128_GCM_SHA256.
///
/// AES-128-GCM goes first because it measured ~10% faster than rustls's
/// default AES-256-GCM for bulk QUIC traffic here; the rest keep ring's
/// order. When `x25519-sntrup761` is selected this also starts the
/// background key-pair pool (see [`prewarm_sntrup761`]), so the first
/// handshake finds a key ready.
pub fn crypto_provider<S: AsRef<str>>(names: &[S]) -> Result<Arc<CryptoProvider>, KexError> {
    build(names, None)
}

/// Like [`crypto_provider`], and every completed key exchange of this
/// provider is recorded in `observer` (quinn does not expose which group
/// was negotiated). Each call leaks a few small wrappers, since rustls
/// wants `&'static` groups: call it once per connection or endpoint.
pub fn crypto_provider_observed<S: AsRef<str>>(
    names: &[S],
    observer: Arc<NegotiatedGroup>,
) -> Result<Arc<CryptoProvider>, KexError> {
    build(names, Some(&observer))
}

fn build<S: AsRef<str>>(
    names: &[S],
    observer: Option<&Arc<NegotiatedGroup>>,
) -> Result<Arc<CryptoProvider>, KexError> {
    let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in names {
        let name = name.as_ref().trim();
        let group = group_by_name(name).ok_or_else(|| KexError::Unknown {
            name: name.to_owned(),
        })?;
        if groups.iter().any(|g| g.name() == group.name()) {
            continue;
        }
        if name == X25519_SNTRUP761_NAME {
            pool::prewarm();
        }
        groups.push(match observer {
            Some(obs) => observe::observed(group, obs),
            None => group,
        });
    }
    if groups.is_empty() {
        return Err(KexError::Empty);
    }

    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = groups;
    // Stable sort: AES-128-GCM first, everything else in ring's order.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != CipherSuite::TLS13_AES_128_GCM_SHA256);
    Ok(Arc::new(provider))
}

/// Turns a failed handshake into [`KexError::NoCommonGroup`] when the
/// failure is the one a group mismatch causes; `None` otherwise.
///
/// - Server side: rustls closes with its own reason `NoKxGroupsInCommon`,
///   which is certain.
/// - Client side: the server only sends a `handshake_failure` alert, which
///   no other mismatch between two sshq peers produces (they share cipher
///   suites and signature schemes), so it is reported as a group mismatch
///   with the alert named.
///
/// `ours` is what this side offered (or accepted), for the message.
pub fn explain_handshake_failure<S: AsRef<str>>(
    err: &quinn::ConnectionError,
    ours: &[S],
) -> Option<KexError> {
    const HANDSHAKE_FAILURE: u8 = 40;
    let code = quinn::TransportErrorCode::crypto(HANDSHAKE_FAILURE);
    let ours = ours
        .iter()
        .map(|s| s.as_ref())
        .collect::<Vec<_>>()
        .join(",");
    match err {
        quinn::ConnectionError::ConnectionClosed(close) if close.error_code == code => {
            Some(KexError::NoCommonGroup {
                peer: "server",
                ours,
                hint: "; the server answered with TLS alert handshake_failure".to_owned(),
            })
        }
        quinn::ConnectionError::TransportError(te)
            if te.code == code && te.reason.contains("NoKxGroupsInCommon") =>
        {
            Some(KexError::NoCommonGroup {
                peer: "client",
                ours,
                hint: String::new(),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_openssh_style_lists() {
        assert_eq!(parse_kex_list("x25519").unwrap(), v(&["x25519"]));
        assert_eq!(
            parse_kex_list("x25519,x25519-mlkem768,x25519").unwrap(),
            v(&["x25519", "x25519-mlkem768"])
        );
        assert_eq!(parse_kex_list("+x25519").unwrap(), v(DEFAULT_KEX));
        assert_eq!(
            parse_kex_list("-x25519-sntrup761").unwrap(),
            v(&["x25519-mlkem768", "x25519"])
        );
        assert_eq!(
            parse_kex_list("^x25519").unwrap(),
            v(&["x25519", "x25519-sntrup761", "x25519-mlkem768"])
        );
        assert_eq!(
            parse_kex_list(" x25519-mlkem768 , x25519 ").unwrap(),
            v(&["x25519-mlkem768", "x25519"])
        );
    }

    #[test]
    fn parse_errors_name_the_culprit_and_the_choices() {
        // OpenSSH's names for the same exchanges select QUIC's groups.
        assert_eq!(
            parse_kex_list("x25519,curve25519-sha256").unwrap(),
            v(&["x25519"])
        );
        assert_eq!(
            parse_kex_list("sntrup761x25519-sha512@openssh.com").unwrap(),
            v(&["x25519-sntrup761"])
        );
        let err = parse_kex_list("x25519,bogus").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'bogus'"), "{msg}");
        assert!(msg.contains("x25519-sntrup761"), "{msg}");

        assert!(matches!(
            parse_kex_list("-nope").unwrap_err(),
            KexError::List(sshq_core::kex::KexListError::Unknown { .. })
        ));
        assert!(matches!(
            parse_kex_list("").unwrap_err(),
            KexError::List(sshq_core::kex::KexListError::NothingLeft { .. })
        ));
        assert_eq!(parse_kex_list("+").unwrap(), v(DEFAULT_KEX));
        let msg = parse_kex_list("-x25519-sntrup761,x25519-mlkem768,x25519")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("no matching key exchange method found"),
            "{msg}"
        );
        // Algorithms QUIC cannot do are ignored by it.
        assert_eq!(
            parse_kex_list("diffie-hellman-group14-sha256,x25519-mlkem768").unwrap(),
            v(&["x25519-mlkem768"])
        );
    }

    #[test]
    fn names_and_codepoints() {
        assert_eq!(
            group_name(NamedGroup::from(0xFE61)),
            Some("x25519-sntrup761")
        );
        assert_eq!(
            group_name(NamedGroup::X25519MLKEM768),
            Some("x25519-mlkem768")
        );
        assert_eq!(group_name(NamedGroup::X25519), Some("x25519"));
        assert_eq!(group_name(NamedGroup::secp256r1), None);
        for name in SUPPORTED_KEX {
            let g = group_by_name(name).unwrap();
            assert_eq!(group_name(g.name()), Some(*name));
        }
        assert_eq!(
            describe_groups(&[NamedGroup::from(0xFE61), NamedGroup::secp256r1]),
            "x25519-sntrup761,0x0017"
        );
    }

    #[test]
    fn provider_has_groups_in_order_and_aes128_first() {
        let p = crypto_provider(&["x25519", "x25519-sntrup761"]).unwrap();
        let names: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(names, vec![NamedGroup::X25519, NamedGroup::from(0xFE61)]);
        assert_eq!(
            p.cipher_suites.first().map(|s| s.suite()),
            Some(CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        assert_eq!(
            p.cipher_suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );

        let p = crypto_provider(DEFAULT_KEX).unwrap();
        assert_eq!(p.kx_groups.len(), 3);
        let parsed: Vec<String> = parse_kex_list("^x25519-mlkem768").unwrap();
        let p = crypto_provider(&parsed).unwrap();
        assert_eq!(
            p.kx_groups.first().map(|g| g.name()),
            Some(NamedGroup::X25519MLKEM768)
        );
        assert_eq!(
            crypto_provider(&["x25519", "bogus"]).unwrap_err(),
            KexError::Unknown {
                name: "bogus".into()
            }
        );
        assert_eq!(crypto_provider::<&str>(&[]).unwrap_err(), KexError::Empty);
    }
}
