use super::*;
use sshq_core::ssh_key::certificate::Builder;
use sshq_core::ssh_key::private::Ed25519Keypair;
use sshq_core::ssh_key::PrivateKey;

const NOW: u64 = 1_750_000_000;

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

/// What a test certificate holds; `user_certificate` signs it.
struct Spec {
    kind: CertType,
    principals: Vec<&'static str>,
    after: u64,
    before: u64,
    critical: Vec<(&'static str, &'static str)>,
    extensions: Vec<&'static str>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            kind: CertType::User,
            principals: vec!["alice"],
            after: NOW - 60,
            before: NOW + 3600,
            critical: Vec::new(),
            extensions: vec!["permit-pty", "permit-port-forwarding"],
        }
    }
}

fn user_certificate(subject: &PrivateKey, ca: &PrivateKey, spec: Spec) -> Certificate {
    let mut builder = Builder::new(
        [9u8; 32],
        subject.public_key().key_data().clone(),
        spec.after,
        spec.before,
    )
    .unwrap();
    builder
        .cert_type(spec.kind)
        .unwrap()
        .key_id("test-id")
        .unwrap();
    if spec.principals.is_empty() {
        builder.all_principals_valid().unwrap();
    }
    for principal in spec.principals {
        builder.valid_principal(principal).unwrap();
    }
    for (name, value) in spec.critical {
        builder.critical_option(name, value).unwrap();
    }
    for name in spec.extensions {
        builder.extension(name, "").unwrap();
    }
    builder.sign(ca).unwrap()
}

fn good() -> Certificate {
    user_certificate(&key(1), &key(2), Spec::default())
}

fn ca_line(options: &str) -> String {
    let ca = key(2).public_key().to_openssh().unwrap();
    format!("{options} {ca}\n")
}

#[test]
fn validity_type_and_principals() {
    assert_eq!(check_certificate(&good(), NOW), Ok(()));
    assert_eq!(
        check_certificate(&good(), NOW + 7200),
        Err(CertificateRefusal::Invalid)
    );
    assert_eq!(
        check_certificate(&good(), NOW - 3600),
        Err(CertificateRefusal::Invalid)
    );
    let host = Spec {
        kind: CertType::Host,
        ..Spec::default()
    };
    assert_eq!(
        check_certificate(&user_certificate(&key(1), &key(2), host), NOW),
        Err(CertificateRefusal::NotUserCertificate)
    );
    let anyone = Spec {
        principals: Vec::new(),
        ..Spec::default()
    };
    assert_eq!(
        check_certificate(&user_certificate(&key(1), &key(2), anyone), NOW),
        Err(CertificateRefusal::NoPrincipals)
    );
}

#[test]
fn a_tampered_certificate_does_not_check_out() {
    // The CA named inside is replaced: the signature no longer verifies.
    let mut bytes = good().to_bytes().unwrap();
    let other_ca = key(3).public_key().key_data().clone();
    let real_ca = key(2).public_key().key_data().clone();
    let (real, other) = (
        sshq_core::ssh_key::PublicKey::from(real_ca)
            .to_bytes()
            .unwrap(),
        sshq_core::ssh_key::PublicKey::from(other_ca)
            .to_bytes()
            .unwrap(),
    );
    let at = bytes
        .windows(real.len())
        .position(|window| window == real.as_slice())
        .unwrap();
    bytes[at..at + real.len()].copy_from_slice(&other);
    let tampered = Certificate::from_bytes(&bytes).unwrap();
    assert_eq!(
        check_certificate(&tampered, NOW),
        Err(CertificateRefusal::Invalid)
    );
}

#[test]
fn extensions_grant_and_critical_options_restrict() {
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let options = certificate_options(&good(), Some(local)).unwrap();
    assert!(options.pty && options.port_forwarding);
    assert!(!options.agent_forwarding && !options.x11_forwarding && !options.user_rc);
    assert!(options.touch_required && options.command.is_none());

    let spec = Spec {
        critical: vec![
            ("force-command", "uptime"),
            ("source-address", "127.0.0.0/8"),
        ],
        extensions: vec!["no-touch-required", "permit-agent-forwarding"],
        ..Spec::default()
    };
    let forced = user_certificate(&key(1), &key(2), spec);
    let options = certificate_options(&forced, Some(local)).unwrap();
    assert_eq!(options.command.as_deref(), Some("uptime"));
    assert!(!options.touch_required && options.agent_forwarding && !options.pty);
    let far: IpAddr = "192.0.2.1".parse().unwrap();
    assert!(matches!(
        certificate_options(&forced, Some(far)),
        Err(CertificateRefusal::SourceAddress { .. })
    ));
    assert!(certificate_options(&forced, None).is_err());

    for bad in ["localhost", "127.0.0.1/33", "10.0.0.0/8, 127.0.0.1", "*"] {
        let spec = Spec {
            critical: vec![("source-address", bad)],
            ..Spec::default()
        };
        assert!(
            matches!(
                certificate_options(&user_certificate(&key(1), &key(2), spec), Some(local)),
                Err(CertificateRefusal::BadSourceAddress(_))
            ),
            "{bad}"
        );
    }

    let unknown = Spec {
        critical: vec![("frobnicate", "")],
        ..Spec::default()
    };
    assert_eq!(
        certificate_options(&user_certificate(&key(1), &key(2), unknown), Some(local)),
        Err(CertificateRefusal::UnsupportedCriticalOption(
            "frobnicate".into()
        ))
    );
    let verify = Spec {
        critical: vec![("verify-required", "")],
        ..Spec::default()
    };
    // verify-required is honoured: the certificate asks for user
    // verification by its security key.
    let options =
        certificate_options(&user_certificate(&key(1), &key(2), verify), Some(local)).unwrap();
    assert!(options.verify_required);
    assert!(
        !certificate_options(&good(), Some(local))
            .unwrap()
            .verify_required
    );
}

#[test]
fn verify_required_from_either_side_holds_after_merging() {
    let plain = certificate_options(&good(), None).unwrap();
    let verifying = KeyOptions {
        verify_required: true,
        ..plain.clone()
    };
    let line = KeyOptions::default();
    let line_verifying = KeyOptions {
        verify_required: true,
        ..KeyOptions::default()
    };
    assert!(!merge(&line, &plain).unwrap().verify_required);
    assert!(merge(&line, &verifying).unwrap().verify_required);
    assert!(merge(&line_verifying, &plain).unwrap().verify_required);
}

#[test]
fn merging_takes_the_stricter_of_line_and_certificate() {
    let cert = certificate_options(&good(), None).unwrap();
    let line = KeyOptions {
        pty: false,
        command: Some("/bin/date".into()),
        ..KeyOptions::default()
    };
    let merged = merge(&line, &cert).unwrap();
    assert!(!merged.pty && merged.port_forwarding && !merged.agent_forwarding);
    assert_eq!(merged.command.as_deref(), Some("/bin/date"));
    let forced = KeyOptions {
        command: Some("uptime".into()),
        ..cert.clone()
    };
    assert_eq!(
        merge(&line, &forced),
        Err(CertificateRefusal::ForceCommandConflict)
    );
    let same = KeyOptions {
        command: Some("/bin/date".into()),
        ..cert
    };
    assert_eq!(
        merge(&line, &same).unwrap().command.as_deref(),
        Some("/bin/date")
    );
}

#[test]
fn trusted_ca_files_and_principals_files() {
    let ca = key(2);
    let text = format!("# CAs\n\n{}\n", ca.public_key().to_openssh().unwrap());
    assert!(ca_listed(&text, ca.public_key().key_data()));
    assert!(!ca_listed(&text, key(3).public_key().key_data()));
    // As sshd: a line that is not a key ends the list.
    let text = format!("not a key\n{}\n", ca.public_key().to_openssh().unwrap());
    assert!(!ca_listed(&text, ca.public_key().key_data()));

    let file = Path::new("principals");
    let cert = good();
    let local: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
    assert!(principals_grant("bob\ncarol\n", file, &cert, local).is_none());
    let text = "bob\nno-pty,command=\"id\" alice\n";
    let grant = principals_grant(text, file, &cert, local).unwrap();
    assert!(!grant.pty);
    assert_eq!(grant.command.as_deref(), Some("id"));
    // A line that does not parse is skipped, and a later one still counts.
    let grant = principals_grant("frobnicate alice\nalice\n", file, &cert, local).unwrap();
    assert_eq!(grant, KeyOptions::default());
    // from= and expiry-time= hold on principals lines too.
    for options in [
        "from=\"10.0.0.0/8\"",
        "expiry-time=\"20000101\"",
        "cert-authority",
    ] {
        let text = format!("{options} alice\n");
        assert!(
            principals_grant(&text, file, &cert, local).is_none(),
            "{options}"
        );
    }
    assert!(principals_grant("from=\"127.0.0.1\" alice\n", file, &cert, local).is_some());
}

#[test]
fn cert_authority_lines_in_authorized_keys() {
    let file = Path::new("authorized_keys");
    let cert = good();
    let local: Option<IpAddr> = Some("127.0.0.1".parse().unwrap());
    // Without principals=, the user's name must be a principal.
    let line = ca_line("cert-authority");
    assert!(authorized_keys_ca_grant(&line, file, &cert, "alice", local).is_some());
    assert!(authorized_keys_ca_grant(&line, file, &cert, "bob", local).is_none());
    // With principals=, the list decides, whatever the user's name: exact
    // names, no patterns, read up to an empty entry (as sshd).
    let line = ca_line("cert-authority,principals=\"ops,alice\"");
    assert!(authorized_keys_ca_grant(&line, file, &cert, "bob", local).is_some());
    let line = ca_line("cert-authority,principals=\"ops\"");
    assert!(authorized_keys_ca_grant(&line, file, &cert, "alice", local).is_none());
    for list in ["ali*", "*,!root", "ops,,alice"] {
        let line = ca_line(&format!("cert-authority,principals=\"{list}\""));
        assert!(
            authorized_keys_ca_grant(&line, file, &cert, "alice", local).is_none(),
            "{list}"
        );
    }
    // A plain line for the CA key does not trust its certificates.
    let line = ca_line("no-pty");
    assert!(authorized_keys_ca_grant(&line, file, &cert, "alice", local).is_none());
    // The line's from= holds.
    let line = ca_line("cert-authority,from=\"10.0.0.0/8\"");
    assert!(authorized_keys_ca_grant(&line, file, &cert, "alice", local).is_none());
    // Another CA's line trusts nothing here.
    let other = format!(
        "cert-authority {}\n",
        key(3).public_key().to_openssh().unwrap()
    );
    assert!(authorized_keys_ca_grant(&other, file, &cert, "alice", local).is_none());
}

#[test]
fn a_cert_authority_line_never_admits_the_ca_key_itself() {
    let ca = key(2);
    let line = ca_line("cert-authority");
    let granted = super::super::text_grant(&line, Path::new("ak"), ca.public_key(), None);
    assert_eq!(granted, None);
}
