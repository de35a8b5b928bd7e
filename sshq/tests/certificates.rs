//! OpenSSH certificates (issue 14) end to end, with certificates made by
//! the real `ssh-keygen -s`: user certificates trusted through
//! TrustedUserCAKeys (with AuthorizedPrincipalsFile) and through
//! authorized_keys `cert-authority` lines, their critical options and
//! extensions, RevokedKeys (KRLs from `ssh-keygen -k` and text lists),
//! certificates from CertificateFile and from a real ssh-agent, and host
//! certificates trusted through known_hosts `@cert-authority` lines. sshq
//! is run over QUIC and over TCP, OpenSSH's ssh over TCP against sshqd,
//! and sshq against OpenSSH's sshd, which is the reference.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::agent::Agent;
use common::client_programs::{Client, EVERY_CLIENT, SSHQ_BOTH, SSHQ_TCP, SSH_TCP};
use common::{
    echo_service, free_port, pts_line, run_with_input, show, text, Lab, Listeners, Server, SSHQ,
};

/// What a successful login prints.
const LOGGED_IN: &str = "cert-login-ok";

impl Client {
    /// The transport sshqd names in its "Accepted" lines.
    fn transport(&self) -> &'static str {
        if self.options.contains(&"Transport=quic") {
            "quic"
        } else {
            "tcp"
        }
    }

    /// The client with the lab's key `key` (and so its `key-cert.pub`),
    /// StrictHostKeyChecking=accept-new, this transport, then `extra`.
    fn run(
        &self,
        lab: &Lab,
        server: &Server,
        key: &str,
        extra: &[&str],
        command: &[&str],
        input: &[u8],
    ) -> Output {
        lab.client(
            self.program,
            key,
            server.port,
            &self.with(extra),
            command,
            input,
        )
    }

    /// The client with StrictHostKeyChecking `strict`, running [`LOGGED_IN`].
    fn run_strict(&self, lab: &Lab, server: &Server, key: &str, strict: &str) -> Output {
        let args = lab.client_args(
            key,
            strict,
            server.port,
            &self.with(&[]),
            &["echo", LOGGED_IN],
        );
        lab.run(self.program, &args, b"")
    }

    /// The client with no `-i` and IdentitiesOnly=no, so that the keys (and
    /// certificates) of the agent at `agent` are offered; then `extra`.
    fn run_with_agent(&self, lab: &Lab, server: &Server, agent: &Agent, extra: &[&str]) -> Output {
        let known_hosts = format!("UserKnownHostsFile={}", lab.path("known_hosts").display());
        let port = server.port.to_string();
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

    fn with<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        self.options.iter().chain(extra).copied().collect()
    }
}

/// The end of a server's log, for assertion messages.
fn log_tail(server: &Server) -> String {
    let log = server.log_text();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(25)..].join("\n");
    format!("server log (end):\n{tail}")
}

/// Fails the test unless the server's log has a line with every one of
/// `fragments`.
fn assert_logged(server: &Server, fragments: &[&str]) {
    let log = server.log_text();
    assert!(
        log.lines().any(|l| fragments.iter().all(|f| l.contains(f))),
        "no server log line with all of {fragments:?}\n{}",
        log_tail(server)
    );
}

/// `key`, with its certificate, logs `client` in to `server`.
fn assert_in(lab: &Lab, server: &Server, client: Client, key: &str) {
    let out = client.run(lab, server, key, &[], &["echo", LOGGED_IN], b"");
    assert!(
        out.status.code() == Some(0) && text(&out.stdout) == format!("{LOGGED_IN}\n"),
        "{}: key {key} (with its certificate) should log in\n{}\n{}",
        client.name,
        show(&out),
        log_tail(server)
    );
}

/// `key`, with its certificate, does not log `client` in to `server`:
/// exit 255 and "Permission denied", as from ssh.
fn assert_refused(lab: &Lab, server: &Server, client: Client, key: &str) {
    let out = client.run(lab, server, key, &[], &["echo", LOGGED_IN], b"");
    assert_denied(server, client, key, &out);
}

fn assert_denied(server: &Server, client: Client, key: &str, out: &Output) {
    assert!(
        out.status.code() == Some(255)
            && text(&out.stderr).contains("Permission denied")
            && !text(&out.stdout).contains(LOGGED_IN),
        "{}: key {key} (with its certificate) should be refused\n{}\n{}",
        client.name,
        show(out),
        log_tail(server)
    );
}

/// `client -tt ... tty` got no pty: the client says "PTY allocation
/// request failed"; sshq then runs the command without one ("not a tty",
/// as in tests/key_options.rs), while OpenSSH's ssh, whose pty was asked
/// for explicitly, closes the session (exit 255).
fn assert_no_pty(server: &Server, client: Client, key: &str, out: &Output) {
    let stdout = text(&out.stdout);
    let as_expected = if client.program == SSHQ {
        stdout.contains("not a tty")
    } else {
        out.status.code() == Some(255)
    };
    assert!(
        as_expected
            && pts_line(&stdout).is_none()
            && text(&out.stderr).contains("PTY allocation request failed"),
        "{}: {key} should get no pty\n{}\n{}",
        client.name,
        show(out),
        log_tail(server)
    );
}

/// `client` ran `command` with `key` and got exactly `expected` on stdout,
/// exit 0.
fn assert_output(
    lab: &Lab,
    server: &Server,
    client: Client,
    key: &str,
    command: &[&str],
    expected: &str,
) {
    let out = client.run(lab, server, key, &[], command, b"");
    assert!(
        out.status.code() == Some(0) && text(&out.stdout) == expected,
        "{}: key {key} running {command:?}: expected {expected:?}\n{}\n{}",
        client.name,
        show(&out),
        log_tail(server)
    );
}

/// Runs the real ssh-keygen in the lab's directory; fails the test if it fails.
fn ssh_keygen(lab: &Lab, args: &[&str]) -> Output {
    let out = run_with_input(
        Command::new("ssh-keygen")
            .current_dir(lab.dir.path())
            .args(args),
        b"",
    );
    assert!(out.status.success(), "ssh-keygen {args:?}: {}", show(&out));
    out
}

/// A fresh Ed25519 key `name` in the lab (a CA, or a user's key).
fn new_key(lab: &Lab, name: &str) {
    lab.keygen(name, "ed25519", name);
}

/// Signs the lab key `key` with the lab CA `ca` as a user certificate
/// (`key-cert.pub`) with key ID `id`, `principals` (none if empty) and
/// further ssh-keygen `options` (`-z`, `-V`, `-O`, ...).
fn sign_user(lab: &Lab, ca: &str, key: &str, id: &str, principals: &str, options: &[&str]) {
    let public = format!("{key}.pub");
    let mut args = vec!["-q", "-s", ca, "-I", id];
    if !principals.is_empty() {
        args.extend(["-n", principals]);
    }
    args.extend_from_slice(options);
    args.push(&public);
    ssh_keygen(lab, &args);
    let certificate = lab.path(&format!("{key}-cert.pub"));
    assert!(
        certificate.exists(),
        "ssh-keygen made no {}",
        certificate.display()
    );
}

/// A fresh key `key` and its user certificate (see [`sign_user`]).
fn certified_key(lab: &Lab, ca: &str, key: &str, id: &str, principals: &str, options: &[&str]) {
    new_key(lab, key);
    sign_user(lab, ca, key, id, principals, options);
}

/// Signs the lab's host key as a host certificate by `ca` for
/// `principals`, with further `options`, and saves it as `name`; returns
/// its path.
fn host_certificate(
    lab: &Lab,
    ca: &str,
    principals: &str,
    options: &[&str],
    name: &str,
) -> PathBuf {
    let mut args = vec!["-q", "-s", ca, "-I", name, "-h", "-n", principals];
    args.extend_from_slice(options);
    args.push("host_ed25519.pub");
    ssh_keygen(lab, &args);
    let path = lab.path(name);
    std::fs::rename(lab.path("host_ed25519-cert.pub"), &path).expect("save the host certificate");
    path
}

/// The text of the lab's `name.pub`, without its line end.
fn public_line(lab: &Lab, name: &str) -> String {
    std::fs::read_to_string(lab.path(&format!("{name}.pub")))
        .expect("public key")
        .trim()
        .to_string()
}

/// The config line trusting the lab CA `ca` for user certificates.
fn trusted_ca_line(lab: &Lab, ca: &str) -> String {
    format!(
        "TrustedUserCAKeys {}\n",
        lab.path(&format!("{ca}.pub")).display()
    )
}

fn write(lab: &Lab, name: &str, contents: impl AsRef<[u8]>) {
    std::fs::write(lab.path(name), contents).unwrap_or_else(|e| panic!("write {name}: {e}"));
}

/// 1. TrustedUserCAKeys: a valid certificate whose principal is the user
///    logs in over both transports (and with OpenSSH's ssh); expired, not
///    yet valid, wrong-principal, principal-less, host-type certificates
///    and those of an untrusted CA are refused.
#[test]
fn trusted_user_ca_keys_let_a_valid_certificate_in_and_refuse_the_rest() {
    let lab = Lab::new();
    new_key(&lab, "user_ca");
    new_key(&lab, "rogue_ca");
    let user = lab.user.clone();
    certified_key(&lab, "user_ca", "good", "good-id", &user, &["-z", "11"]);
    let refused = [
        (
            "expired",
            "expired-id",
            user.as_str(),
            vec!["-V", "20200101:20200102"],
        ),
        ("future", "future-id", user.as_str(), vec!["-V", "+1h:+2h"]),
        (
            "wrong_principal",
            "wrong-principal-id",
            "someone-else",
            vec![],
        ),
        ("no_principals", "no-principals-id", "", vec![]),
        ("host_type", "host-type-id", user.as_str(), vec!["-h"]),
    ];
    for (key, id, principals, options) in &refused {
        certified_key(&lab, "user_ca", key, id, principals, options);
    }
    certified_key(&lab, "rogue_ca", "rogue", "rogue-id", &user, &[]);
    let server = lab.start_sshqd_on(&trusted_ca_line(&lab, "user_ca"), Listeners::Both);

    for client in EVERY_CLIENT {
        assert_in(&lab, &server, client, "good");
        // The certificate let it in, not the bare key (not authorized):
        // sshqd names the certificate, for the transport used.
        let accepted =
            format!("Accepted certificate ID good-id (serial 11) for {user} from 127.0.0.1");
        let over = format!(" over {}", client.transport());
        assert!(
            server
                .log_text()
                .lines()
                .any(|l| l.contains(&accepted) && l.ends_with(&over)),
            "{}: no \"{accepted} ...{over}\" line\n{}",
            client.name,
            log_tail(&server)
        );
    }

    for (key, ..) in &refused {
        for client in EVERY_CLIENT {
            assert_refused(&lab, &server, client, key);
        }
    }
    for client in EVERY_CLIENT {
        assert_refused(&lab, &server, client, "rogue");
    }
    // Each refusal logged with its reason, as sshd logs it.
    let validity = "validity period does not check out";
    assert_logged(
        &server,
        &["refusing certificate ID expired-id (serial 0)", validity],
    );
    assert_logged(
        &server,
        &["refusing certificate ID future-id (serial 0)", validity],
    );
    assert_logged(
        &server,
        &["certificate ID wrong-principal-id names no principal accepted for"],
    );
    assert_logged(
        &server,
        &[
            "certificate ID no-principals-id",
            "certificate lacks principal list",
        ],
    );
    assert_logged(
        &server,
        &["certificate ID host-type-id", "not a user certificate"],
    );
    assert_logged(&server, &["certificate ID rogue-id", "no trusted CA"]);
    assert!(
        !server
            .log_text()
            .contains("Accepted certificate ID rogue-id"),
        "{}",
        log_tail(&server)
    );
}

/// 1b. The CA's signature algorithm: as sshd's default
///     CASignatureAlgorithms, a certificate an RSA CA signed with SHA-1
///     (`ssh-rsa`) is refused, one it signed with `rsa-sha2-512` is not.
#[test]
fn a_sha1_ca_signature_is_refused() {
    let lab = Lab::new();
    lab.keygen("rsa_ca", "rsa", "rsa_ca");
    let user = lab.user.clone();
    certified_key(&lab, "rsa_ca", "sha1", "sha1-id", &user, &["-t", "ssh-rsa"]);
    certified_key(
        &lab,
        "rsa_ca",
        "sha2",
        "sha2-id",
        &user,
        &["-t", "rsa-sha2-512"],
    );
    let server = lab.start_sshqd_on(&trusted_ca_line(&lab, "rsa_ca"), Listeners::Both);
    for client in EVERY_CLIENT {
        assert_in(&lab, &server, client, "sha2");
        assert_refused(&lab, &server, client, "sha1");
    }
    assert_logged(
        &server,
        &[
            "certificate ID sha1-id",
            "signature algorithm ssh-rsa is not allowed",
        ],
    );
}

/// 2. AuthorizedPrincipalsFile (`%u`, `%%`): a principal listed there lets
///    the certificate in, one not listed (even the user's own name, as in
///    sshd) does not; a line's options (`command=`, `no-pty`) apply; no
///    file, no login.
#[test]
fn authorized_principals_file_decides_which_principals_log_in() {
    let lab = Lab::new();
    new_key(&lab, "user_ca");
    let user = lab.user.clone();
    certified_key(&lab, "user_ca", "ops", "ops-id", "ops", &[]);
    certified_key(&lab, "user_ca", "several", "several-id", "nobody,ops", &[]);
    certified_key(&lab, "user_ca", "dev", "dev-id", "dev", &[]);
    certified_key(&lab, "user_ca", "own_name", "own-name-id", &user, &[]);
    certified_key(&lab, "user_ca", "deploy", "deploy-id", "deploy", &[]);
    certified_key(&lab, "user_ca", "ttyless", "ttyless-id", "ttyless", &[]);
    // `%%` is a `%`, `%u` the user name.
    let principals_file = format!("principals-%-{user}");
    write(
        &lab,
        &principals_file,
        "# who may log in as the lab user\n\nops\n\
         command=\"echo via-principals\" deploy\n\
         no-pty ttyless\n",
    );
    let config = format!(
        "{}AuthorizedPrincipalsFile {}/principals-%%-%u\n",
        trusted_ca_line(&lab, "user_ca"),
        lab.dir.path().display()
    );
    let server = lab.start_sshqd_on(&config, Listeners::Both);

    for client in EVERY_CLIENT {
        assert_in(&lab, &server, client, "ops");
        assert_in(&lab, &server, client, "several");
        assert_refused(&lab, &server, client, "dev");
        assert_refused(&lab, &server, client, "own_name");
        // The line's command= replaces the client's.
        assert_output(
            &lab,
            &server,
            client,
            "deploy",
            &["echo", "asked"],
            "via-principals\n",
        );
        // The line's no-pty: no pty.
        let out = client.run(&lab, &server, "ttyless", &["-tt"], &["tty"], b"");
        assert_no_pty(&server, client, "ttyless (no-pty line)", &out);
    }
    assert_logged(&server, &["Accepted certificate ID ops-id", "over quic"]);
    assert_logged(&server, &["Accepted certificate ID several-id", "over tcp"]);
    assert_logged(
        &server,
        &["certificate ID dev-id names no principal accepted"],
    );
    assert_logged(
        &server,
        &["certificate ID own-name-id names no principal accepted"],
    );

    // Without the file, nobody gets in through it.
    std::fs::remove_file(lab.path(&principals_file)).expect("remove the principals file");
    for client in EVERY_CLIENT {
        assert_refused(&lab, &server, client, "ops");
    }
}

/// 3. authorized_keys `cert-authority` lines: without `principals=` the
///    user's name must be a principal; with it, one of the listed ones
///    (and the user's name alone is not enough); the line's other options
///    apply (`command=`, `from=`); a forced command of the certificate
///    that differs from the line's refuses; the CA key itself is no user
///    key.
#[test]
fn cert_authority_lines_trust_a_ca_for_one_user() {
    let lab = Lab::new();
    new_key(&lab, "user_ca");
    new_key(&lab, "rogue_ca");
    let user = lab.user.clone();
    let ca = public_line(&lab, "user_ca");
    certified_key(&lab, "user_ca", "named", "named-id", &user, &[]);
    certified_key(&lab, "user_ca", "ops", "ops-id", "ops", &[]);
    certified_key(&lab, "rogue_ca", "rogue", "rogue-id", &user, &[]);
    certified_key(
        &lab,
        "user_ca",
        "cert_forced",
        "cert-forced-id",
        &user,
        &["-O", "force-command=echo via-cert"],
    );
    certified_key(
        &lab,
        "user_ca",
        "same_forced",
        "same-forced-id",
        &user,
        &["-O", "force-command=echo via-ca-line"],
    );
    // No TrustedUserCAKeys: only authorized_keys trusts the CA.
    let server = lab.start_sshqd_on("", Listeners::Both);

    write(&lab, "authorized_keys", format!("cert-authority {ca}\n"));
    for client in EVERY_CLIENT {
        assert_in(&lab, &server, client, "named");
        assert_refused(&lab, &server, client, "ops");
        assert_refused(&lab, &server, client, "rogue");
    }
    assert_logged(&server, &["Accepted certificate ID named-id", "over quic"]);
    assert_logged(
        &server,
        &["certificate ID ops-id has no principal the line accepts"],
    );

    write(
        &lab,
        "authorized_keys",
        format!("cert-authority,principals=\"dev,ops\" {ca}\n"),
    );
    for client in EVERY_CLIENT {
        assert_in(&lab, &server, client, "ops");
        assert_refused(&lab, &server, client, "named");
    }
    assert_logged(&server, &["Accepted certificate ID ops-id", "over tcp"]);

    write(
        &lab,
        "authorized_keys",
        format!("cert-authority,command=\"echo via-ca-line\" {ca}\n"),
    );
    for client in EVERY_CLIENT {
        assert_output(
            &lab,
            &server,
            client,
            "named",
            &["echo", "asked"],
            "via-ca-line\n",
        );
        // The certificate forces another command: refused, as by sshd.
        assert_refused(&lab, &server, client, "cert_forced");
        // The same command in both: fine.
        assert_output(
            &lab,
            &server,
            client,
            "same_forced",
            &["echo", "asked"],
            "via-ca-line\n",
        );
    }
    assert_logged(
        &server,
        &[
            "certificate ID cert-forced-id",
            "forced command in certificate and in the line",
        ],
    );

    write(
        &lab,
        "authorized_keys",
        format!("cert-authority,from=\"10.0.0.0/8\" {ca}\n"),
    );
    for client in EVERY_CLIENT {
        assert_refused(&lab, &server, client, "named");
    }
    assert_logged(&server, &["not a permitted address"]);

    // The CA's own key, offered as a plain key, is not a user key.
    write(&lab, "authorized_keys", format!("cert-authority {ca}\n"));
    for client in EVERY_CLIENT {
        let out = client.run(&lab, &server, "user_ca", &[], &["echo", LOGGED_IN], b"");
        assert_denied(&server, client, "user_ca", &out);
    }
    assert_logged(&server, &["the key is a cert-authority, not a user key"]);
}

/// 4. Critical options: `force-command` runs instead of the client's
///    command; `source-address` must hold for the client's address;
///    unknown critical options refuse; `verify-required` concerns only
///    security keys (security_keys.rs), so an Ed25519 key logs in, as
///    with sshd.
#[test]
fn critical_options_force_a_command_and_restrict_the_source() {
    let lab = Lab::new();
    new_key(&lab, "user_ca");
    let user = lab.user.clone();
    certified_key(
        &lab,
        "user_ca",
        "forced",
        "forced-id",
        &user,
        &[
            "-O",
            "force-command=echo forced-by-cert \"[$SSH_ORIGINAL_COMMAND]\"",
        ],
    );
    certified_key(
        &lab,
        "user_ca",
        "net10",
        "net10-id",
        &user,
        &["-O", "source-address=10.0.0.0/8"],
    );
    certified_key(
        &lab,
        "user_ca",
        "local32",
        "local32-id",
        &user,
        &["-O", "source-address=127.0.0.1/32"],
    );
    certified_key(
        &lab,
        "user_ca",
        "either",
        "either-id",
        &user,
        &["-O", "source-address=10.0.0.0/8,127.0.0.0/8"],
    );
    certified_key(
        &lab,
        "user_ca",
        "verify",
        "verify-id",
        &user,
        &["-O", "verify-required"],
    );
    certified_key(
        &lab,
        "user_ca",
        "unknown",
        "unknown-id",
        &user,
        &["-O", "critical:frobnicate@example.com=yes"],
    );
    let server = lab.start_sshqd_on(&trusted_ca_line(&lab, "user_ca"), Listeners::Both);

    for client in EVERY_CLIENT {
        assert_output(
            &lab,
            &server,
            client,
            "forced",
            &["echo", "asked"],
            "forced-by-cert [echo asked]\n",
        );
        assert_refused(&lab, &server, client, "net10");
        assert_in(&lab, &server, client, "local32");
        assert_in(&lab, &server, client, "either");
        assert_in(&lab, &server, client, "verify");
        assert_refused(&lab, &server, client, "unknown");
    }
    // A shell request runs the forced command too, with nothing in
    // SSH_ORIGINAL_COMMAND.
    for client in SSHQ_BOTH {
        let out = client.run(&lab, &server, "forced", &["-T"], &[], b"");
        assert_eq!(
            text(&out.stdout),
            "forced-by-cert []\n",
            "{}: {}\n{}",
            client.name,
            show(&out),
            log_tail(&server)
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            client.name,
            show(&out)
        );
    }
    assert_logged(
        &server,
        &["certificate ID net10-id", "source-address", "127.0.0.1"],
    );
    assert_logged(
        &server,
        &[
            "certificate ID unknown-id",
            "unsupported critical option frobnicate@example.com",
        ],
    );
    assert_logged(
        &server,
        &["Accepted certificate ID local32-id", "over quic"],
    );
}

/// 5. Extensions grant what the session may do: no `permit-pty`, no pty
///    (the command runs without one, "PTY allocation request failed");
///    no `permit-port-forwarding`, no `-W` and no `-R`; no
///    `permit-agent-forwarding`, no `-A`. Each granted alone works.
#[test]
fn extensions_grant_pty_forwarding_and_agent() {
    let lab = Lab::new();
    new_key(&lab, "user_ca");
    let user = lab.user.clone();
    certified_key(&lab, "user_ca", "bare", "bare-id", &user, &["-O", "clear"]);
    certified_key(
        &lab,
        "user_ca",
        "pty",
        "pty-id",
        &user,
        &["-O", "clear", "-O", "permit-pty"],
    );
    certified_key(
        &lab,
        "user_ca",
        "forwarding",
        "forwarding-id",
        &user,
        &["-O", "clear", "-O", "permit-port-forwarding"],
    );
    certified_key(
        &lab,
        "user_ca",
        "agent",
        "agent-id",
        &user,
        &["-O", "clear", "-O", "permit-agent-forwarding"],
    );
    certified_key(&lab, "user_ca", "full", "full-id", &user, &[]);
    let server = lab.start_sshqd_on(&trusted_ca_line(&lab, "user_ca"), Listeners::Both);

    // Ptys.
    for client in EVERY_CLIENT {
        for key in ["bare", "forwarding", "agent"] {
            let out = client.run(&lab, &server, key, &["-tt"], &["tty"], b"");
            assert_no_pty(&server, client, key, &out);
        }
        for key in ["pty", "full"] {
            let out = client.run(&lab, &server, key, &["-tt"], &["tty"], b"");
            assert!(
                out.status.code() == Some(0) && pts_line(&text(&out.stdout)).is_some(),
                "{}: {key} (permit-pty) got no pty\n{}\n{}",
                client.name,
                show(&out),
                log_tail(&server)
            );
        }
    }
    assert_logged(&server, &["pty refused"]);

    // -W (a direct-tcpip channel) to an echo service.
    let echo = echo_service();
    let target = format!("127.0.0.1:{}", echo.port);
    let payload = b"through-the-certificate\n";
    for client in EVERY_CLIENT {
        for key in ["bare", "pty", "agent"] {
            let out = client.run(&lab, &server, key, &["-W", &target], &[], payload);
            assert!(
                out.status.code() != Some(0) && out.stdout.is_empty(),
                "{}: -W with {key} (no permit-port-forwarding) got through\n{}\n{}",
                client.name,
                show(&out),
                log_tail(&server)
            );
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains("administratively prohibited")
                    || stderr.contains("forwarding is not permitted")
                    || stderr.contains("open failed"),
                "{}: -W with {key}: {}",
                client.name,
                show(&out)
            );
        }
        for key in ["forwarding", "full"] {
            let out = client.run(&lab, &server, key, &["-W", &target], &[], payload);
            assert!(
                out.status.code() == Some(0) && out.stdout == payload,
                "{}: -W with {key} (permit-port-forwarding) failed\n{}\n{}",
                client.name,
                show(&out),
                log_tail(&server)
            );
        }
    }

    // -R with ExitOnForwardFailure: refused without the extension.
    for client in EVERY_CLIENT {
        for (key, allowed) in [("bare", false), ("pty", false), ("forwarding", true)] {
            let spec = format!("{}:127.0.0.1:{}", free_port(), echo.port);
            let out = client.run(
                &lab,
                &server,
                key,
                &["-o", "ExitOnForwardFailure=yes", "-R", &spec],
                &["echo", "remote-forward-ran"],
                b"",
            );
            let ran = text(&out.stdout) == "remote-forward-ran\n";
            if allowed {
                assert!(
                    ran && out.status.code() == Some(0),
                    "{}: -R with {key} (permit-port-forwarding) failed\n{}\n{}",
                    client.name,
                    show(&out),
                    log_tail(&server)
                );
            } else {
                assert!(
                    !ran && out.status.code() == Some(255)
                        && text(&out.stderr).contains("remote port forwarding failed"),
                    "{}: -R with {key} (no permit-port-forwarding)\n{}\n{}",
                    client.name,
                    show(&out),
                    log_tail(&server)
                );
            }
        }
    }

    // -A with a real agent holding some key.
    let agent = Agent::empty(&lab, "cert-agent.sock");
    agent.add(&lab, "user");
    let probe = "echo \"sock=$SSH_AUTH_SOCK\"; ssh-add -l >/dev/null 2>&1; echo \"rc=$?\"";
    for client in EVERY_CLIENT {
        for (key, allowed) in [
            ("bare", false),
            ("pty", false),
            ("agent", true),
            ("full", true),
        ] {
            let args = lab.client_args(
                key,
                "accept-new",
                server.port,
                &client.with(&["-A"]),
                &[probe],
            );
            let out = run_with_input(
                Command::new(client.program)
                    .args(&args)
                    .env("SSH_AUTH_SOCK", &agent.socket),
                b"",
            );
            let stdout = text(&out.stdout);
            let forwarded = !stdout.contains("sock=\n") && stdout.contains("rc=0");
            assert!(
                out.status.code() == Some(0) && stdout.contains("sock=") && forwarded == allowed,
                "{}: -A with {key}: agent forwarded: {forwarded}, expected {allowed}\n{}\n{}",
                client.name,
                show(&out),
                log_tail(&server)
            );
        }
    }
    assert_logged(&server, &["agent forwarding refused"]);
}

/// 6. RevokedKeys: a KRL from `ssh-keygen -k` revoking a certificate by
///    serial, by key ID, by its certified key, by the certificate itself
///    or by its CA; a text list revoking a plain key; an unrelated KRL
///    revokes nothing; a garbage, corrupt or missing file refuses every
///    key (fail closed). The file is read for every login.
#[test]
fn revoked_keys_refuse_what_they_name_and_everything_when_unusable() {
    let lab = Lab::new();
    new_key(&lab, "user_ca");
    let user = lab.user.clone();
    certified_key(
        &lab,
        "user_ca",
        "serial7",
        "serial7-id",
        &user,
        &["-z", "7"],
    );
    certified_key(&lab, "user_ca", "by_id", "revoke-me", &user, &["-z", "8"]);
    certified_key(&lab, "user_ca", "by_key", "by-key-id", &user, &["-z", "9"]);
    certified_key(&lab, "user_ca", "keep", "keep-id", &user, &["-z", "10"]);
    let ca_public = lab.path("user_ca.pub").display().to_string();
    // Start with an unrelated KRL: serial 1000 of this CA.
    let krl = |spec: &str| {
        write(&lab, "krl.spec", spec);
        ssh_keygen(&lab, &["-k", "-f", "revoked", "-s", &ca_public, "krl.spec"]);
    };
    krl("serial: 1000\n");
    let config = format!(
        "{}RevokedKeys {}\n",
        trusted_ca_line(&lab, "user_ca"),
        lab.path("revoked").display()
    );
    let server = lab.start_sshqd_on(&config, Listeners::Both);
    // `user`'s plain key is in authorized_keys (the lab's).
    let everyone = ["serial7", "by_id", "by_key", "keep", "user"];
    let expect = |case: &str, refused: &[&str]| {
        for client in EVERY_CLIENT {
            for key in everyone {
                let out = client.run(&lab, &server, key, &[], &["echo", LOGGED_IN], b"");
                if refused.contains(&key) {
                    assert!(
                        out.status.code() == Some(255)
                            && text(&out.stderr).contains("Permission denied"),
                        "{case}: {}: {key} should be refused\n{}\n{}",
                        client.name,
                        show(&out),
                        log_tail(&server)
                    );
                } else {
                    assert!(
                        out.status.code() == Some(0)
                            && text(&out.stdout) == format!("{LOGGED_IN}\n"),
                        "{case}: {}: {key} should log in\n{}\n{}",
                        client.name,
                        show(&out),
                        log_tail(&server)
                    );
                }
            }
        }
    };
    expect("unrelated KRL", &[]);

    krl("serial: 7\n");
    expect("KRL by serial", &["serial7"]);
    assert_logged(
        &server,
        &[
            "refusing certificate ID serial7-id (serial 7)",
            "revoked (RevokedKeys)",
        ],
    );

    krl("id: revoke-me\n");
    expect("KRL by key ID", &["by_id"]);
    assert_logged(
        &server,
        &[
            "certificate ID revoke-me (serial 8)",
            "revoked (RevokedKeys)",
        ],
    );

    // A KRL of plain keys and certificates (no -s): the certified key of
    // by_key, and keep's certificate itself (by its CA and serial).
    ssh_keygen(
        &lab,
        &["-k", "-f", "revoked", "by_key.pub", "keep-cert.pub"],
    );
    expect(
        "KRL of a certified key and a certificate",
        &["by_key", "keep"],
    );
    assert_logged(
        &server,
        &[
            "certificate ID by-key-id (serial 9)",
            "revoked (RevokedKeys)",
        ],
    );

    // The CA revoked: every certificate it signed; plain keys still in.
    ssh_keygen(&lab, &["-k", "-f", "revoked", "user_ca.pub"]);
    expect("KRL of the CA", &["serial7", "by_id", "by_key", "keep"]);

    // A text list of public keys: the plain key it names.
    write(
        &lab,
        "revoked",
        format!("# revoked\n{}\n", public_line(&lab, "user")),
    );
    expect("text list naming user.pub", &["user"]);
    assert_logged(&server, &["key", "it is revoked (RevokedKeys)"]);
    write(
        &lab,
        "revoked",
        format!("{}\n", public_line(&lab, "stranger")),
    );
    expect("text list naming another key", &[]);

    // Unusable files: everything refused.
    write(&lab, "revoked", "this is not a public key nor a KRL\n");
    expect("garbage text", &everyone);
    assert_logged(&server, &["refusing every key"]);
    let mut corrupt = b"SSHKRL\n\0".to_vec();
    corrupt.extend_from_slice(b"\x00\x00\x00\x01 definitely not a KRL body");
    write(&lab, "revoked", corrupt);
    expect("corrupt KRL", &everyone);
    std::fs::remove_file(lab.path("revoked")).expect("remove the KRL");
    expect("missing file", &everyone);

    // Fixed: all in again.
    krl("serial: 1000\n");
    expect("unrelated KRL again", &[]);
}

/// 7. Where certificates come from on the client: `-i key` with
///    `key-cert.pub` beside it (the tests above), `-o CertificateFile=`
///    (for a file key and for an agent key), and the agent itself
///    (`ssh-add` adds `key-cert.pub`).
#[test]
fn certificates_from_certificate_file_and_from_the_agent() {
    let lab = Lab::new();
    new_key(&lab, "user_ca");
    let user = lab.user.clone();
    let server = lab.start_sshqd_on(&trusted_ca_line(&lab, "user_ca"), Listeners::Both);

    // CertificateFile with an identity file: the certificate is elsewhere.
    certified_key(
        &lab,
        "user_ca",
        "elsewhere",
        "certificate-file-id",
        &user,
        &["-z", "21"],
    );
    let certificate_file = lab.path("elsewhere.certificate");
    std::fs::rename(lab.path("elsewhere-cert.pub"), &certificate_file)
        .expect("move the certificate");
    let option = format!("CertificateFile={}", certificate_file.display());
    for client in EVERY_CLIENT {
        // Without the option, only the bare key, which is not authorized.
        assert_refused(&lab, &server, client, "elsewhere");
        let out = client.run(
            &lab,
            &server,
            "elsewhere",
            &["-o", &option],
            &["echo", LOGGED_IN],
            b"",
        );
        assert!(
            out.status.code() == Some(0) && text(&out.stdout) == format!("{LOGGED_IN}\n"),
            "{}: -o {option}\n{}\n{}",
            client.name,
            show(&out),
            log_tail(&server)
        );
    }
    for transport in ["quic", "tcp"] {
        assert_logged(
            &server,
            &[
                "Accepted certificate ID certificate-file-id (serial 21)",
                &format!("over {transport}"),
            ],
        );
    }

    // The agent holds a plain key; the certificate comes from CertificateFile.
    let agent = Agent::empty(&lab, "cert-agent.sock");
    new_key(&lab, "agent_plain");
    agent.add(&lab, "agent_plain");
    sign_user(
        &lab,
        "user_ca",
        "agent_plain",
        "agent-plain-id",
        &user,
        &["-z", "22"],
    );
    let agent_certificate = lab.path("agent_plain.certificate");
    std::fs::rename(lab.path("agent_plain-cert.pub"), &agent_certificate)
        .expect("move the certificate");
    let option = format!("CertificateFile={}", agent_certificate.display());
    for client in EVERY_CLIENT {
        let out = client.run_with_agent(&lab, &server, &agent, &[]);
        assert_denied(&server, client, "agent_plain (from the agent)", &out);
        let out = client.run_with_agent(&lab, &server, &agent, &["-o", &option]);
        assert!(
            out.status.code() == Some(0) && text(&out.stdout) == format!("{LOGGED_IN}\n"),
            "{}: agent key with -o {option}\n{}\n{}",
            client.name,
            show(&out),
            log_tail(&server)
        );
    }
    for transport in ["quic", "tcp"] {
        assert_logged(
            &server,
            &[
                "Accepted certificate ID agent-plain-id (serial 22)",
                &format!("over {transport}"),
            ],
        );
    }

    // The agent holds the certificate itself (ssh-add adds key-cert.pub).
    certified_key(
        &lab,
        "user_ca",
        "agent_cert",
        "agent-cert-id",
        &user,
        &["-z", "23"],
    );
    let said = agent.add(&lab, "agent_cert");
    assert!(said.contains("Certificate added"), "ssh-add said: {said}");
    for client in EVERY_CLIENT {
        let out = client.run_with_agent(&lab, &server, &agent, &[]);
        assert!(
            out.status.code() == Some(0) && text(&out.stdout) == format!("{LOGGED_IN}\n"),
            "{}: the agent's certificate\n{}\n{}",
            client.name,
            show(&out),
            log_tail(&server)
        );
    }
    for transport in ["quic", "tcp"] {
        assert_logged(
            &server,
            &[
                "Accepted certificate ID agent-cert-id (serial 23)",
                &format!("over {transport}"),
            ],
        );
    }
    drop(agent);
}

/// The known_hosts line trusting the lab CA `ca` for every host.
fn cert_authority_line(lab: &Lab, ca: &str) -> String {
    format!("@cert-authority * {}\n", public_line(lab, ca))
}

/// sshqd with `HostCertificate certificate`, over both transports.
fn sshqd_with_host_certificate(lab: &Lab, certificate: &std::path::Path) -> Server {
    lab.start_sshqd_on(
        &format!("HostCertificate {}\n", certificate.display()),
        Listeners::Both,
    )
}

/// 8. Host certificates from sshqd: a known_hosts holding only
///    `@cert-authority * <CA>` and StrictHostKeyChecking=yes logs in over
///    both transports; a certificate for another name or an expired one is
///    invalid, said so, and the plain key check then fails; a known plain
///    key still lets in; a revoked CA refuses.
#[test]
fn host_certificates_from_sshqd_are_trusted_through_cert_authority() {
    let lab = Lab::new();
    new_key(&lab, "host_ca");
    let good = host_certificate(&lab, "host_ca", "127.0.0.1", &["-z", "5"], "host-good.cert");
    let other = host_certificate(&lab, "host_ca", "otherhost", &[], "host-otherhost.cert");
    let expired = host_certificate(
        &lab,
        "host_ca",
        "127.0.0.1",
        &["-V", "20200101:20200102"],
        "host-expired.cert",
    );
    let server = sshqd_with_host_certificate(&lab, &good);
    let authority = cert_authority_line(&lab, "host_ca");
    write(&lab, "known_hosts", &authority);
    for client in EVERY_CLIENT {
        let out = client.run_strict(&lab, &server, "user", "yes");
        assert!(
            out.status.code() == Some(0) && text(&out.stdout) == format!("{LOGGED_IN}\n"),
            "{}: host certificate through @cert-authority\n{}\n{}",
            client.name,
            show(&out),
            log_tail(&server)
        );
        assert!(
            !text(&out.stderr).contains("Certificate invalid"),
            "{}: {}",
            client.name,
            show(&out)
        );
    }
    assert_eq!(
        std::fs::read_to_string(lab.path("known_hosts")).expect("known_hosts"),
        authority,
        "StrictHostKeyChecking=yes must not change known_hosts"
    );

    // A certificate that does not name the host, or expired: said, and
    // the plain key is not known either.
    for (certificate, reason) in [
        (
            &other,
            "Certificate invalid: name is not a listed principal",
        ),
        (&expired, "Certificate invalid: expired"),
    ] {
        let server = sshqd_with_host_certificate(&lab, certificate);
        write(&lab, "known_hosts", &authority);
        for client in EVERY_CLIENT {
            let out = client.run_strict(&lab, &server, "user", "yes");
            let stderr = text(&out.stderr);
            assert!(
                out.status.code() == Some(255)
                    && stderr.contains(reason)
                    && stderr.contains("Host key verification failed.")
                    && !text(&out.stdout).contains(LOGGED_IN),
                "{}: {} should say {reason:?} and fail\n{}\n{}",
                client.name,
                certificate.display(),
                show(&out),
                log_tail(&server)
            );
        }
        // With the plain key known as well, the fallback lets in.
        let plain = format!(
            "{authority}[127.0.0.1]:{} ssh-ed25519 {}\n",
            server.port,
            lab.public_key_blob("host_ed25519")
        );
        write(&lab, "known_hosts", &plain);
        for client in EVERY_CLIENT {
            let out = client.run_strict(&lab, &server, "user", "yes");
            assert!(
                out.status.code() == Some(0) && text(&out.stdout) == format!("{LOGGED_IN}\n"),
                "{}: {} with the plain key known\n{}\n{}",
                client.name,
                certificate.display(),
                show(&out),
                log_tail(&server)
            );
        }
    }

    // The CA revoked: refused even though it is also a cert-authority.
    write(
        &lab,
        "known_hosts",
        format!("{authority}@revoked * {}\n", public_line(&lab, "host_ca")),
    );
    for client in EVERY_CLIENT {
        let out = client.run_strict(&lab, &server, "user", "yes");
        let stderr = text(&out.stderr);
        assert!(
            out.status.code() == Some(255)
                && stderr.contains("REVOKED HOST KEY DETECTED")
                && stderr.contains("Host key verification failed.")
                && !text(&out.stdout).contains(LOGGED_IN),
            "{}: a revoked host CA should refuse\n{}\n{}",
            client.name,
            show(&out),
            log_tail(&server)
        );
    }
    // Another CA's @cert-authority line vouches for nothing.
    new_key(&lab, "other_host_ca");
    write(
        &lab,
        "known_hosts",
        cert_authority_line(&lab, "other_host_ca"),
    );
    for client in EVERY_CLIENT {
        let out = client.run_strict(&lab, &server, "user", "yes");
        assert!(
            out.status.code() == Some(255)
                && text(&out.stderr).contains("Host key verification failed."),
            "{}: an unrelated host CA should not be trusted\n{}\n{}",
            client.name,
            show(&out),
            log_tail(&server)
        );
    }
}

/// 9. The reference: OpenSSH's sshd with TrustedUserCAKeys and a
///    HostCertificate. sshq over TCP logs in with a user certificate and
///    trusts sshd's host certificate through `@cert-authority` with
///    StrictHostKeyChecking=yes; an expired user certificate and a host
///    certificate for another name fail as with ssh.
#[test]
fn sshq_with_certificates_against_openssh_sshd() {
    let lab = Lab::new();
    new_key(&lab, "user_ca");
    new_key(&lab, "host_ca");
    let user = lab.user.clone();
    certified_key(
        &lab,
        "user_ca",
        "alice",
        "sshd-user-id",
        &user,
        &["-z", "77"],
    );
    certified_key(
        &lab,
        "user_ca",
        "expired",
        "sshd-expired-id",
        &user,
        &["-V", "20200101:20200102"],
    );
    let good = host_certificate(&lab, "host_ca", "127.0.0.1", &[], "sshd-host.cert");
    let other = host_certificate(&lab, "host_ca", "otherhost", &[], "sshd-otherhost.cert");
    let sshd_config = |certificate: &PathBuf| {
        format!(
            "{}HostCertificate {}\n",
            trusted_ca_line(&lab, "user_ca"),
            certificate.display()
        )
    };
    let sshd = lab.start_sshd_with(&sshd_config(&good));
    let authority = cert_authority_line(&lab, "host_ca");
    write(&lab, "known_hosts", &authority);

    // Both clients: sshq is checked against what ssh does.
    for client in [SSHQ_TCP, SSH_TCP] {
        let out = client.run_strict(&lab, &sshd, "alice", "yes");
        assert!(
            out.status.code() == Some(0)
                && text(&out.stdout) == format!("{LOGGED_IN}\n")
                && !text(&out.stderr).contains("Certificate invalid"),
            "{} to sshd: user and host certificates\n{}\n{}",
            client.name,
            show(&out),
            log_tail(&sshd)
        );
        let out = client.run_strict(&lab, &sshd, "expired", "yes");
        assert_denied(&sshd, client, "expired", &out);
    }
    // sshd says it was the certificate.
    assert_logged(
        &sshd,
        &["Accepted publickey for", "ID sshd-user-id (serial 77)"],
    );
    assert_eq!(
        std::fs::read_to_string(lab.path("known_hosts")).expect("known_hosts"),
        authority,
        "StrictHostKeyChecking=yes must not change known_hosts"
    );

    let sshd = lab.start_sshd_with(&sshd_config(&other));
    for client in [SSHQ_TCP, SSH_TCP] {
        let out = client.run_strict(&lab, &sshd, "alice", "yes");
        let stderr = text(&out.stderr);
        assert!(
            out.status.code() == Some(255)
                && stderr.contains("Certificate invalid: name is not a listed principal")
                && stderr.contains("Host key verification failed.")
                && !text(&out.stdout).contains(LOGGED_IN),
            "{} to sshd with a host certificate for another name\n{}\n{}",
            client.name,
            show(&out),
            log_tail(&sshd)
        );
    }
}
