//! FIDO security keys (`sk-ssh-ed25519@openssh.com`,
//! `sk-ecdsa-sha2-nistp256@openssh.com`; issue 14 item 6) end to end over
//! both transports. The keys live in a test agent that signs as an
//! authenticator does, with the flags each case sets: the touch (user
//! presence) is required unless authorized_keys or the certificate says
//! `no-touch-required`, and user verification (PIN) when either says
//! `verify-required`, as in sshd (auth2-pubkey.c). sshq is run over QUIC
//! and TCP, OpenSSH's ssh over TCP against sshqd, and sshq against
//! OpenSSH's sshd, the reference, which verifies the same signatures.

mod common;

use std::process::{Command, Output};

use common::agent::{SkAgent, SkKind, SK_USER_PRESENCE, SK_USER_VERIFICATION};
use common::client_programs::{Client, EVERY_CLIENT, SSHQ_TCP};
use common::{run_with_input, show, text, Lab, Listeners, Server};

/// What a successful login prints.
const LOGGED_IN: &str = "sk-login-ok";

/// sshd's reasons (auth2-pubkey.c), which sshqd logs in the same words.
const NO_TOUCH: &str = "rejected: user presence (authenticator touch) requirement not met";
const NO_VERIFICATION: &str = "rejected: user verification requirement not met";

/// Both flags a PIN-protected, touched key sets.
const TOUCHED_AND_VERIFIED: u8 = SK_USER_PRESENCE | SK_USER_VERIFICATION;

impl Client {
    /// Logs in with the keys of `agent` (no identity file, so the agent's
    /// keys are offered), then `extra`, and runs `echo LOGGED_IN`.
    fn login(&self, lab: &Lab, port: u16, agent: &SkAgent, extra: &[&str]) -> Output {
        let known_hosts = format!("UserKnownHostsFile={}", lab.path("known_hosts").display());
        let port = port.to_string();
        let mut args: Vec<&str> = vec![
            "-o",
            &known_hosts,
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=no",
            "-p",
            &port,
        ];
        args.extend_from_slice(self.options);
        args.extend_from_slice(extra);
        let target = lab.target();
        args.extend([target.as_str(), "echo", LOGGED_IN]);
        run_with_input(
            Command::new(self.program)
                .args(&args)
                .env("SSH_AUTH_SOCK", &agent.socket),
            b"",
        )
    }
}

/// How many lines of `log` contain `needle`.
fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|line| line.contains(needle)).count()
}

/// The login must succeed.
fn assert_in(server: &Server, client: Client, case: &str, out: &Output) {
    assert!(
        out.status.code() == Some(0) && text(&out.stdout) == format!("{LOGGED_IN}\n"),
        "{}: {case}: expected a login\n{}\nserver log:\n{}",
        client.name,
        show(out),
        server.log_text()
    );
}

/// The login must be refused, with the server logging `reason` once more
/// than before (`before`: the count of such lines before the attempt).
fn assert_refused(
    server: &Server,
    client: Client,
    case: &str,
    out: &Output,
    reason: &str,
    before: usize,
) {
    let log = server.log_text();
    assert!(
        out.status.code() == Some(255) && text(&out.stderr).contains("Permission denied"),
        "{}: {case}: expected Permission denied\n{}\nserver log:\n{log}",
        client.name,
        show(out)
    );
    assert!(
        count(&log, reason) > before,
        "{}: {case}: the server did not log {reason:?}\nserver log:\n{log}",
        client.name
    );
}

/// One attempt expected to be refused for `reason`.
fn expect_refused(
    lab: &Lab,
    server: &Server,
    client: Client,
    agent: &SkAgent,
    extra: &[&str],
    case: &str,
    reason: &str,
) {
    let before = count(&server.log_text(), reason);
    let out = client.login(lab, server.port, agent, extra);
    assert_refused(server, client, case, &out, reason, before);
}

fn write(lab: &Lab, name: &str, content: String) {
    std::fs::write(lab.path(name), content).expect("write a lab file");
}

/// `ssh-keygen -l` reads the sk public key the test agent presents.
fn assert_keygen_reads(lab: &Lab, name: &str, kind: &str) {
    let out = run_with_input(
        Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(lab.path(&format!("{name}-sk.pub"))),
        b"",
    );
    assert!(
        out.status.success() && text(&out.stdout).contains(&format!("({kind})")),
        "ssh-keygen -l does not read {name}-sk.pub as {kind}: {}",
        show(&out)
    );
}

/// 1. A plain authorized_keys line: with the touch each kind of security
///    key logs in over both transports and from OpenSSH's ssh; without it
///    the login is refused with sshd's reason; `no-touch-required` lets an
///    untouched signature in.
#[test]
fn security_keys_need_the_touch_unless_no_touch_required() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Both);
    for (kind, name, type_name) in [
        (SkKind::Ed25519, "token_ed", "ED25519-SK"),
        (SkKind::EcdsaP256, "token_ec", "ECDSA-SK"),
    ] {
        let line = SkAgent::make_key(&lab, name, kind);
        assert_keygen_reads(&lab, name, type_name);
        let agent = SkAgent::start(&lab, &format!("{name}.sock"), &[name]);
        write(&lab, "authorized_keys", format!("{line}\n"));
        for client in EVERY_CLIENT {
            agent.set_flags(SK_USER_PRESENCE);
            let out = client.login(&lab, server.port, &agent, &[]);
            assert_in(&server, client, &format!("{name} touched"), &out);

            agent.set_flags(0);
            let case = format!("{name} not touched");
            expect_refused(&lab, &server, client, &agent, &[], &case, NO_TOUCH);
            // sshd's line names the key as sshd does.
            assert!(
                server
                    .log_text()
                    .lines()
                    .any(|l| l.contains(&format!("public key {type_name} SHA256:"))
                        && l.contains(NO_TOUCH)),
                "{}: the refusal does not name the {type_name} key:\n{}",
                client.name,
                server.log_text()
            );
        }
        write(
            &lab,
            "authorized_keys",
            format!("no-touch-required {line}\n"),
        );
        for client in EVERY_CLIENT {
            agent.set_flags(0);
            let out = client.login(&lab, server.port, &agent, &[]);
            assert_in(&server, client, &format!("{name} no-touch-required"), &out);
        }
    }
    // Only the agent's security keys are offered (no identity file).
    let accepted = format!("Accepted publickey for {}", lab.user);
    for transport in ["quic", "tcp"] {
        assert!(
            server
                .log_text()
                .lines()
                .any(|l| l.contains(&accepted) && l.contains(&format!("over {transport}"))),
            "no Accepted line for the sk key over {transport}:\n{}",
            server.log_text()
        );
    }
}

/// 2. `verify-required`: a touch alone is refused with sshd's reason; a
///    touch with user verification logs in; verification without a touch
///    is still refused for the touch.
#[test]
fn verify_required_needs_user_verification() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Both);
    let line = SkAgent::make_key(&lab, "token", SkKind::Ed25519);
    let agent = SkAgent::start(&lab, "token.sock", &["token"]);
    write(&lab, "authorized_keys", format!("verify-required {line}\n"));
    for client in EVERY_CLIENT {
        agent.set_flags(SK_USER_PRESENCE);
        let case = "verify-required, touched only";
        expect_refused(&lab, &server, client, &agent, &[], case, NO_VERIFICATION);

        agent.set_flags(TOUCHED_AND_VERIFIED);
        let out = client.login(&lab, server.port, &agent, &[]);
        assert_in(
            &server,
            client,
            "verify-required, touched and verified",
            &out,
        );

        agent.set_flags(SK_USER_VERIFICATION);
        let case = "verify-required, verified but not touched";
        expect_refused(&lab, &server, client, &agent, &[], case, NO_TOUCH);
    }
    // With no-touch-required too, verification alone is enough.
    write(
        &lab,
        "authorized_keys",
        format!("verify-required,no-touch-required {line}\n"),
    );
    for client in EVERY_CLIENT {
        agent.set_flags(SK_USER_VERIFICATION);
        let out = client.login(&lab, server.port, &agent, &[]);
        assert_in(&server, client, "verified, no-touch-required", &out);
    }
}

/// `ssh-keygen -s ca -I id -n user [options] name-sk.pub`, kept as
/// `cert_name` (the path returned).
fn certify(lab: &Lab, ca: &str, name: &str, cert_name: &str, options: &[&str]) -> String {
    let mut args = vec!["-q", "-s", ca, "-I", cert_name, "-n", &lab.user];
    for option in options {
        args.extend(["-O", option]);
    }
    let public = format!("{name}-sk.pub");
    args.push(&public);
    let out = run_with_input(
        Command::new("ssh-keygen")
            .current_dir(lab.dir.path())
            .args(&args),
        b"",
    );
    assert!(out.status.success(), "ssh-keygen -s: {}", show(&out));
    let path = lab.path(cert_name);
    std::fs::rename(lab.path(&format!("{name}-sk-cert.pub")), &path).expect("keep the certificate");
    path.display().to_string()
}

/// 3. Certificates of a security key (made by `ssh-keygen -s`): the touch
///    is required unless the certificate has the `no-touch-required`
///    extension (trusted through TrustedUserCAKeys, so no line takes it
///    back); its `verify-required` critical option, or the
///    `verify-required` of the `cert-authority` line that trusts its CA,
///    asks for user verification.
#[test]
fn security_key_certificates_honour_their_options_and_the_line() {
    let lab = Lab::new();
    lab.keygen("user_ca", "ed25519", "user-ca");
    lab.keygen("line_ca", "ed25519", "line-ca");
    SkAgent::make_key(&lab, "token", SkKind::Ed25519);
    let agent = SkAgent::start(&lab, "token.sock", &["token"]);
    let plain = certify(&lab, "user_ca", "token", "plain-cert.pub", &[]);
    let no_touch = certify(
        &lab,
        "user_ca",
        "token",
        "notouch-cert.pub",
        &["no-touch-required"],
    );
    let verify = certify(
        &lab,
        "user_ca",
        "token",
        "verify-cert.pub",
        &["verify-required"],
    );
    let by_line = certify(&lab, "line_ca", "token", "line-cert.pub", &[]);
    let line_ca = std::fs::read_to_string(lab.path("line_ca.pub")).expect("line CA");
    write(
        &lab,
        "authorized_keys",
        format!("cert-authority,verify-required {}", line_ca),
    );
    let server = lab.start_sshqd_on(
        &format!("TrustedUserCAKeys {}\n", lab.path("user_ca.pub").display()),
        Listeners::Both,
    );
    let with = |certificate: &str| format!("CertificateFile={certificate}");
    for client in EVERY_CLIENT {
        let plain_option = with(&plain);
        let plain_cert = ["-o", plain_option.as_str()];
        agent.set_flags(SK_USER_PRESENCE);
        let out = client.login(&lab, server.port, &agent, &plain_cert);
        assert_in(&server, client, "certificate, touched", &out);
        agent.set_flags(0);
        let case = "certificate, not touched";
        expect_refused(&lab, &server, client, &agent, &plain_cert, case, NO_TOUCH);

        let no_touch_option = with(&no_touch);
        let out = client.login(&lab, server.port, &agent, &["-o", &no_touch_option]);
        assert_in(
            &server,
            client,
            "no-touch-required certificate, not touched",
            &out,
        );

        let verify_option = with(&verify);
        let verify_cert = ["-o", verify_option.as_str()];
        agent.set_flags(SK_USER_PRESENCE);
        let case = "verify-required certificate, touched only";
        expect_refused(
            &lab,
            &server,
            client,
            &agent,
            &verify_cert,
            case,
            NO_VERIFICATION,
        );
        agent.set_flags(TOUCHED_AND_VERIFIED);
        let out = client.login(&lab, server.port, &agent, &verify_cert);
        assert_in(
            &server,
            client,
            "verify-required certificate, verified",
            &out,
        );

        let line_option = with(&by_line);
        let line_cert = ["-o", line_option.as_str()];
        agent.set_flags(SK_USER_PRESENCE);
        let case = "cert-authority,verify-required line, touched only";
        expect_refused(
            &lab,
            &server,
            client,
            &agent,
            &line_cert,
            case,
            NO_VERIFICATION,
        );
        agent.set_flags(TOUCHED_AND_VERIFIED);
        let out = client.login(&lab, server.port, &agent, &line_cert);
        assert_in(
            &server,
            client,
            "cert-authority,verify-required line, verified",
            &out,
        );
    }
}

/// 4. sshq over TCP to OpenSSH's sshd, which verifies the security key's
///    signatures and flags itself: a touched signature logs in, an
///    untouched one is refused unless the line says `no-touch-required`,
///    and `verify-required` wants user verification.
#[test]
fn sshq_over_tcp_logs_in_to_openssh_sshd_with_a_security_key() {
    let lab = Lab::new();
    let line = SkAgent::make_key(&lab, "token", SkKind::Ed25519);
    SkAgent::make_key(&lab, "token_ec", SkKind::EcdsaP256);
    let line_ec = std::fs::read_to_string(lab.path("token_ec-sk.pub")).expect("sk key");
    let agent = SkAgent::start(&lab, "token.sock", &["token"]);
    let agent_ec = SkAgent::start(&lab, "token_ec.sock", &["token_ec"]);
    write(&lab, "authorized_keys", format!("{line}\n{line_ec}"));
    let sshd = lab.start_sshd();
    for agent in [&agent, &agent_ec] {
        agent.set_flags(SK_USER_PRESENCE);
        let out = SSHQ_TCP.login(&lab, sshd.port, agent, &[]);
        assert_in(&sshd, SSHQ_TCP, "sshd, touched", &out);
        agent.set_flags(0);
        expect_refused(
            &lab,
            &sshd,
            SSHQ_TCP,
            agent,
            &[],
            "sshd, not touched",
            NO_TOUCH,
        );
    }

    write(
        &lab,
        "authorized_keys",
        format!("no-touch-required {line}\n"),
    );
    agent.set_flags(0);
    let out = SSHQ_TCP.login(&lab, sshd.port, &agent, &[]);
    assert_in(&sshd, SSHQ_TCP, "sshd, no-touch-required", &out);

    write(&lab, "authorized_keys", format!("verify-required {line}\n"));
    agent.set_flags(SK_USER_PRESENCE);
    let case = "sshd, verify-required, touched only";
    expect_refused(&lab, &sshd, SSHQ_TCP, &agent, &[], case, NO_VERIFICATION);
    agent.set_flags(TOUCHED_AND_VERIFIED);
    let out = SSHQ_TCP.login(&lab, sshd.port, &agent, &[]);
    assert_in(&sshd, SSHQ_TCP, "sshd, verify-required, verified", &out);
}
