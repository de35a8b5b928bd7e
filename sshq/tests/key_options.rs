//! authorized_keys options (issue 14, item 3), honoured by sshqd over both
//! transports as sshd honours them: `command=` replaces what the client
//! asks for (with SSH_ORIGINAL_COMMAND), `no-pty` and `restrict` refuse a
//! pty and forwarding, `from=` and `expiry-time=` refuse the key, and a
//! line with an option sshqd does not know lets nothing in. Real sshq and
//! OpenSSH clients, a real sshqd.

mod common;

use common::{show, text, Lab, Listeners};

const TRANSPORTS: [&str; 2] = ["quic", "tcp"];

/// Puts `options` in front of the lab key's authorized_keys line.
fn authorize_with(lab: &Lab, options: &str) {
    let key = std::fs::read_to_string(lab.path("user.pub")).expect("user.pub");
    let line = match options {
        "" => key,
        options => format!("{options} {key}"),
    };
    std::fs::write(lab.path("authorized_keys"), line).expect("authorized_keys");
}

fn transport(name: &str) -> String {
    format!("Transport={name}")
}

#[test]
fn a_forced_command_replaces_the_clients_over_both_transports() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Both);
    authorize_with(
        &lab,
        r#"command="echo forced-$((6*7)) \"[$SSH_ORIGINAL_COMMAND]\"""#,
    );
    for name in TRANSPORTS {
        let out = lab.sshq(
            server.port,
            &["-o", &transport(name)],
            &["echo", "asked"],
            b"",
        );
        assert_eq!(
            text(&out.stdout),
            "forced-42 [echo asked]\n",
            "{name}: {}",
            show(&out)
        );
        assert_eq!(out.status.code(), Some(0));
    }
    // OpenSSH's client gets the same.
    let out = lab.ssh(server.port, &[], &["echo", "asked"], b"");
    assert_eq!(
        text(&out.stdout),
        "forced-42 [echo asked]\n",
        "{}",
        show(&out)
    );
    // A shell request runs it too, with nothing in SSH_ORIGINAL_COMMAND.
    let out = lab.sshq(server.port, &["-o", &transport("quic"), "-T"], &[], b"");
    assert_eq!(text(&out.stdout), "forced-42 []\n", "{}", show(&out));
}

#[test]
fn no_pty_and_restrict_refuse_what_they_name() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Both);
    authorize_with(&lab, "no-pty");
    for name in TRANSPORTS {
        let out = lab.sshq(server.port, &["-o", &transport(name), "-tt"], &["tty"], b"");
        assert!(
            text(&out.stdout).contains("not a tty"),
            "{name}: a pty was given: {}",
            show(&out)
        );
    }
    assert!(server
        .log_text()
        .contains("pty refused: the key's options say no-pty"));

    // restrict: no forwarding (here -W, a direct-tcpip channel), no pty;
    // `restrict,pty` gives the pty back and nothing else.
    authorize_with(&lab, "restrict");
    let target = format!("127.0.0.1:{}", server.port);
    for name in TRANSPORTS {
        let out = lab.sshq(
            server.port,
            &["-o", &transport(name), "-W", &target],
            &[],
            b"",
        );
        assert_ne!(out.status.code(), Some(0), "{name}: {}", show(&out));
        assert!(
            text(&out.stderr).contains("administratively prohibited")
                || text(&out.stderr).contains("forwarding is not permitted"),
            "{name}: {}",
            show(&out)
        );
    }
    authorize_with(&lab, "restrict,pty");
    let out = lab.sshq(
        server.port,
        &["-o", &transport("tcp"), "-tt"],
        &["tty"],
        b"",
    );
    assert!(text(&out.stdout).contains("/dev/pts/"), "{}", show(&out));
    let out = lab.sshq(
        server.port,
        &["-o", &transport("tcp"), "-W", &target],
        &[],
        b"",
    );
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn permitopen_limits_where_forwards_go() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Both);
    // A listener the forward may reach, and the server's own port, which
    // it may not.
    let allowed = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let allowed_port = allowed.local_addr().expect("its address").port();
    let answer = std::thread::spawn(move || {
        use std::io::Write;
        for stream in allowed.incoming().take(2) {
            let _ = stream.and_then(|mut s| s.write_all(b"reached\n"));
        }
    });
    authorize_with(
        &lab,
        &format!(r#"permitopen="127.0.0.1:{allowed_port}",environment="IGNORED=1""#),
    );
    for name in TRANSPORTS {
        let target = format!("127.0.0.1:{allowed_port}");
        let out = lab.sshq(
            server.port,
            &["-o", &transport(name), "-W", &target],
            &[],
            b"",
        );
        assert_eq!(text(&out.stdout), "reached\n", "{name}: {}", show(&out));
        let refused = format!("127.0.0.1:{}", server.port);
        let out = lab.sshq(
            server.port,
            &["-o", &transport(name), "-W", &refused],
            &[],
            b"",
        );
        assert_ne!(out.status.code(), Some(0), "{name}: {}", show(&out));
        assert!(
            text(&out.stderr).contains("administratively prohibited")
                || text(&out.stderr).contains("forwarding is not permitted"),
            "{name}: {}",
            show(&out)
        );
    }
    // environment= is read, and not applied (PermitUserEnvironment no).
    let out = lab.sshq(
        server.port,
        &["-o", &transport("quic")],
        &["echo", "[$IGNORED]"],
        b"",
    );
    assert_eq!(text(&out.stdout), "[]\n", "{}", show(&out));
    let _ = answer.join();
}

#[test]
fn force_command_wins_over_the_keys_command() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on(
        "ForceCommand echo from-config \"[$SSH_ORIGINAL_COMMAND]\"",
        Listeners::Both,
    );
    authorize_with(&lab, r#"command="echo from-key""#);
    for name in TRANSPORTS {
        let out = lab.sshq(
            server.port,
            &["-o", &transport(name)],
            &["echo", "asked"],
            b"",
        );
        assert_eq!(
            text(&out.stdout),
            "from-config [echo asked]\n",
            "{name}: {}",
            show(&out)
        );
    }
    let out = lab.ssh(server.port, &[], &["uptime"], b"");
    assert_eq!(
        text(&out.stdout),
        "from-config [uptime]\n",
        "{}",
        show(&out)
    );
}

#[test]
fn from_and_expiry_time_refuse_the_key() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Both);
    let logs_in = |name: &str| {
        let out = lab.sshq(server.port, &["-o", &transport(name)], &["echo", "in"], b"");
        text(&out.stdout) == "in\n"
    };
    for (options, allowed) in [
        (r#"from="10.0.0.0/8""#, false),
        (r#"from="127.0.0.0/8,!127.0.0.1""#, false),
        (r#"from="10.*,127.0.0.1""#, true),
        (r#"expiry-time="20200101""#, false),
        (r#"expiry-time="29991231Z""#, true),
    ] {
        authorize_with(&lab, options);
        for name in TRANSPORTS {
            assert_eq!(
                logs_in(name),
                allowed,
                "{options} over {name}\n{}",
                server.log_text()
            );
        }
    }
    assert!(server.log_text().contains("not a permitted address"));
    assert!(server.log_text().contains("its expiry-time has passed"));
}

#[test]
fn a_line_with_an_option_sshqd_does_not_know_lets_nothing_in() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Both);
    authorize_with(&lab, "frobnicate");
    for name in TRANSPORTS {
        let out = lab.sshq(server.port, &["-o", &transport(name)], &["true"], b"");
        assert_eq!(
            out.status.code(),
            Some(255),
            "frobnicate over {name}: {}",
            show(&out)
        );
    }
    let log = server.log_text();
    assert!(
        log.contains("bad key options: unknown key option frobnicate"),
        "{log}"
    );
    // verify-required is known: it asks a security key for user
    // verification and, as in sshd, does nothing for other keys
    // (security_keys.rs tests it with security keys).
    authorize_with(&lab, "verify-required");
    for name in TRANSPORTS {
        let out = lab.sshq(server.port, &["-o", &transport(name)], &["true"], b"");
        assert_eq!(
            out.status.code(),
            Some(0),
            "verify-required over {name}: {}",
            show(&out)
        );
    }
}

/// PermitRootLogin forced-commands-only: root gets in only with a key
/// whose line forces a command.
#[test]
fn forced_commands_only_lets_root_in_with_a_forced_command() {
    if !common::needs_root("logs in as root") {
        return;
    }
    let lab = Lab::new();
    let server = lab.start_sshqd_on("PermitRootLogin forced-commands-only", Listeners::Both);
    authorize_with(&lab, "");
    let out = lab.sshq(
        server.port,
        &["-o", &transport("tcp")],
        &["echo", "in"],
        b"",
    );
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    authorize_with(&lab, r#"command="echo forced""#);
    for name in TRANSPORTS {
        let out = lab.sshq(server.port, &["-o", &transport(name)], &["echo", "in"], b"");
        assert_eq!(text(&out.stdout), "forced\n", "{name}: {}", show(&out));
    }
}

/// RSA keys sign with SHA-2 only, over TCP as over QUIC (draft §7.5):
/// OpenSSH's ssh made to sign with SHA-1 `ssh-rsa` is refused, the same
/// key with `rsa-sha2-512` is let in.
#[test]
fn sha1_rsa_signatures_are_refused_over_tcp() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Both);
    lab.keygen("rsa_user", "rsa", "rsa_user");
    let key = std::fs::read_to_string(lab.path("rsa_user.pub")).expect("rsa_user.pub");
    std::fs::write(lab.path("authorized_keys"), key).expect("authorized_keys");
    let rsa = lab.path("rsa_user").display().to_string();
    let with = |algorithm: &str| {
        let accepted = format!("PubkeyAcceptedAlgorithms={algorithm}");
        lab.ssh(
            server.port,
            &["-i", &rsa, "-o", &accepted],
            &["echo", "in"],
            b"",
        )
    };
    let out = with("ssh-rsa");
    assert_eq!(out.status.code(), Some(255), "{}", show(&out));
    assert!(server
        .log_text()
        .contains("ssh-rsa (SHA-1) signatures are not accepted"));
    let out = with("rsa-sha2-512");
    assert_eq!(text(&out.stdout), "in\n", "{}", show(&out));
}
