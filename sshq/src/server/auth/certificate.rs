//! OpenSSH user certificates (PROTOCOL.certkeys) as sshd accepts them.
//!
//! A certificate lets its key in when a trusted CA signed it, it is a user
//! certificate valid now, one of its principals is acceptable for the
//! account, its critical options are all known and hold for this client,
//! and neither it, its key nor its CA is revoked. A CA is trusted in one
//! of two ways, tried in sshd's order:
//!
//! 1. `TrustedUserCAKeys` lists it. A principal must then be the user's
//!    name or, with `AuthorizedPrincipalsFile`, a name in that file, whose
//!    line may carry options.
//! 2. A `cert-authority` line of the user's authorized_keys names it. A
//!    principal must then be the user's name or, with `principals=`, match
//!    that list; the line's other options apply.
//!
//! What the session may do is what both the certificate (its extensions,
//! `force-command`) and the trusting line allow (sshd's sshauthopt_merge).

use std::net::IpAddr;
use std::path::Path;

use sshq_core::log_escape;
use sshq_core::ssh_key::certificate::CertType;
use sshq_core::ssh_key::public::KeyData;
use sshq_core::ssh_key::{Certificate, HashAlg, PublicKey};

use super::key_options::{self, KeyOptions};

/// Why a certificate lets nobody in (logged by sshqd; the client only
/// learns "failure", as from sshd).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateRefusal {
    #[error("certificate is not a user certificate")]
    NotUserCertificate,
    #[error(
        "certificate signature or validity period does not check out (expired or not yet valid?)"
    )]
    Invalid,
    #[error("certificate lacks principal list")]
    NoPrincipals,
    #[error("certificate signature algorithm {0} is not allowed (CASignatureAlgorithms)")]
    CaSignatureAlgorithm(String),
    #[error("certificate source-address {0:?} is not a list of addresses and networks")]
    BadSourceAddress(String),
    #[error("certificate has unsupported critical option {0}")]
    UnsupportedCriticalOption(String),
    #[error("certificate source-address {allowed:?} does not allow {peer}")]
    SourceAddress { allowed: String, peer: String },
    #[error("forced command in certificate and in the line that trusts its CA differ")]
    ForceCommandConflict,
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// The checks that do not depend on which CA is trusted: a user
/// certificate, signed by the key it names as its CA, valid at `now`, with
/// principals. (Whether that CA is trusted is the caller's question.)
pub fn check_certificate(certificate: &Certificate, now: u64) -> Result<(), CertificateRefusal> {
    if certificate.cert_type() != CertType::User {
        return Err(CertificateRefusal::NotUserCertificate);
    }
    // sshd's default CASignatureAlgorithms: no SHA-1 ssh-rsa, no DSA.
    let signed_with = certificate.signature().algorithm();
    if !sshq_core::host_certificate::allowed_ca_signature(&signed_with) {
        return Err(CertificateRefusal::CaSignatureAlgorithm(
            signed_with.as_str().to_string(),
        ));
    }
    let ca = certificate.signature_key().fingerprint(HashAlg::Sha256);
    certificate
        .validate_at(now, [&ca])
        .map_err(|_| CertificateRefusal::Invalid)?;
    if certificate.valid_principals().is_empty() {
        return Err(CertificateRefusal::NoPrincipals);
    }
    Ok(())
}

/// What the certificate itself allows the client at `peer`: nothing but
/// what its `permit-*` extensions grant, and its `force-command`. Its
/// critical options must all be known (`force-command`,
/// `source-address`, `verify-required`: a security key must have verified
/// the user).
pub fn certificate_options(
    certificate: &Certificate,
    peer: Option<IpAddr>,
) -> Result<KeyOptions, CertificateRefusal> {
    let mut options = KeyOptions {
        pty: false,
        port_forwarding: false,
        agent_forwarding: false,
        x11_forwarding: false,
        user_rc: false,
        ..KeyOptions::default()
    };
    for (name, value) in certificate.critical_options().iter() {
        match name.as_str() {
            "force-command" => options.command = Some(value.clone()),
            "source-address" => {
                // sshd: a list of addresses and CIDR networks only; a list
                // that does not parse refuses the certificate.
                if !source_address_list(value) {
                    return Err(CertificateRefusal::BadSourceAddress(log_escape::peer_text(
                        value,
                    )));
                }
                if !key_options::from_allows(value, peer) {
                    return Err(CertificateRefusal::SourceAddress {
                        allowed: value.clone(),
                        peer: peer.map_or_else(|| "an unknown address".into(), |p| p.to_string()),
                    });
                }
            }
            "verify-required" => options.verify_required = true,
            other => {
                return Err(CertificateRefusal::UnsupportedCriticalOption(
                    log_escape::peer_text(other),
                ))
            }
        }
    }
    // Unknown extensions grant nothing and are ignored, as in sshd.
    for name in certificate.extensions().keys() {
        match name.as_str() {
            "permit-pty" => options.pty = true,
            "permit-port-forwarding" => options.port_forwarding = true,
            "permit-agent-forwarding" => options.agent_forwarding = true,
            "permit-X11-forwarding" => options.x11_forwarding = true,
            "permit-user-rc" => options.user_rc = true,
            "no-touch-required" => options.touch_required = false,
            _ => {}
        }
    }
    Ok(options)
}

/// The options of a line that trusts a CA, and of one of its
/// certificates, together: each permission only if both grant it, one
/// forced command (two different ones refuse), a touch unless both waive
/// it, user verification if either asks for it (sshauthopt_merge). The line's `from=` and `expiry-time=` were checked when it was
/// chosen.
pub fn merge(
    line: &KeyOptions,
    certificate: &KeyOptions,
) -> Result<KeyOptions, CertificateRefusal> {
    let command = match (&line.command, &certificate.command) {
        (Some(a), Some(b)) if a != b => return Err(CertificateRefusal::ForceCommandConflict),
        (Some(command), _) | (None, Some(command)) => Some(command.clone()),
        (None, None) => None,
    };
    Ok(KeyOptions {
        command,
        from: line.from.clone(),
        expires_at: line.expires_at,
        pty: line.pty && certificate.pty,
        port_forwarding: line.port_forwarding && certificate.port_forwarding,
        agent_forwarding: line.agent_forwarding && certificate.agent_forwarding,
        x11_forwarding: line.x11_forwarding && certificate.x11_forwarding,
        user_rc: line.user_rc && certificate.user_rc,
        touch_required: line.touch_required || certificate.touch_required,
        verify_required: line.verify_required || certificate.verify_required,
        cert_authority: false,
        principals: None,
        permit_open: line.permit_open.clone(),
        permit_listen: line.permit_listen.clone(),
        // Only the line can set variables (a certificate cannot), as in sshd.
        environment: line.environment.clone(),
    })
}

/// Whether the TrustedUserCAKeys text lists `ca` (one public key a line;
/// blank lines and `#` comments skipped).
pub fn ca_listed(text: &str, ca: &KeyData) -> bool {
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    for line in lines {
        // sshd stops at a line that is not a key: CAs after it are not
        // trusted.
        let Ok(key) = PublicKey::from_openssh(line) else {
            tracing::error!(
                "TrustedUserCAKeys: a line is not a public key; the lines after it are ignored"
            );
            return false;
        };
        if key.key_data() == ca {
            return true;
        }
    }
    false
}

/// The options of the first line of an AuthorizedPrincipalsFile text that
/// names one of the certificate's principals and admits the client at
/// `peer` (`from=`, `expiry-time=`). Lines that do not parse, or carry
/// `cert-authority` or `principals=` (meaningless there), are skipped
/// with a log line, as sshd does.
pub fn principals_grant(
    text: &str,
    file: &Path,
    certificate: &Certificate,
    peer: Option<IpAddr>,
) -> Option<KeyOptions> {
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (options, principal) = match key_options::parse_principal_line(line) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(
                    "{}:{}: bad principals line: {e}",
                    file.display(),
                    number + 1
                );
                continue;
            }
        };
        let at = || format!("{}:{}", file.display(), number + 1);
        if options.cert_authority || options.principals.is_some() {
            tracing::warn!("{}: cert-authority and principals= are invalid here", at());
            continue;
        }
        if certificate.valid_principals().contains(&principal) {
            if !super::line_admits(&options, peer, &at) {
                continue;
            }
            tracing::debug!(
                "{}:{}: matched principal {}",
                file.display(),
                number + 1,
                log_escape::peer_text(&principal)
            );
            return Some(options);
        }
    }
    None
}

/// Whether one of the certificate's principals is in a `principals=`
/// list: exact names, comma-separated, read up to the first empty entry
/// (sshd's match_principals_option; no patterns).
pub fn principal_in_list(certificate: &Certificate, list: &str) -> bool {
    let names: Vec<&str> = list
        .split(',')
        .take_while(|name| !name.is_empty())
        .collect();
    certificate
        .valid_principals()
        .iter()
        .any(|principal| names.contains(&principal.as_str()))
}

/// Whether a `source-address` value is a comma-separated list of
/// addresses and `address/bits` networks, as sshd requires.
fn source_address_list(value: &str) -> bool {
    value.split(',').all(|entry| {
        let (address, bits) = match entry.split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (entry, None),
        };
        let Ok(address) = address.parse::<IpAddr>() else {
            return false;
        };
        let most = if address.is_ipv4() { 32 } else { 128 };
        bits.is_none_or(|bits| bits.parse::<u32>().is_ok_and(|bits| bits <= most))
    })
}

/// The options of the first `cert-authority` line of an authorized_keys
/// text (of `file`) that trusts the certificate's CA for `user`, from
/// `peer`. Its `from=` and `expiry-time=` hold as for plain keys.
pub fn authorized_keys_ca_grant(
    text: &str,
    file: &Path,
    certificate: &Certificate,
    user: &str,
    peer: Option<IpAddr>,
) -> Option<KeyOptions> {
    let ca = PublicKey::from(certificate.signature_key().clone());
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Ok((options, listed)) = key_options::parse_line(line) else {
            continue;
        };
        if !options.cert_authority || listed.key_data() != ca.key_data() {
            continue;
        }
        let at = || format!("{}:{}", file.display(), number + 1);
        let principal_ok = match &options.principals {
            Some(list) => principal_in_list(certificate, list),
            None => certificate.valid_principals().iter().any(|p| p == user),
        };
        if !principal_ok {
            tracing::info!(
                "{}: certificate ID {} has no principal the line accepts",
                at(),
                log_escape::peer_text(certificate.key_id())
            );
            continue;
        }
        if !super::line_admits(&options, peer, &at) {
            continue;
        }
        return Some(options);
    }
    None
}

#[cfg(test)]
mod tests;
