//! sshqd's forwarding policy and sshq's reports of refused forwards, with
//! real processes and sockets, each over TCP and over QUIC: the
//! AllowTcpForwarding matrix (yes, no, local, remote), PermitOpen,
//! PermitListen and GatewayPorts. A refused forward is reported with its
//! reason (sshq's stderr, sshqd's log) and the command carries on. Then
//! ExitOnForwardFailure, compared line by line with OpenSSH's ssh against
//! OpenSSH's sshd.

mod common;

use std::process::Output;

use common::{
    check_echo, echo_service, ready_then_still_here, run_forwarding_client, show, start_sshqd_both,
    text, Endpoint, Lab, Server, SSHQ, TRANSPORTS,
};

/// Runs `sshq -o Transport=transport <forwards> ready_then_still_here`
/// against `server`; `probe` runs once every forward is set up.
fn sshq_with_forwards<T>(
    lab: &Lab,
    server: &Server,
    transport: &str,
    forwards: &[String],
    probe: impl FnOnce() -> T,
) -> (Output, T) {
    let transport_opt = format!("Transport={transport}");
    let mut extra = vec!["-o", transport_opt.as_str()];
    extra.extend(forwards.iter().map(String::as_str));
    let args = lab.client_args(
        "user",
        "accept-new",
        server.port,
        &extra,
        &[&ready_then_still_here(1)],
    );
    run_forwarding_client(SSHQ, &args, lab.path("sshq.log"), probe)
}

/// The command ran to its end: the session carried on.
fn assert_carried_on(out: &Output, context: &str) {
    assert_eq!(
        text(&out.stdout).trim(),
        "still-here",
        "{context}\n{}",
        show(out)
    );
    assert_eq!(out.status.code(), Some(0), "{context}\n{}", show(out));
}

fn refused_remote_warning(port: u16) -> String {
    format!("Warning: remote port forwarding failed for listen port {port}")
}

const REFUSED_CHANNEL: &str = "channel: open failed: administratively prohibited";

/// AllowTcpForwarding yes, no, local and remote: -L works exactly when
/// local forwarding is allowed, -R when remote is; each refusal is reported
/// and logged with its reason, and the command runs either way.
fn allow_tcp_forwarding_matrix(transport: &str) {
    for (setting, local_ok, remote_ok) in [
        ("yes", true, true),
        ("no", false, false),
        ("local", true, false),
        ("remote", false, true),
    ] {
        let lab = Lab::new();
        let server = start_sshqd_both(&lab, &format!("AllowTcpForwarding {setting}"));
        let echo = echo_service();
        let (lport, rport) = (common::free_port(), common::free_port());
        let forwards = [
            "-L".to_string(),
            format!("{lport}:127.0.0.1:{}", echo.port),
            "-R".to_string(),
            format!("{rport}:127.0.0.1:{}", echo.port),
        ];
        let (out, (local, remote)) =
            sshq_with_forwards(&lab, &server, transport, &forwards, || {
                (
                    check_echo(&Endpoint::Port(lport), b"through -L"),
                    check_echo(&Endpoint::Port(rport), b"through -R"),
                )
            });
        let context = format!(
            "AllowTcpForwarding {setting} over {transport}: -L {local:?}, -R {remote:?}\nserver log:\n{}",
            server.log_text()
        );
        assert_eq!(
            (local.is_ok(), remote.is_ok()),
            (local_ok, remote_ok),
            "{context}"
        );
        let stderr = text(&out.stderr);
        assert_eq!(
            stderr.contains(REFUSED_CHANNEL),
            !local_ok,
            "{context}\n{stderr}"
        );
        assert_eq!(
            stderr.contains(&refused_remote_warning(rport)),
            !remote_ok,
            "{context}\n{stderr}"
        );
        let log = server.log_text();
        if !local_ok {
            assert!(
                log.contains("direct-tcpip") && log.contains("not permitted"),
                "{context}"
            );
        }
        if !remote_ok {
            assert!(
                log.contains("AllowTcpForwarding forbids remote forwarding"),
                "{context}"
            );
        }
        assert_carried_on(&out, &context);
    }
}

#[test]
fn allow_tcp_forwarding_matrix_over_tcp() {
    allow_tcp_forwarding_matrix("tcp");
}

#[test]
fn allow_tcp_forwarding_matrix_over_quic() {
    allow_tcp_forwarding_matrix("quic");
}

/// PermitOpen lets -L reach one target and not another; PermitListen lets
/// -R listen on one port and not another.
fn permit_open_and_listen(transport: &str) {
    let lab = Lab::new();
    let echo = echo_service();
    let other = echo_service();
    let (allowed_listen, refused_listen) = (common::free_port(), common::free_port());
    let server = start_sshqd_both(
        &lab,
        &format!(
            "PermitOpen 127.0.0.1:{}\nPermitListen {allowed_listen}",
            echo.port
        ),
    );
    let (l_allowed, l_refused) = (common::free_port(), common::free_port());
    let forwards = [
        "-L".to_string(),
        format!("{l_allowed}:127.0.0.1:{}", echo.port),
        "-L".to_string(),
        format!("{l_refused}:127.0.0.1:{}", other.port),
        "-R".to_string(),
        format!("{allowed_listen}:127.0.0.1:{}", echo.port),
        "-R".to_string(),
        format!("{refused_listen}:127.0.0.1:{}", echo.port),
    ];
    let (out, results) = sshq_with_forwards(&lab, &server, transport, &forwards, || {
        [l_allowed, l_refused, allowed_listen, refused_listen]
            .map(|port| check_echo(&Endpoint::Port(port), b"policy").is_ok())
    });
    let context = format!(
        "over {transport}\n{}\nserver log:\n{}",
        show(&out),
        server.log_text()
    );
    assert_eq!(results, [true, false, true, false], "{context}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains(REFUSED_CHANNEL), "{context}");
    assert!(
        stderr.contains(&refused_remote_warning(refused_listen)),
        "{context}"
    );
    assert!(
        !stderr.contains(&refused_remote_warning(allowed_listen)),
        "{context}"
    );
    assert!(
        server.log_text().contains("not permitted by PermitListen"),
        "{context}"
    );
    assert_carried_on(&out, &context);
}

#[test]
fn permit_open_and_permit_listen_over_tcp() {
    permit_open_and_listen("tcp");
}

#[test]
fn permit_open_and_permit_listen_over_quic() {
    permit_open_and_listen("quic");
}

/// The local address a TCP listener on `port` is bound to, from `ss`.
fn listening_address(port: u16) -> String {
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2)");
    text(&out.stdout)
        .split_whitespace()
        .find(|field| field.ends_with(&format!(":{port}")))
        .unwrap_or_default()
        .to_string()
}

/// GatewayPorts: `no` keeps `-R *:port` on loopback; `clientspecified`
/// honours the `*`; a client asking for a specific loopback address with
/// `clientspecified` gets just that.
fn gateway_ports(transport: &str) {
    for (setting, asked, listens) in [
        ("no", "*", "127.0.0.1"),
        ("clientspecified", "*", "0.0.0.0"),
        ("clientspecified", "127.0.0.1", "127.0.0.1"),
    ] {
        let lab = Lab::new();
        let server = start_sshqd_both(&lab, &format!("GatewayPorts {setting}"));
        let echo = echo_service();
        let port = common::free_port();
        let forwards = [
            "-R".to_string(),
            format!("{asked}:{port}:127.0.0.1:{}", echo.port),
        ];
        let (out, (address, works)) =
            sshq_with_forwards(&lab, &server, transport, &forwards, || {
                (
                    listening_address(port),
                    check_echo(&Endpoint::Port(port), b"gw").is_ok(),
                )
            });
        let context = format!(
            "GatewayPorts {setting}, -R {asked}:{port} over {transport}\n{}\nserver log:\n{}",
            show(&out),
            server.log_text()
        );
        assert_eq!(address, format!("{listens}:{port}"), "{context}");
        assert!(works, "{context}");
        assert_carried_on(&out, &context);
    }
}

#[test]
fn gateway_ports_over_tcp() {
    gateway_ports("tcp");
}

#[test]
fn gateway_ports_over_quic() {
    gateway_ports("quic");
}

// --- ExitOnForwardFailure, against OpenSSH ----------------------------------

/// stderr without the lines that differ for reasons other than forwarding
/// (the known_hosts notice).
fn forwarding_lines(out: &Output) -> Vec<String> {
    text(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("Warning: Permanently added"))
        .map(str::to_string)
        .collect()
}

/// A listening socket on 127.0.0.1 that makes a -L bind fail.
fn busy_port() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    (listener, port)
}

/// ssh and sshq, against OpenSSH's sshd with AllowTcpForwarding local,
/// with a -L whose port is taken and a -R the server refuses, with and
/// without ExitOnForwardFailure (and with -q): the same exit status, the
/// same stdout and the same stderr lines.
#[test]
fn exit_on_forward_failure_matches_openssh() {
    let lab = Lab::new();
    let server = lab.start_sshd_with("AllowTcpForwarding local");
    let (_busy, busy) = busy_port();
    let rport = common::free_port();
    let local_spec = format!("127.0.0.1:{busy}:127.0.0.1:22");
    let remote_spec = format!("{rport}:127.0.0.1:22");
    let cases: [&[&str]; 6] = [
        &["-L", &local_spec],
        &["-o", "ExitOnForwardFailure=yes", "-L", &local_spec],
        &["-R", &remote_spec],
        &["-o", "ExitOnForwardFailure=yes", "-R", &remote_spec],
        &["-q", "-o", "ExitOnForwardFailure=yes", "-L", &local_spec],
        &["-q", "-R", &remote_spec],
    ];
    for case in cases {
        let ssh = lab.ssh(server.port, case, &["sleep 0.3; echo ran"], b"");
        let mut sshq_args = vec!["-o", "Transport=tcp"];
        sshq_args.extend_from_slice(case);
        let sshq = lab.sshq(server.port, &sshq_args, &["sleep 0.3; echo ran"], b"");
        let context = format!("{case:?}\nssh: {}\nsshq: {}", show(&ssh), show(&sshq));
        assert_eq!(sshq.status.code(), ssh.status.code(), "{context}");
        assert_eq!(sshq.stdout, ssh.stdout, "{context}");
        assert_eq!(forwarding_lines(&sshq), forwarding_lines(&ssh), "{context}");
    }
}

/// ExitOnForwardFailure against sshqd over each transport: a refused -R
/// ends sshq with ssh's "Error:" line and status 255 before the command
/// runs; without it, a warning and the command runs.
#[test]
fn exit_on_forward_failure_against_sshqd() {
    let lab = Lab::new();
    let server = start_sshqd_both(&lab, "AllowTcpForwarding local");
    let rport = common::free_port();
    let spec = format!("{rport}:127.0.0.1:22");
    for transport in TRANSPORTS {
        let transport_opt = format!("Transport={transport}");
        let exits = lab.sshq(
            server.port,
            &[
                "-o",
                &transport_opt,
                "-o",
                "ExitOnForwardFailure=yes",
                "-R",
                &spec,
            ],
            &["echo", "ran"],
            b"",
        );
        let context = format!("over {transport}: {}", show(&exits));
        assert_eq!(exits.status.code(), Some(255), "{context}");
        assert!(exits.stdout.is_empty(), "{context}");
        assert!(
            text(&exits.stderr).contains(&format!(
                "Error: remote port forwarding failed for listen port {rport}"
            )),
            "{context}"
        );
        let carries_on = lab.sshq(
            server.port,
            &["-o", &transport_opt, "-R", &spec],
            &["echo", "ran"],
            b"",
        );
        let context = format!("over {transport}: {}", show(&carries_on));
        assert_eq!(text(&carries_on.stdout).trim(), "ran", "{context}");
        assert!(
            text(&carries_on.stderr).contains(&refused_remote_warning(rport)),
            "{context}"
        );
    }
}
