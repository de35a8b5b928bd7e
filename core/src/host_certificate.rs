//! Host certificates: OpenSSH's `@cert-authority` trust, on the client.
//!
//! This is OpenSSH 9.x's `check_host_key()` (sshconnect.c) handed a
//! certificate: known_hosts is searched for an `@cert-authority` line for
//! the host that holds the certificate's signing CA key (hostfile.c
//! `check_hostkeys_by_key_or_type`, with the same `[host]:port` and
//! port-less rules as plain lines); if one does, the certificate must be a
//! valid host certificate for the host now (`sshkey_cert_check_host`). A
//! certificate whose key or CA is `@revoked` for the host is refused. In
//! every other case `ssh` logs why (at error level when a trusted CA signed
//! an invalid certificate, at debug level otherwise) and checks the plain
//! certified key instead; so does [`check_host_certificate`], with
//! [`check_host_key`].
//!
//! Differences from `ssh`:
//! - a revoked certificate or CA is refused in every mode, as
//!   [`check_host_key`] refuses revoked keys;
//! - principals are matched case-insensitively (`ssh` lowercases the host
//!   name but compares it with the principal patterns case-sensitively);
//! - a certificate whose signature does not verify is treated as invalid
//!   ("Certificate invalid: incorrect signature") and the plain key is
//!   checked; `ssh` already refuses such a certificate when it parses it,
//!   ending the connection. Falling back never trusts more than the plain
//!   key would be trusted on its own.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use ssh_key::certificate::CertType;
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, Certificate, HashAlg, PublicKey};

use crate::host_key_check::{
    check_host_key, warn_revoked, HostKeyCheck, HostKeyError, HostKeyPrompt, HostKeyVerdict, Log,
    ServerKey, StrictHostKeyChecking,
};
use crate::known_hosts::{
    fingerprint_sha256, hostfile_name, key_type_name, KnownHosts, Location, Lookup,
    DEFAULT_SSH_PORT,
};

/// Checks `certificate`, the host certificate the server sent, as `ssh`
/// does: [`HostKeyVerdict::Known`] when an `@cert-authority` line for the
/// host holds its CA key and it is a valid host certificate for the host
/// now; refused when its key or CA is `@revoked` for the host; otherwise,
/// after saying why, the verdict of [`check_host_key`] on the certified
/// plain key (which may prompt, through `prompt`). Messages go to `out`.
pub fn check_host_certificate(
    check: &HostKeyCheck<'_>,
    certificate: &Certificate,
    prompt: &mut dyn HostKeyPrompt,
    out: &mut dyn Write,
) -> Result<HostKeyVerdict, HostKeyError> {
    // A clock before 1970 makes every certificate "not yet valid", as in ssh.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    check_host_certificate_at(check, certificate, now, prompt, out)
}

/// Whether a readable known_hosts file (user or global) has an
/// `@cert-authority` line for the host, under the names a certificate
/// would be looked up with: only then can a host certificate be trusted.
pub fn trusts_host_certificates(check: &HostKeyCheck<'_>) -> bool {
    let known = KnownHosts::read_readable_files(&files(check));
    lookup_names(check)
        .iter()
        .any(|name| !known.cert_authorities(name).is_empty())
}

/// Whether the server's host certificate should be asked for before `key`
/// is judged: the host may be vouched for by a CA
/// ([`trusts_host_certificates`]) and `key` itself is neither known for
/// the host nor revoked, so the certificate could change the answer.
pub fn wants_certificate(check: &HostKeyCheck<'_>, key: &PublicKey) -> bool {
    let known = KnownHosts::read_readable_files(&files(check));
    let has_authority = lookup_names(check)
        .iter()
        .any(|name| !known.cert_authorities(name).is_empty());
    let status = match check.host_key_alias {
        Some(alias) => known.lookup_name(alias, key),
        None => known.lookup(check.host, check.port, key),
    };
    has_authority && !matches!(status, Lookup::Found(_) | Lookup::Revoked(_))
}

/// [`check_host_certificate`] at `now` (Unix seconds).
fn check_host_certificate_at(
    check: &HostKeyCheck<'_>,
    certificate: &Certificate,
    now: u64,
    prompt: &mut dyn HostKeyPrompt,
    out: &mut dyn Write,
) -> Result<HostKeyVerdict, HostKeyError> {
    let known = KnownHosts::read_files(&files(check))?;
    let plain = PublicKey::from(certificate.public_key().clone());
    // "ED25519-CERT" and the like, as OpenSSH's sshkey_type().
    let key_type = key_type_name(&PublicKey::from(KeyData::from(certificate.clone())));
    let mut log = Log {
        out,
        level: check.verbosity,
    };
    match find_authority(&known, check, certificate) {
        Authority::Revoked { name, location } => {
            warn_revoked(
                &mut log,
                key_type,
                &name,
                check.policy != StrictHostKeyChecking::No,
            );
            let server = ServerKey {
                host: name,
                key_type,
                fingerprint: fingerprint_sha256(&plain),
            };
            return Err(HostKeyError::Revoked {
                server,
                revoked: location,
            });
        }
        Authority::Trusted { name, location } => {
            tracing::debug!(
                "Host '{name:.200}' is known and matches the {key_type} host certificate."
            );
            tracing::debug!("Found CA key in {location}");
            let principal = check.host_key_alias.unwrap_or(check.host);
            match certificate_problem(certificate, principal, now) {
                None => return Ok(HostKeyVerdict::Known),
                Some(reason) => log.error(reason),
            }
        }
        Authority::NotFound => {}
    }
    tracing::debug!("No matching CA found. Retry with plain key");
    check_host_key(check, &plain, prompt, log.out)
}

/// What known_hosts says about a certificate's CA for the host.
enum Authority {
    /// The certificate's key or its CA key is `@revoked` under `name`.
    Revoked { name: String, location: Location },
    /// An `@cert-authority` line for `name` holds the CA key.
    Trusted { name: String, location: Location },
    /// No line vouches for the CA.
    NotFound,
}

/// OpenSSH's lookup of a certificate: under `[host]:port` (or the
/// HostKeyAlias) and, for another port, under the bare host next (its
/// "checking without port identifier" retry). Revocation wins on each name.
fn find_authority(
    known: &KnownHosts,
    check: &HostKeyCheck<'_>,
    certificate: &Certificate,
) -> Authority {
    let ca = certificate.signature_key();
    for name in lookup_names(check) {
        let revoked = known.revoked(&name, certificate.public_key());
        if let Some(location) = revoked.or_else(|| known.revoked(&name, ca)) {
            return Authority::Revoked { name, location };
        }
        let authorities = known.cert_authorities(&name);
        if let Some(line) = authorities.iter().find(|e| e.key().key_data() == ca) {
            let location = line.location();
            return Authority::Trusted { name, location };
        }
    }
    Authority::NotFound
}

/// The hostfile names to look a certificate's CA up under, in order.
fn lookup_names(check: &HostKeyCheck<'_>) -> Vec<String> {
    if let Some(alias) = check.host_key_alias {
        return vec![alias.to_ascii_lowercase()];
    }
    let mut names = vec![hostfile_name(check.host, check.port)];
    if check.port != 0 && check.port != DEFAULT_SSH_PORT {
        names.push(hostfile_name(check.host, DEFAULT_SSH_PORT));
    }
    names
}

/// The known_hosts files to read: user files first, then the global ones.
fn files<'a>(check: &HostKeyCheck<'a>) -> Vec<&'a PathBuf> {
    let user = check.user_known_hosts.iter();
    user.chain(check.global_known_hosts).collect()
}

/// Why a certificate signed by a trusted CA is not valid for `host` at
/// `now`, in OpenSSH's words (sshkey.c `sshkey_cert_check_authority` and
/// `sshkey_cert_check_host`, in their order), or `None` if it is valid.
fn certificate_problem(certificate: &Certificate, host: &str, now: u64) -> Option<&'static str> {
    if certificate.cert_type() != CertType::Host {
        return Some("Certificate invalid: not a host certificate");
    }
    if now < certificate.valid_after() {
        return Some("Certificate invalid: not yet valid");
    }
    if now >= certificate.valid_before() {
        return Some("Certificate invalid: expired");
    }
    let principals = certificate.valid_principals();
    if principals.is_empty() {
        return Some("Certificate lacks principal list");
    }
    // Host certificate principals are patterns (`*.example.com`) for ssh.
    let host = host.to_ascii_lowercase();
    let listed = |p: &String| crate::pattern::matches(&p.to_ascii_lowercase(), &host);
    if !principals.iter().any(listed) {
        return Some("Certificate invalid: name is not a listed principal");
    }
    if !certificate.critical_options().is_empty() {
        return Some("Certificate contains unsupported critical options");
    }
    if !allowed_ca_signature(&certificate.signature().algorithm()) {
        return Some("Certificate signed with disallowed algorithm");
    }
    // The CA was matched and the window checked above: what is left for
    // validate_at to refuse is the signature.
    let ca = certificate.signature_key().fingerprint(HashAlg::Sha256);
    if certificate.validate_at(now, [&ca]).is_err() {
        return Some("Certificate invalid: incorrect signature");
    }
    None
}

/// OpenSSH's default CASignatureAlgorithms: no `ssh-rsa` (SHA-1), no DSA.
/// sshd applies the same list to user certificates.
pub fn allowed_ca_signature(algorithm: &Algorithm) -> bool {
    match algorithm {
        Algorithm::Rsa { hash } => matches!(hash, Some(HashAlg::Sha256 | HashAlg::Sha512)),
        Algorithm::Ed25519
        | Algorithm::Ecdsa { .. }
        | Algorithm::SkEd25519
        | Algorithm::SkEcdsaSha2NistP256 => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::known_hosts::append_entry_name;
    use ssh_key::certificate::Builder;
    use ssh_key::private::Ed25519Keypair;
    use ssh_key::PrivateKey;
    use std::io;

    const NOW: u64 = 1_750_000_000;
    const HOST: &str = "server.example.com";
    const STRICT_UNKNOWN: &str = "No ED25519 host key is known for server.example.com and you \
                                  have requested strict checking.\r\nHost key verification failed.\r\n";

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
    }

    /// A certificate for `subject`'s key signed by `ca`, valid for HOST
    /// around NOW unless `edit` changes it.
    fn certificate(
        subject: &PrivateKey,
        ca: &PrivateKey,
        edit: impl FnOnce(&mut Cert),
    ) -> Certificate {
        let mut c = Cert {
            kind: CertType::Host,
            principals: vec![HOST],
            after: NOW - 60,
            before: NOW + 3600,
            critical: false,
        };
        edit(&mut c);
        let mut builder = Builder::new(
            [7u8; 32],
            subject.public_key().key_data().clone(),
            c.after,
            c.before,
        )
        .expect("builder");
        builder
            .cert_type(c.kind)
            .expect("type")
            .key_id("test")
            .expect("id");
        if c.principals.is_empty() {
            builder.all_principals_valid().expect("principals");
        }
        for principal in c.principals {
            builder.valid_principal(principal).expect("principal");
        }
        if c.critical {
            builder
                .critical_option("force-command", "true")
                .expect("option");
        }
        builder.sign(ca).expect("sign")
    }

    type Edit = fn(&mut Cert);

    struct Cert {
        kind: CertType,
        principals: Vec<&'static str>,
        after: u64,
        before: u64,
        critical: bool,
    }

    /// Fails the test if asked anything.
    struct NoQuestions;

    impl HostKeyPrompt for NoQuestions {
        fn ask(&mut self, prompt: &str) -> io::Result<Option<String>> {
            panic!("unexpected question: {prompt}");
        }
    }

    fn line(marker: &str, hosts: &str, key: &PrivateKey) -> String {
        let text = key.public_key().to_openssh().expect("openssh");
        format!("{marker}{hosts} {text}\n")
    }

    fn ca_line(hosts: &str, ca: &PrivateKey) -> String {
        line("@cert-authority ", hosts, ca)
    }

    /// Checks `cert` for HOST:`port` with StrictHostKeyChecking=yes against
    /// a known_hosts holding `lines`; returns the verdict and the transcript.
    fn run(
        lines: &[String],
        cert: &Certificate,
        port: u16,
    ) -> (Result<HostKeyVerdict, HostKeyError>, String) {
        run_with(lines, cert, port, |_| {})
    }

    fn run_with(
        lines: &[String],
        cert: &Certificate,
        port: u16,
        tweak: impl FnOnce(&mut HostKeyCheck<'_>),
    ) -> (Result<HostKeyVerdict, HostKeyError>, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = vec![dir.path().join("known_hosts")];
        std::fs::write(&files[0], lines.concat()).expect("write known_hosts");
        let mut check = HostKeyCheck::new(HOST, port, &files);
        check.policy = StrictHostKeyChecking::Yes;
        tweak(&mut check);
        let mut out = Vec::new();
        let result = check_host_certificate_at(&check, cert, NOW, &mut NoQuestions, &mut out);
        (result, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn valid_certificate_from_a_trusted_ca_is_known_silently() {
        let (ca, host) = (key(1), key(2));
        let cert = certificate(&host, &ca, |_| {});
        let (result, out) = run(&[ca_line("*.example.com", &ca)], &cert, 22);
        assert!(matches!(result, Ok(HostKeyVerdict::Known)), "{result:?}");
        assert_eq!(out, "");
    }

    #[test]
    fn invalid_certificates_say_why_and_fall_back_to_the_plain_key() {
        let (ca, host) = (key(1), key(2));
        let cases: [(&str, Edit); 7] = [
            ("Certificate invalid: expired", |c| c.before = NOW),
            ("Certificate invalid: not yet valid", |c| c.after = NOW + 1),
            ("Certificate invalid: name is not a listed principal", |c| {
                c.principals = vec!["other.example.com"]
            }),
            ("Certificate invalid: not a host certificate", |c| {
                c.kind = CertType::User
            }),
            ("Certificate lacks principal list", |c| c.principals.clear()),
            ("Certificate contains unsupported critical options", |c| {
                c.critical = true
            }),
            ("Certificate invalid: name is not a listed principal", |c| {
                c.principals = vec!["server.example.com.evil"]
            }),
        ];
        for (reason, edit) in cases {
            let cert = certificate(&host, &ca, edit);
            // Plain key unknown: the fallback refuses, as ssh's does.
            let (result, out) = run(&[ca_line(HOST, &ca)], &cert, 22);
            assert!(
                matches!(result, Err(HostKeyError::UnknownHost(_))),
                "{reason}: {result:?}"
            );
            assert_eq!(out, format!("{reason}\r\n{STRICT_UNKNOWN}"));
            // Plain key listed: the fallback accepts it.
            let lines = [ca_line(HOST, &ca), line("", HOST, &host)];
            let (result, out) = run(&lines, &cert, 22);
            assert!(
                matches!(result, Ok(HostKeyVerdict::Known)),
                "{reason}: {result:?}"
            );
            assert_eq!(out, format!("{reason}\r\n"));
        }
    }

    #[test]
    fn a_bad_signature_is_invalid() {
        let (ca, host) = (key(1), key(2));
        let mut blob = certificate(&host, &ca, |_| {}).to_bytes().expect("encode");
        if let Some(last) = blob.last_mut() {
            *last ^= 1;
        }
        let cert = Certificate::from_bytes(&blob).expect("decode");
        let (result, out) = run(&[ca_line(HOST, &ca)], &cert, 22);
        assert!(matches!(result, Err(HostKeyError::UnknownHost(_))));
        assert_eq!(
            out,
            format!("Certificate invalid: incorrect signature\r\n{STRICT_UNKNOWN}")
        );
    }

    #[test]
    fn principals_are_patterns_matched_without_case() {
        let (ca, host) = (key(1), key(2));
        let cert = certificate(&host, &ca, |c| c.principals = vec!["nope", "*.EXAMPLE.com"]);
        let (result, out) = run_with(&[ca_line("*", &ca)], &cert, 22, |c| {
            c.host = "Server.Example.COM"
        });
        assert!(
            matches!(result, Ok(HostKeyVerdict::Known)),
            "{result:?} {out}"
        );
        // With a HostKeyAlias, the alias is the name looked up and certified.
        let cert = certificate(&host, &ca, |c| c.principals = vec!["alias"]);
        let (result, _) = run_with(&[ca_line("alias", &ca)], &cert, 2222, |c| {
            c.host_key_alias = Some("alias")
        });
        assert!(matches!(result, Ok(HostKeyVerdict::Known)), "{result:?}");
    }

    #[test]
    fn an_untrusted_ca_is_skipped_quietly() {
        let (ca, other_ca, host) = (key(1), key(3), key(2));
        let cert = certificate(&host, &ca, |_| {});
        let wrong_ca = ca_line(HOST, &other_ca);
        let other_host = ca_line("*.example.org,!server.example.com", &ca);
        for lines in [vec![], vec![wrong_ca], vec![other_host]] {
            let (result, out) = run(&lines, &cert, 22);
            assert!(
                matches!(result, Err(HostKeyError::UnknownHost(_))),
                "{lines:?}"
            );
            assert_eq!(out, STRICT_UNKNOWN);
        }
        // A plain line with the CA key does not make it a CA: it is the
        // host's (other) key, so the plain key has changed.
        let (result, out) = run(&[line("", HOST, &ca)], &cert, 22);
        assert!(
            matches!(result, Err(HostKeyError::Changed { .. })),
            "{result:?}"
        );
        assert!(
            out.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
            "{out}"
        );
        let (result, out) = run(
            &[ca_line(HOST, &other_ca), line("", HOST, &host)],
            &cert,
            22,
        );
        assert!(matches!(result, Ok(HostKeyVerdict::Known)), "{result:?}");
        assert_eq!(out, "");
    }

    fn revoked_block(strict: bool) -> String {
        let mut text = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
             @       WARNING: REVOKED HOST KEY DETECTED!               @\r\n\
             @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
             The ED25519-CERT host key for server.example.com is marked as revoked.\r\n\
             This could mean that a stolen key is being used to\r\n\
             impersonate this host.\r\n"
            .to_string();
        if strict {
            text.push_str(
                "ED25519-CERT host key for server.example.com was revoked and you have \
                 requested strict checking.\r\n",
            );
        }
        text + "Host key verification failed.\r\n"
    }

    #[test]
    fn a_revoked_ca_or_certified_key_is_refused_without_fallback() {
        let (ca, host) = (key(1), key(2));
        let cert = certificate(&host, &ca, |_| {});
        let trusted = ca_line(HOST, &ca);
        let listed = line("", HOST, &host);
        for revoked in [&ca, &host] {
            let lines = [
                trusted.clone(),
                listed.clone(),
                line("@revoked ", "*", revoked),
            ];
            for policy in [StrictHostKeyChecking::Yes, StrictHostKeyChecking::No] {
                let (result, out) = run_with(&lines, &cert, 22, |c| c.policy = policy);
                assert_eq!(out, revoked_block(policy == StrictHostKeyChecking::Yes));
                let Err(HostKeyError::Revoked { server, revoked }) = result else {
                    panic!("not refused: {result:?}");
                };
                assert_eq!((server.key_type, revoked.line), ("ED25519-CERT", 3));
                assert_eq!(server.fingerprint, fingerprint_sha256(host.public_key()));
            }
        }
        // Revoked for another host only: no effect.
        let lines = [trusted, line("@revoked ", "other.example.com", &ca)];
        assert!(matches!(
            run(&lines, &cert, 22).0,
            Ok(HostKeyVerdict::Known)
        ));
    }

    #[test]
    fn hashed_host_names_match() {
        let (ca, host) = (key(1), key(2));
        let cert = certificate(&host, &ca, |_| {});
        let dir = tempfile::tempdir().expect("tempdir");
        let hashed = dir.path().join("hashed");
        append_entry_name(&hashed, HOST, ca.public_key(), true).expect("append");
        let text = std::fs::read_to_string(&hashed).expect("read");
        assert!(text.starts_with("|1|"));
        let (result, out) = run(&[format!("@cert-authority {text}")], &cert, 22);
        assert!(
            matches!(result, Ok(HostKeyVerdict::Known)),
            "{result:?} {out}"
        );
    }

    #[test]
    fn ports_follow_the_plain_line_rules() {
        let (ca, host) = (key(1), key(2));
        let cert = certificate(&host, &ca, |_| {});
        let with_port = ca_line("[server.example.com]:2222", &ca);
        assert!(matches!(
            run(std::slice::from_ref(&with_port), &cert, 2222).0,
            Ok(HostKeyVerdict::Known)
        ));
        // A bare-name line also covers other ports (ssh's retry without port)...
        assert!(matches!(
            run(&[ca_line(HOST, &ca)], &cert, 2222).0,
            Ok(HostKeyVerdict::Known)
        ));
        // ...but a [host]:port line covers that port only.
        for port in [22, 2200] {
            let (result, out) = run(std::slice::from_ref(&with_port), &cert, port);
            assert!(
                matches!(result, Err(HostKeyError::UnknownHost(_))),
                "{port}"
            );
            assert!(
                out.starts_with("No ED25519 host key is known for "),
                "{out}"
            );
        }
        let (result, out) = run(&[with_port, line("@revoked ", "*", &ca)], &cert, 2222);
        assert!(matches!(result, Err(HostKeyError::Revoked { .. })));
        assert!(out.contains("host key for [server.example.com]:2222 is marked as revoked"));
    }

    #[test]
    fn quiet_prints_nothing() {
        let (ca, host) = (key(1), key(2));
        let cert = certificate(&host, &ca, |c| c.before = NOW);
        let (result, out) = run_with(&[ca_line(HOST, &ca)], &cert, 22, |c| {
            c.verbosity = crate::host_key_check::Verbosity::Quiet
        });
        assert!(result.is_err() && out.is_empty());
    }

    #[test]
    fn when_to_ask_for_a_certificate() {
        let (ca, host, other) = (key(1), key(2), key(3));
        let dir = tempfile::tempdir().expect("tempdir");
        let user = vec![dir.path().join("user"), dir.path().join("unreadable")];
        let global = vec![dir.path().join("global")];
        std::fs::create_dir(&user[1]).expect("directory");
        let mut check = HostKeyCheck::new(HOST, 22, &user);
        check.global_known_hosts = &global;
        let write = |path: &PathBuf, lines: &[String]| std::fs::write(path, lines.concat());
        assert!(!trusts_host_certificates(&check));
        write(&global[0], &[ca_line("*.example.org", &ca)]).expect("write");
        assert!(!trusts_host_certificates(&check));
        write(&global[0], &[ca_line("*.example.com", &ca)]).expect("write");
        assert!(trusts_host_certificates(&check));
        assert!(wants_certificate(&check, host.public_key()));
        // A known key needs no certificate; a revoked one gets none.
        write(&user[0], &[line("", HOST, &host)]).expect("write");
        assert!(!wants_certificate(&check, host.public_key()));
        assert!(wants_certificate(&check, other.public_key()));
        write(&user[0], &[line("@revoked ", HOST, &other)]).expect("write");
        assert!(!wants_certificate(&check, other.public_key()));
    }
}
