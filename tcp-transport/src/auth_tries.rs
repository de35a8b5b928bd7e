//! How the TCP server counts authentication failures (MaxAuthTries) and
//! which keys are FIDO security keys, kept apart from the russh handler.

/// MaxAuthTries, counted as sshd counts it (auth2.c): every refused
/// request is a failure, except a first "none" request and a publickey
/// query for a key that would be accepted (answered with PK_OK); a request
/// that arrives once `failures >= MaxAuthTries` is not even looked at, and
/// reaching the limit ends the connection with "Too many authentication
/// failures". So MaxAuthTries 0 allows no login at all, as in sshd. A
/// method that succeeds only partly (AuthenticationMethods) is no failure,
/// and a keyboard-interactive conversation counts once, when it ends
/// refused: its rounds are "postponed" answers, and its answers are not
/// requests.
///
/// russh does not tell the handler about requests it refuses by itself (a
/// signature that does not verify, an unknown algorithm); its own limit,
/// one above ours because it also counts the free "none", stops those.
pub(crate) struct AuthFailures {
    max: u32,
    failures: u32,
    pub(crate) requests: u32,
}

impl AuthFailures {
    pub(crate) fn new(max: u32) -> Self {
        AuthFailures {
            max,
            failures: 0,
            requests: 0,
        }
    }

    /// Counts a request; true when the limit was reached before it.
    // draft §7.7: a request arriving when the failure count already equals MaxAuthTries is not examined
    pub(crate) fn exhausted(&mut self) -> bool {
        self.requests = self.requests.saturating_add(1);
        self.failures >= self.max
    }

    /// Whether the limit is already reached, for a signed request whose
    /// key russh accepted from an earlier query (counted there).
    pub(crate) fn failed_before_signature(&self) -> bool {
        self.failures >= self.max
    }

    /// Counts a refusal; true when it reaches the limit.
    pub(crate) fn failed(&mut self) -> bool {
        self.failures = self.failures.saturating_add(1);
        self.failures >= self.max
    }
}

/// FIDO security keys (sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com).
pub(crate) fn is_security_key(key: &russh::keys::PublicKey) -> bool {
    matches!(
        key.algorithm(),
        russh::keys::Algorithm::SkEd25519 | russh::keys::Algorithm::SkEcdsaSha2NistP256
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sshq_core::ssh_key::public::{Ed25519PublicKey, KeyData, SkEd25519};
    use sshq_core::ssh_key::PublicKey;

    #[test]
    fn auth_failures_count_as_sshd_counts_them() {
        let mut none = AuthFailures::new(0);
        assert!(none.exhausted(), "MaxAuthTries 0 admits no request at all");
        let mut one = AuthFailures::new(1);
        assert!(!one.exhausted());
        assert!(one.failed(), "the first failure reaches MaxAuthTries 1");
        assert!(one.exhausted());
        let mut six = AuthFailures::new(6);
        for _ in 0..5 {
            assert!(!six.exhausted());
            assert!(!six.failed());
        }
        assert!(six.failed());
    }

    #[test]
    fn security_keys_are_recognised() {
        let ed25519 = Ed25519PublicKey([9u8; 32]);
        let sk = PublicKey::from(KeyData::SkEd25519(SkEd25519::new(ed25519, "ssh:")));
        assert!(is_security_key(&sk));
        assert!(!is_security_key(&PublicKey::from(KeyData::Ed25519(
            ed25519
        ))));
    }
}
