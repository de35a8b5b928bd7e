//! The head-of-line study's one-stream baseline (`OneStreamBaseline`, see
//! `sshq_quic::one_stream`) with the real sshq and sshqd on loopback: a
//! command, a pty and many -L connections all on one QUIC stream; and an
//! ordinary client turned away with a message that names the option.

mod common;

use common::setup::Setup;
use common::{
    check_echo, concurrently, echo_service, echo_through, random_bytes, text, Endpoint, Listeners,
};

const BASELINE: &str = "Transports quic\nOneStreamBaseline yes\n";
const ONE_STREAM: [&str; 2] = ["-o", "OneStreamBaseline=yes"];

#[test]
fn a_command_runs_with_its_output_and_exit_status() {
    let s = Setup::quic_with(BASELINE, Listeners::Quic);
    let out = s.run(
        &ONE_STREAM,
        &["cat; echo done >&2; exit 7"],
        b"through one stream\n",
    );
    assert_eq!(out.status.code(), Some(7), "{}", s.show(&out));
    assert_eq!(
        text(&out.stdout),
        "through one stream\n",
        "{}",
        s.show(&out)
    );
    assert!(text(&out.stderr).contains("done"), "{}", s.show(&out));
}

#[test]
fn forwarded_connections_share_the_stream_intact() {
    let s = Setup::quic_with(BASELINE, Listeners::Quic);
    let target = echo_service();
    let (client, local) = s.local_forward(&ONE_STREAM, target.port);
    let to = Endpoint::Port(local);
    // Twenty connections at once, one of them bulk: their bytes are
    // interleaved on the carrier and must come apart intact.
    let failures = concurrently(20, move |i| {
        let len = if i == 0 { 4 << 20 } else { 1000 + i as usize };
        check_echo(&to, &random_bytes(len))
    });
    s.assert_none_failed(&failures, 20, &client);
    assert_eq!(s.logins_over("quic"), 1, "{}", s.server_log());
}

#[test]
fn a_half_closed_forward_still_gets_its_answer() {
    let s = Setup::quic_with(BASELINE, Listeners::Quic);
    let target = echo_service();
    let (client, local) = s.local_forward(&ONE_STREAM, target.port);
    // Our EOF (echo_through half-closes) travels as a virtual stream's
    // FIN; the echo's comes back.
    let back = echo_through(&Endpoint::Port(local), b"ping").expect("echo to EOF");
    assert_eq!(back, b"ping", "{}", client.log_text());
}

#[test]
fn an_ordinary_client_is_told_what_the_server_runs() {
    let s = Setup::quic_with(BASELINE, Listeners::Quic);
    let out = s.run(&[], &["echo never"], b"");
    assert_ne!(out.status.code(), Some(0), "{}", s.show(&out));
    assert!(!text(&out.stdout).contains("never"), "{}", s.show(&out));
    assert!(
        s.server_log().contains("OneStreamBaseline"),
        "the server says why at startup: {}",
        s.server_log()
    );
}
