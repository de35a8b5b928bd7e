//! Issue 10: FIDO security keys (`sk-*`) over TCP. russh hides an sk
//! signature's flags, so sshqd cannot check the user-presence bit sshd
//! requires; until authorized_keys options (`no-touch-required`, issue 14)
//! and a way to read the flags exist, such keys are refused over TCP with a
//! log line that says why (draft §12.13 lists it as a known limitation).

mod common;

use common::{show, Lab};
use sshq_core::ssh_key::private::{KeypairData, PrivateKey, SkEd25519 as SkEd25519Keypair};
use sshq_core::ssh_key::public::{Ed25519PublicKey, SkEd25519};
use sshq_core::ssh_key::LineEnding;

/// Writes an `sk-ssh-ed25519@openssh.com` key as ssh-keygen would for a
/// token (a key handle, no secret), and authorizes it: ssh can offer it
/// without a token; signing would need one.
fn write_authorized_sk_key(lab: &Lab, name: &str) -> String {
    let public = SkEd25519::new(Ed25519PublicKey([7u8; 32]), "ssh:");
    let keypair = SkEd25519Keypair::new(public, 0x01, vec![0x42u8; 64]).expect("sk keypair");
    let key = PrivateKey::new(KeypairData::SkEd25519(keypair), "token").expect("sk key");
    let private = key.to_openssh(LineEnding::LF).expect("encode the sk key");
    let path = lab.path(name);
    std::fs::write(&path, private.as_bytes()).expect("write the sk key");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod the sk key");
    let public_line = key
        .public_key()
        .to_openssh()
        .expect("encode the public key");
    std::fs::write(lab.path(&format!("{name}.pub")), format!("{public_line}\n"))
        .expect("write the sk public key");
    let mut authorized = std::fs::read_to_string(lab.path("authorized_keys")).unwrap_or_default();
    authorized.push_str(&format!("{public_line}\n"));
    std::fs::write(lab.path("authorized_keys"), authorized).expect("authorize the sk key");
    public_line
}

#[test]
fn an_authorized_security_key_is_refused_over_tcp_with_a_reason() {
    let lab = Lab::new();
    write_authorized_sk_key(&lab, "token_sk");
    let server = lab.start_sshqd("");
    let out = lab.client(
        "ssh",
        "token_sk",
        server.port,
        &["-o", "PubkeyAcceptedAlgorithms=sk-ssh-ed25519@openssh.com"],
        &["true"],
        b"",
    );
    assert!(!out.status.success(), "{}", show(&out));
    let log = server.log_text();
    assert!(
        log.contains(&format!(
            "publickey sk-ssh-ed25519@openssh.com refused for {}: \
             security keys are accepted over QUIC only",
            lab.user
        )),
        "sshqd did not say why it refused the security key; ssh:\n{}\nsshqd log:\n{log}",
        show(&out)
    );
    assert!(!log.contains("Accepted publickey"), "{log}");
}
