//! Issue 10: sshqd starts session programs off its async workers (fork,
//! exec and the group lookup block). Programs that exit at once must still
//! have their exit status reach the client, every time, over both
//! transports: an earlier attempt at moving the start lost it over QUIC in
//! about one session in seven.

mod common;

use common::{show, text, Lab, Listeners};

/// Sessions per transport: enough that a one-in-seven loss cannot pass.
const SESSIONS: u32 = 60;
/// Clients running at once, so starts overlap on the server.
const PARALLEL: u32 = 4;

/// Runs `SESSIONS` fast-exiting commands (`exit N`, some printing first)
/// with `PARALLEL` clients at a time and returns every mismatch.
fn fast_exits_keep_their_status(lab: &Lab, port: u16, transport: &str) -> Vec<String> {
    let per_thread = SESSIONS / PARALLEL;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|worker| {
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    for i in 0..per_thread {
                        let code = (worker * per_thread + i) % 7 + 1;
                        // Half print something first, half print nothing.
                        let command = if i % 2 == 0 {
                            format!("exit {code}")
                        } else {
                            format!("echo out{code}; exit {code}")
                        };
                        let out = lab.sshq(
                            port,
                            &["-o", &format!("Transport={transport}")],
                            &[&command],
                            b"",
                        );
                        let expected_out = if i % 2 == 0 {
                            String::new()
                        } else {
                            format!("out{code}\n")
                        };
                        let code = i32::try_from(code).unwrap_or(-1);
                        if out.status.code() != Some(code) || text(&out.stdout) != expected_out {
                            failures.push(format!("{transport} `{command}`: {}", show(&out)));
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec!["a worker panicked".into()])
            })
            .collect()
    })
}

#[test]
fn every_fast_exit_status_reaches_the_client_over_quic_and_tcp() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("Transports quic,tcp\n", Listeners::Both);
    for transport in ["quic", "tcp"] {
        let failures = fast_exits_keep_their_status(&lab, server.port, transport);
        assert!(
            failures.is_empty(),
            "{} of {SESSIONS} sessions over {transport} lost their exit status or output:\n{}\nsshqd log:\n{}",
            failures.len(),
            failures.join("\n"),
            server.log_text()
        );
    }
}
