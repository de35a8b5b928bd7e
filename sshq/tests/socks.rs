//! Dynamic forwarding (-D) end to end, with real processes and sockets:
//! `sshq -N -D port` against sshqd over TCP and over QUIC, curl fetching a
//! payload from a local HTTP responder through the SOCKS proxy (SOCKS5
//! with names resolved by the server, SOCKS5 with an IP, SOCKS4 and
//! SOCKS4a), and a refused target answered with a SOCKS failure while the
//! proxy keeps serving.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::time::Duration;

use common::{
    free_port, http_service, show, text, wait_until, Background, Lab, Listeners, Server, SSHQ,
};

const IO_TIMEOUT: Duration = Duration::from_secs(60);

struct Setup {
    server: Server,
    lab: Lab,
}

impl Setup {
    /// sshqd serving QUIC and TCP on the same port.
    fn new() -> Setup {
        let lab = Lab::new();
        let server = lab.start_sshqd_on("Transports quic,tcp", Listeners::Both);
        Setup { server, lab }
    }

    /// `sshq -N <extra>` in the background.
    fn background(&self, extra: &[&str], log: &str) -> Background {
        let mut all = vec!["-N"];
        all.extend_from_slice(extra);
        let args = self
            .lab
            .client_args("user", "accept-new", self.server.port, &all, &[]);
        Background::spawn(SSHQ, &args, self.lab.path(log))
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn payload() -> Vec<u8> {
    common::http_payload()
}

fn curl(proxy_option: &str, socks: u16, url: &str) -> Output {
    common::curl_through(proxy_option, socks, url)
}

/// Asserts a fetch through the proxy returns the whole payload.
fn assert_fetch(proxy_option: &str, socks: u16, url: &str, client: &Background) {
    let out = curl(proxy_option, socks, url);
    assert!(
        out.status.success() && out.stdout == payload(),
        "curl {proxy_option} {url} through port {socks} failed ({} bytes back): {}\nclient log:\n{}",
        out.stdout.len(),
        show(&Output {
            stdout: Vec::new(),
            ..out.clone()
        }),
        client.log_text()
    );
}

/// Sends a raw SOCKS request and returns the first `reply_len` bytes of the
/// answer (after the SOCKS5 method reply, if `socks5`).
fn raw_request(socks: u16, request: &[u8], socks5: bool, reply_len: usize) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", socks)).expect("connect to the proxy");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    if socks5 {
        stream.write_all(&[5, 1, 0]).expect("greeting");
        let mut method = [0u8; 2];
        stream.read_exact(&mut method).expect("method reply");
        assert_eq!(method, [5, 0], "no-auth method not chosen");
    }
    stream.write_all(request).expect("request");
    let mut reply = vec![0u8; reply_len];
    stream.read_exact(&mut reply).expect("SOCKS reply");
    // After a failure the proxy closes the connection.
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "data after a failure reply: {rest:?}");
    reply
}

/// Runs the whole -D scenario over one transport.
fn dynamic_forward_over(transport: &str) {
    let s = Setup::new();
    let http = http_service();
    let refused = closed_port();
    let socks = free_port();
    let transport_opt = format!("Transport={transport}");
    let socks_arg = socks.to_string();
    let mut client = s.background(
        &["-o", &transport_opt, "-D", &socks_arg],
        &format!("sshq-{transport}.log"),
    );
    let by_name = format!("http://localhost:{}/by-name", http.port);
    let by_ip = format!("http://127.0.0.1:{}/by-ip", http.port);

    // Ready once a fetch succeeds.
    let up = wait_until(Duration::from_secs(20), || {
        let out = curl("--socks5-hostname", socks, &by_name);
        out.status.success() && out.stdout == payload()
    });
    assert!(
        up && client.alive(),
        "no SOCKS proxy on port {socks} over {transport}; client log:\n{}\nserver log:\n{}",
        client.log_text(),
        s.server.log_text()
    );

    assert_fetch("--socks5-hostname", socks, &by_name, &client);
    assert_fetch("--socks5", socks, &by_ip, &client);
    assert_fetch("--socks4a", socks, &by_name, &client);
    assert_fetch("--socks4", socks, &by_ip, &client);

    // A refused target: SOCKS failure replies, through curl and raw.
    let out = curl(
        "--socks5-hostname",
        socks,
        &format!("http://localhost:{refused}/"),
    );
    assert!(
        !out.status.success(),
        "refused target fetched: {}",
        show(&out)
    );
    let mut request = vec![5, 1, 0, 1, 127, 0, 0, 1];
    request.extend_from_slice(&refused.to_be_bytes());
    let reply = raw_request(socks, &request, true, 10);
    assert_eq!(reply[..2], [5, 5], "SOCKS5 reply to a refused target");
    let mut request = vec![4, 1];
    request.extend_from_slice(&refused.to_be_bytes());
    request.extend_from_slice(&[127, 0, 0, 1, b'u', 0]);
    let reply = raw_request(socks, &request, false, 8);
    assert_eq!(reply[..2], [0, 0x5b], "SOCKS4 reply to a refused target");
    // Something that is not SOCKS at all is dropped.
    let mut junk = TcpStream::connect(("127.0.0.1", socks)).expect("connect");
    junk.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    junk.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("junk");
    let mut rest = Vec::new();
    let _ = junk.read_to_end(&mut rest);
    assert!(rest.is_empty());

    // The proxy keeps serving.
    assert_fetch("--socks5-hostname", socks, &by_name, &client);
    assert!(client.alive(), "sshq died; its log:\n{}", client.log_text());
}

#[test]
fn dynamic_forward_over_tcp() {
    dynamic_forward_over("tcp");
}

#[test]
fn dynamic_forward_over_quic() {
    dynamic_forward_over("quic");
}

/// `DynamicForward` in the configuration works like -D.
#[test]
fn dynamic_forward_from_config() {
    let s = Setup::new();
    let http = http_service();
    let socks = free_port();
    let option = format!("DynamicForward=127.0.0.1:{socks}");
    let client = s.background(&["-o", "Transport=quic", "-o", &option], "sshq.log");
    let url = format!("http://localhost:{}/config", http.port);
    let up = wait_until(Duration::from_secs(20), || {
        curl("--socks5-hostname", socks, &url).status.success()
    });
    assert!(
        up,
        "no proxy from DynamicForward; log:\n{}",
        client.log_text()
    );
    assert_fetch("--socks5-hostname", socks, &url, &client);
}

/// A -D port already in use is reported as ssh reports it; the command
/// still runs, unless ExitOnForwardFailure is set (then status 255).
#[test]
fn dynamic_forward_bind_error() {
    let s = Setup::new();
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    for exit_on_failure in ["no", "yes"] {
        let option = format!("ExitOnForwardFailure={exit_on_failure}");
        let out = s.lab.sshq(
            s.server.port,
            &["-o", &option, "-D", &port],
            &["echo", "ran"],
            b"",
        );
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("bind [127.0.0.1]:{port}: Address already in use"))
                && stderr.contains("Could not request local forwarding."),
            "{option}: {}",
            show(&out)
        );
        let (code, ran) = match exit_on_failure {
            "yes" => (Some(255), false),
            _ => (Some(0), true),
        };
        assert_eq!(out.status.code(), code, "{option}: {}", show(&out));
        assert_eq!(
            text(&out.stdout).contains("ran"),
            ran,
            "{option}: {}",
            show(&out)
        );
    }
}
