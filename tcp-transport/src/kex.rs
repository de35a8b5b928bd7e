//! The key exchanges russh is told to offer: sshq's one `KexAlgorithms`
//! list (resolved by `sshq_core::kex`) as russh names, plus the KEXINIT
//! pseudo-algorithms russh only enables when they are in that list.

use russh::kex::Name;

/// The KEXINIT extension markers: `ext-info-*` (RFC 8308, needed for
/// rsa-sha2 user keys) and OpenSSH's strict key exchange (the Terrapin
/// countermeasure). russh enables each only when it is in `Preferred::kex`
/// and sends only the ones for its own role, so all four go in.
const EXTENSION_MARKERS: &[Name] = &[
    russh::kex::EXTENSION_SUPPORT_AS_CLIENT,
    russh::kex::EXTENSION_SUPPORT_AS_SERVER,
    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
    russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

/// A key exchange name russh does not implement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key exchange algorithm '{0}' is not supported over TCP")]
pub struct UnsupportedKex(pub String);

/// Key exchange algorithms russh implements, in preference order: built
/// once (a bad name fails at configuration time, not per connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KexList(Vec<Name>);

impl KexList {
    /// `names` in this order; the first name russh lacks is the error.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Self, UnsupportedKex> {
        names
            .iter()
            .map(|name| {
                Name::try_from(name.as_ref()).map_err(|_| UnsupportedKex(name.as_ref().into()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(KexList)
    }

    /// sshq's client default (`sshq_core::kex::TCP_CLIENT_DEFAULT`).
    pub fn client_default() -> Self {
        Self::from_defaults(sshq_core::kex::TCP_CLIENT_DEFAULT)
    }

    /// sshqd's default (`sshq_core::kex::TCP_SERVER_DEFAULT`).
    pub fn server_default() -> Self {
        Self::from_defaults(sshq_core::kex::TCP_SERVER_DEFAULT)
    }

    fn from_defaults(names: &[&str]) -> Self {
        // Every default is implemented (checked by a test below); should one
        // not be, it is left out rather than failing every connection.
        KexList(
            names
                .iter()
                .filter_map(|n| Name::try_from(*n).ok())
                .collect(),
        )
    }

    /// The names as they are written in KEXINIT.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|n| n.as_ref()).collect()
    }

    /// What goes into russh's `Preferred::kex`: the list, then the
    /// extension markers.
    pub(crate) fn russh_names(&self) -> Vec<Name> {
        self.0.iter().chain(EXTENSION_MARKERS).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sshq_core::transport::TransportKind;

    #[test]
    fn every_name_is_implemented_and_markers_follow() {
        assert_eq!(
            KexList::client_default().names(),
            sshq_core::kex::TCP_CLIENT_DEFAULT
        );
        assert_eq!(
            KexList::server_default().names(),
            sshq_core::kex::TCP_SERVER_DEFAULT
        );
        let every_tcp_name = sshq_core::kex::transport_names(TransportKind::Tcp);
        assert_eq!(
            KexList::new(&every_tcp_name).unwrap().names(),
            every_tcp_name
        );

        let list = KexList::new(&["sntrup761x25519-sha512@openssh.com"]).unwrap();
        let russh = list.russh_names();
        assert_eq!(russh.len(), 1 + EXTENSION_MARKERS.len());
        assert_eq!(
            russh.first().map(|n| n.as_ref()),
            Some("sntrup761x25519-sha512@openssh.com")
        );
        assert!(russh.contains(&russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER));

        assert_eq!(
            KexList::new(&["x25519-sntrup761"]).unwrap_err(),
            UnsupportedKex("x25519-sntrup761".into())
        );
    }
}
