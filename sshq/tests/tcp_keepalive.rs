//! `TCPKeepAlive` (yes by default, as in ssh and sshd): SO_KEEPALIVE on
//! both ends of a TCP connection, so that the kernel ends a connection
//! whose peer vanished (and sshqd starts a reattachable session's hold
//! time) even when nothing is being sent. Checked on the real sockets with
//! `ss -o`, which shows a `keepalive` timer for them, from a command run
//! over the connection itself.

mod common;

use common::{show, Lab, Listeners};

/// The lines `ss -tnoH` prints for the server's and the client's side of
/// connections to `port`, as seen from the remote command.
fn both_sides(lab: &Lab, port: u16, options: &[&str]) -> (String, String) {
    // Read while the connection is idle: `ss` shows one timer per socket,
    // and a retransmission timer (data in flight) hides the keepalive one.
    let script = format!(
        "sleep 0.3; s=$(ss -tnoH state established '( sport = :{port} )'); \
         c=$(ss -tnoH state established '( dport = :{port} )'); \
         echo server; echo \"$s\"; echo client; echo \"$c\""
    );
    let mut args = vec!["-o", "Transport=tcp"];
    args.extend_from_slice(options);
    let out = lab.sshq(port, &args, &[&script], b"");
    assert!(out.status.success(), "sshq failed: {}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (server, client) = text
        .split_once("client")
        .unwrap_or_else(|| panic!("unexpected output: {text}"));
    assert!(
        server.contains(&format!(":{port}")),
        "no server socket:\n{text}"
    );
    assert!(
        client.contains(&format!(":{port}")),
        "no client socket:\n{text}"
    );
    (server.to_string(), client.to_string())
}

#[test]
fn keepalive_is_on_at_both_ends_by_default() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Tcp);
    // A packet in flight at the moment of reading hides the timer: a few
    // tries, each on a fresh connection.
    let mut seen = Vec::new();
    for _ in 0..5 {
        let (server_side, client_side) = both_sides(&lab, server.port, &[]);
        if server_side.contains("keepalive") && client_side.contains("keepalive") {
            return;
        }
        seen.push(format!("{server_side}\n{client_side}"));
    }
    panic!(
        "no keepalive timer on both sides:\n{}",
        seen.join("\n---\n")
    );
}

#[test]
fn tcp_keepalive_no_turns_it_off_on_each_side() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("TCPKeepAlive no\n", Listeners::Tcp);
    let (server_side, client_side) = both_sides(&lab, server.port, &["-o", "TCPKeepAlive=no"]);
    assert!(!server_side.contains("keepalive"), "server:\n{server_side}");
    assert!(!client_side.contains("keepalive"), "client:\n{client_side}");
}
