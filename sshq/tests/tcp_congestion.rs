//! `CongestionControl` applies to sshq's own TCP sockets as it does to
//! QUIC (issue 12, item 4): set per socket with `TCP_CONGESTION`, so a
//! comparison needs no route-wide or system-wide setting. Checked on the
//! real sockets with `ss`, from a command run over the connection itself.

mod common;

use common::{show, Lab, Listeners};

/// `ss`'s view of the established TCP sockets matching `filter`.
fn ss_script(filter: &str) -> String {
    format!("ss -tniH state established '{filter}'")
}

#[test]
fn congestion_control_is_set_on_both_ends_of_a_tcp_connection() {
    let lab = Lab::new();
    // The server's setting for its sockets, the client's for its own: reno
    // is built into every Linux kernel, and is not the default (cubic).
    let server = lab.start_sshqd_on("CongestionControl newreno\n", Listeners::Tcp);
    let port = server.port;
    let script = format!(
        "echo server; {}; echo client; {}",
        ss_script(&format!("( sport = :{port} )")),
        ss_script(&format!("( dport = :{port} )")),
    );
    let out = lab.sshq(
        port,
        &["-o", "Transport=tcp", "-o", "CongestionControl=newreno"],
        &[&script],
        b"",
    );
    assert!(out.status.success(), "sshq failed: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let (server_side, client_side) = text
        .split_once("client")
        .unwrap_or_else(|| panic!("unexpected output: {text}"));
    for (side, lines) in [("server", server_side), ("client", client_side)] {
        assert!(
            lines.contains(" reno "),
            "the {side}'s socket does not use reno:\n{text}"
        );
        assert!(
            !lines.contains(" cubic "),
            "the {side}'s socket still uses the default:\n{text}"
        );
    }
}

#[test]
fn without_the_option_the_system_default_stays() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Tcp);
    let port = server.port;
    let out = lab.sshq(
        port,
        &["-o", "Transport=tcp"],
        &[&ss_script(&format!("( sport = :{port} )"))],
        b"",
    );
    assert!(out.status.success(), "sshq failed: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let default = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control")
        .expect("the system's default controller");
    assert!(
        text.contains(&format!(" {} ", default.trim())),
        "expected the system default {default:?}:\n{text}"
    );
}
