//! `Match` blocks in sshqd_config (issue 14, item 3), as sshd applies
//! them: by user, group, client address and local port, over both
//! transports, with real sshq and OpenSSH clients and a real sshqd. The
//! blocks live in an included file, which also checks that a block ends
//! with the file it is in (the lab's own settings follow the Include).

mod common;

use common::{show, text, Lab, Listeners};

const TRANSPORTS: [&str; 2] = ["quic", "tcp"];

/// Starts sshqd with `blocks` in an included file.
fn sshqd_with_blocks(lab: &Lab, blocks: &str) -> common::Server {
    let included = lab.path("match.conf");
    std::fs::write(&included, blocks).expect("match.conf");
    lab.start_sshqd_on(&format!("Include {}", included.display()), Listeners::Both)
}

fn runs(lab: &Lab, port: u16, transport: &str, command: &[&str]) -> std::process::Output {
    lab.sshq(
        port,
        &["-o", &format!("Transport={transport}")],
        command,
        b"",
    )
}

#[test]
fn a_user_block_forces_its_command_and_others_are_left_alone() {
    let lab = Lab::new();
    let server = sshqd_with_blocks(
        &lab,
        &format!(
            "Match User nobody-here\n    ForceCommand echo wrong-block\n\
             Match User {user}\n    ForceCommand echo matched-user\n\
             Match User {user}\n    ForceCommand echo second-block-loses\n",
            user = lab.user
        ),
    );
    for name in TRANSPORTS {
        let out = runs(&lab, server.port, name, &["echo", "asked"]);
        assert_eq!(
            text(&out.stdout),
            "matched-user\n",
            "{name}: {}",
            show(&out)
        );
    }
    let out = lab.ssh(server.port, &[], &["echo", "asked"], b"");
    assert_eq!(text(&out.stdout), "matched-user\n", "{}", show(&out));
}

#[test]
fn address_and_group_blocks_decide_logins() {
    let lab = Lab::new();
    // Keys are refused from 127.0.0.0/8, so nobody gets in ...
    let server = sshqd_with_blocks(
        &lab,
        "Match Address 127.0.0.0/8\n    PubkeyAuthentication no\n",
    );
    for name in TRANSPORTS {
        let out = runs(&lab, server.port, name, &["true"]);
        assert_eq!(out.status.code(), Some(255), "{name}: {}", show(&out));
    }
    // Publickey is not among the methods offered from there: no key is
    // even looked at, so none is accepted.
    assert!(
        !server.log_text().contains("Accepted publickey"),
        "{}",
        server.log_text()
    );
    drop(server);
    // ... while a block for another network changes nothing, and a
    // negated group list applies to everyone not in it.
    let server = sshqd_with_blocks(
        &lab,
        "Match Address 10.0.0.0/8\n    PubkeyAuthentication no\n\
         Match Group !no-such-group,*\n    ForceCommand echo any-group\n",
    );
    for name in TRANSPORTS {
        let out = runs(&lab, server.port, name, &["true"]);
        assert_eq!(text(&out.stdout), "any-group\n", "{name}: {}", show(&out));
    }
}

#[test]
fn a_local_port_block_limits_forwarding_on_that_port_only() {
    let lab = Lab::new();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let target = format!("127.0.0.1:{}", probe.local_addr().expect("address").port());
    std::thread::spawn(move || {
        use std::io::Write;
        for stream in probe.incoming().take(2) {
            let _ = stream.and_then(|mut s| s.write_all(b"open\n"));
        }
    });
    let forward = |port: u16, name: &str| {
        lab.sshq(
            port,
            &["-o", &format!("Transport={name}"), "-W", &target],
            &[],
            b"",
        )
    };
    // A block for another port: -W works.
    let other = sshqd_with_blocks(&lab, "Match LocalPort 1\n    AllowTcpForwarding no\n");
    for name in TRANSPORTS {
        let out = forward(other.port, name);
        assert_eq!(text(&out.stdout), "open\n", "{name}: {}", show(&out));
    }
    drop(other);
    // A block for the port sshqd listens on: refused there.
    let included = lab.path("port-match.conf");
    let server = lab.start_sshqd_config(
        |port| {
            let block = format!("Match LocalPort {port}\n    AllowTcpForwarding no\n");
            std::fs::write(&included, block).expect("port-match.conf");
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {key}\nAuthorizedKeysFile {ak}\n\
                 Include {included}\n",
                key = lab.path("host_ed25519").display(),
                ak = lab.path("authorized_keys").display(),
                included = included.display()
            )
        },
        Listeners::Both,
    );
    for name in TRANSPORTS {
        let out = forward(server.port, name);
        assert_ne!(out.status.code(), Some(0), "{name}: {}", show(&out));
        assert!(
            text(&out.stderr).contains("administratively prohibited")
                || text(&out.stderr).contains("forwarding is not permitted"),
            "{name}: {}",
            show(&out)
        );
        // Logins and sessions are unaffected.
        let out = runs(&lab, server.port, name, &["echo", "in"]);
        assert_eq!(text(&out.stdout), "in\n", "{name}: {}", show(&out));
    }
}

#[test]
fn bad_blocks_stop_sshqd_with_sshds_words() {
    let lab = Lab::new();
    for (block, message) in [
        (
            "Match User x\n    Port 2222\n",
            "Directive 'Port' is not allowed within a Match block",
        ),
        ("Match Version 9\n", "Unsupported Match attribute Version"),
        ("Match User\n", "Missing Match criteria for User"),
        (
            "Match LocalPort 2222\n    PubkeyAuthentication no\n",
            "cannot be set in a Match LocalPort or LocalAddress block",
        ),
        (
            "Match User x\n    LogLevel DEBUG\n",
            "not supported inside Match",
        ),
    ] {
        let config = lab.write_sshqd_config(2, &[lab.path("host_ed25519")], block);
        let out = lab.sshqd_refusing(&config);
        assert!(
            text(&out.stderr).contains(message),
            "{block}: {}",
            show(&out)
        );
    }
}
