//! TCP forwarding between sshq and OpenSSH in both directions, and -L at
//! volume over both of sshq's transports, with real processes and sockets:
//!
//! - OpenSSH's `ssh -L`, `ssh -R 0:...` (the allocated port printed as ssh
//!   prints it) and `ssh -D` (curl with `--socks5-hostname`) through sshqd;
//! - sshq's `-L`, `-R 0:...` and `-D` through OpenSSH's sshd;
//! - sshq -L to sshqd over TCP and over QUIC: 16 MiB byte-identical, then
//!   50 forwarded connections at once.
//!
//! (`ssh -A` through sshqd and `sshq -A` through sshd are in agent.rs;
//! `ssh -R` with a fixed port in remote_forward.rs.)

mod common;

use std::time::Duration;

use common::{
    check_echo, concurrently, curl_through, echo_service, echo_works_within, http_payload,
    http_service, random_bytes, show, start_sshqd_both, wait_until, Background, Endpoint, Lab,
    Server, SSHQ, TRANSPORTS,
};

/// Starts `program -N <extra>` against `server` in the background.
fn background(lab: &Lab, server: &Server, program: &str, extra: &[&str]) -> Background {
    let mut all = vec!["-N"];
    all.extend_from_slice(extra);
    let args = lab.client_args("user", "accept-new", server.port, &all, &[]);
    Background::spawn(program, &args, lab.path(&format!("{program}-forward.log")))
}

/// Fails the test with both logs unless `result` is Ok.
fn expect_ok(result: Result<(), String>, what: &str, client: &Background, server: &Server) {
    if let Err(e) = result {
        panic!(
            "{what}: {e}\nclient log:\n{}\nserver log:\n{}",
            client.log_text(),
            server.log_text()
        );
    }
}

/// `-L port:127.0.0.1:echo`, then `bytes` through it and back.
fn local_forward(lab: &Lab, server: &Server, program: &str, extra: &[&str], bytes: usize) {
    let echo = echo_service();
    let port = common::free_port();
    let spec = format!("{port}:127.0.0.1:{}", echo.port);
    let mut options = extra.to_vec();
    options.extend(["-L", spec.as_str()]);
    let client = background(lab, server, program, &options);
    let to = Endpoint::Port(port);
    let up = echo_works_within(&to, Duration::from_secs(20));
    let what = format!("{program} -L {spec}");
    expect_ok(
        up.then_some(()).ok_or("never up".into()),
        &what,
        &client,
        server,
    );
    expect_ok(
        check_echo(&to, &random_bytes(bytes)),
        &what,
        &client,
        server,
    );
}

/// `-R 0:127.0.0.1:echo`: the client prints the port the server chose, as
/// ssh prints it, and `bytes` go through that port and back.
fn remote_forward_port_0(lab: &Lab, server: &Server, program: &str, extra: &[&str], bytes: usize) {
    let echo = echo_service();
    let spec = format!("0:127.0.0.1:{}", echo.port);
    let mut options = extra.to_vec();
    options.extend(["-R", spec.as_str()]);
    let client = background(lab, server, program, &options);
    let prefix = "Allocated port ";
    let suffix = format!(" for remote forward to 127.0.0.1:{}", echo.port);
    let mut port = None;
    wait_until(Duration::from_secs(20), || {
        port = client.log_text().lines().find_map(|line| {
            line.strip_prefix(prefix)?
                .strip_suffix(&suffix)?
                .parse::<u16>()
                .ok()
        });
        port.is_some()
    });
    let what = format!("{program} -R {spec}");
    let Some(port) = port else {
        panic!(
            "{what}: no \"{prefix}N{suffix}\" line:\n{}",
            client.log_text()
        );
    };
    expect_ok(
        check_echo(&Endpoint::Port(port), &random_bytes(bytes)),
        &what,
        &client,
        server,
    );
}

/// `-D port`, then curl fetching by name through it (`--socks5-hostname`:
/// the server side resolves "localhost").
fn dynamic_forward(lab: &Lab, server: &Server, program: &str, extra: &[&str]) {
    let http = http_service();
    let socks = common::free_port();
    let socks_arg = socks.to_string();
    let mut options = extra.to_vec();
    options.extend(["-D", socks_arg.as_str()]);
    let client = background(lab, server, program, &options);
    let listening = wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", socks)).is_ok()
    });
    assert!(
        listening,
        "{program} -D {socks} does not listen:\n{}",
        client.log_text()
    );
    let url = format!("http://localhost:{}/payload", http.port);
    let out = curl_through("--socks5-hostname", socks, &url);
    assert!(
        out.status.success() && out.stdout == http_payload(),
        "curl --socks5-hostname through {program} -D ({} bytes back): {}\nclient log:\n{}\nserver log:\n{}",
        out.stdout.len(),
        show(&std::process::Output { stdout: Vec::new(), ..out.clone() }),
        client.log_text(),
        server.log_text()
    );
}

#[test]
fn openssh_local_forward_through_sshqd() {
    let lab = Lab::new();
    let server = start_sshqd_both(&lab, "");
    local_forward(&lab, &server, "ssh", &[], 16 << 20);
}

#[test]
fn openssh_remote_forward_port_0_through_sshqd() {
    let lab = Lab::new();
    let server = start_sshqd_both(&lab, "");
    remote_forward_port_0(&lab, &server, "ssh", &[], 4 << 20);
}

#[test]
fn openssh_dynamic_forward_through_sshqd() {
    let lab = Lab::new();
    let server = start_sshqd_both(&lab, "");
    dynamic_forward(&lab, &server, "ssh", &[]);
}

#[test]
fn sshq_local_forward_through_openssh_sshd() {
    let lab = Lab::new();
    let server = lab.start_sshd();
    local_forward(&lab, &server, SSHQ, &["-o", "Transport=tcp"], 16 << 20);
}

#[test]
fn sshq_remote_forward_port_0_through_openssh_sshd() {
    let lab = Lab::new();
    let server = lab.start_sshd();
    remote_forward_port_0(&lab, &server, SSHQ, &["-o", "Transport=tcp"], 4 << 20);
}

#[test]
fn sshq_dynamic_forward_through_openssh_sshd() {
    let lab = Lab::new();
    let server = lab.start_sshd();
    dynamic_forward(&lab, &server, SSHQ, &["-o", "Transport=tcp"]);
}

/// sshq -L to sshqd over `transport`: 16 MiB through and back unchanged,
/// then 50 connections at once, each with its own data.
fn local_forward_at_volume(transport: &str) {
    let lab = Lab::new();
    let server = start_sshqd_both(&lab, "");
    let echo = echo_service();
    let port = common::free_port();
    let spec = format!("{port}:127.0.0.1:{}", echo.port);
    let transport_opt = format!("Transport={transport}");
    let client = background(&lab, &server, SSHQ, &["-o", &transport_opt, "-L", &spec]);
    let to = Endpoint::Port(port);
    let what = format!("sshq -L over {transport}");
    let up = echo_works_within(&to, Duration::from_secs(20));
    expect_ok(
        up.then_some(()).ok_or("never up".into()),
        &what,
        &client,
        &server,
    );
    expect_ok(
        check_echo(&to, &random_bytes(16 << 20)),
        &what,
        &client,
        &server,
    );
    let failures = concurrently(50, move |i| {
        check_echo(
            &Endpoint::Port(port),
            &random_bytes(256 * 1024 + i as usize),
        )
    });
    let failures = match failures.is_empty() {
        true => Ok(()),
        false => Err(format!(
            "{} of 50 failed:\n{}",
            failures.len(),
            failures.join("\n")
        )),
    };
    expect_ok(failures, &format!("{what}, 50 at once"), &client, &server);
}

#[test]
fn local_forward_16_mib_and_50_at_once_over_each_transport() {
    for transport in TRANSPORTS {
        local_forward_at_volume(transport);
    }
}
