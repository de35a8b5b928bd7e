//! Client options that other programs and long sessions rely on, over TCP
//! and QUIC against a real sshqd:
//! - ServerAliveInterval / ServerAliveCountMax: a live server keeps a long
//!   session going; one that stops answering (SIGSTOP) ends the session
//!   with ssh's message and 255.
//! - OpenSSH's scp and sftp running sshq as their ssh (`-S sshq`): they
//!   pass options such as `ClearAllForwardings=yes`, `-x`, `-oPermitLocalCommand=no`.
//! - GlobalKnownHostsFile: read for host keys, never written.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{random_bytes, run_with_timeout, show, text, Lab, Listeners, SSHQ};

/// Resumes a stopped server when the test ends, however it ends.
struct Resume(u32);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}

fn sshq_with_keepalives(lab: &Lab, port: u16, transport: &str, command: &str) -> Command {
    let mut cmd = Command::new(SSHQ);
    cmd.args(lab.client_args(
        "user",
        "accept-new",
        port,
        &[
            "-o",
            &format!("Transport={transport}"),
            "-o",
            "ServerAliveInterval=1",
            "-o",
            "ServerAliveCountMax=2",
        ],
        &[command],
    ));
    cmd
}

#[test]
fn a_live_server_answers_keepalives() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("Transports quic,tcp", Listeners::Both);
    for transport in ["tcp", "quic"] {
        let mut cmd = sshq_with_keepalives(&lab, server.port, transport, "sleep 4; echo done");
        let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(30));
        assert_eq!(
            (out.status.code(), text(&out.stdout).as_str()),
            (Some(0), "done\n"),
            "over {transport}: {}",
            show(&out)
        );
    }
}

#[test]
fn a_silent_server_ends_the_session() {
    let lab = Lab::new();
    for transport in ["tcp", "quic"] {
        let server = lab.start_sshqd_on("Transports quic,tcp", Listeners::Both);
        let mut cmd = sshq_with_keepalives(&lab, server.port, transport, "echo up; sleep 60");
        // Stop the server once the session is running.
        let pid = server.pid();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            let _ = Command::new("kill")
                .args(["-STOP", &pid.to_string()])
                .status();
        });
        let _resume = Resume(pid);
        let started = Instant::now();
        let out = run_with_timeout(&mut cmd, b"", Duration::from_secs(40));
        let _ = stopper.join();
        assert_eq!(
            out.status.code(),
            Some(255),
            "over {transport}: {}",
            show(&out)
        );
        assert!(
            text(&out.stdout).contains("up")
                && text(&out.stderr).contains("Timeout, server 127.0.0.1 not responding."),
            "over {transport}: {}",
            show(&out)
        );
        // Two unanswered one-second probes, not the minute of the command.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "over {transport}: took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn openssh_scp_and_sftp_run_over_sshq() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("Transports quic,tcp", Listeners::Both);
    let data = random_bytes(1 << 20);
    std::fs::write(lab.path("original"), &data).expect("write");
    // A -L in the config must not stop scp (ClearAllForwardings drops it).
    std::fs::write(lab.path("config"), "LocalForward 1 127.0.0.1:1\n").expect("config");
    for transport in ["tcp", "quic"] {
        let mut options = lab.client_opts("user");
        options.extend([
            "-F".to_string(),
            lab.path("config").display().to_string(),
            "-o".to_string(),
            format!("Transport={transport}"),
        ]);
        let remote = lab.path(&format!("copy.{transport}"));
        let mut scp = Command::new("scp");
        scp.args(["-S", SSHQ, "-P", &server.port.to_string()])
            .args(&options)
            .arg(lab.path("original"))
            .arg(format!("{}:{}", lab.target(), remote.display()));
        let out = run_with_timeout(&mut scp, b"", Duration::from_secs(30));
        assert!(out.status.success(), "scp over {transport}: {}", show(&out));
        assert_eq!(
            std::fs::read(&remote).ok(),
            Some(data.clone()),
            "scp over {transport}"
        );

        let back = lab.path(&format!("back.{transport}"));
        let mut sftp = Command::new("sftp");
        sftp.args(["-S", SSHQ, "-P", &server.port.to_string(), "-b", "-"])
            .args(&options)
            .arg(lab.target());
        let batch = format!("get {} {}\n", remote.display(), back.display());
        let out = run_with_timeout(&mut sftp, batch.as_bytes(), Duration::from_secs(30));
        assert!(
            out.status.success(),
            "sftp over {transport}: {}",
            show(&out)
        );
        assert_eq!(
            std::fs::read(&back).ok(),
            Some(data.clone()),
            "sftp over {transport}"
        );
    }
}

/// A host known only from GlobalKnownHostsFile is accepted with
/// StrictHostKeyChecking=yes, over both transports, and nothing is written
/// to that file; without it the same connection is refused.
#[test]
fn global_known_hosts_file() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("Transports quic,tcp", Listeners::Both);
    lab.write_known_hosts(server.port, "host_ed25519");
    let global = lab.path("global_known_hosts");
    std::fs::rename(lab.path("known_hosts"), &global).expect("move known_hosts");
    let before = std::fs::read(&global).expect("read");
    for transport in ["tcp", "quic"] {
        let transport_option = format!("Transport={transport}");
        let global_option = format!("GlobalKnownHostsFile={}", global.display());
        let args = lab.client_args(
            "user",
            "yes",
            server.port,
            &["-o", &transport_option, "-o", &global_option],
            &["echo known"],
        );
        let out = lab.run(SSHQ, &args, b"");
        assert_eq!(
            (out.status.code(), text(&out.stdout).as_str()),
            (Some(0), "known\n"),
            "over {transport}: {}",
            show(&out)
        );
        let args = lab.client_args(
            "user",
            "yes",
            server.port,
            &["-o", &transport_option, "-o", "GlobalKnownHostsFile=none"],
            &["echo known"],
        );
        let out = lab.run(SSHQ, &args, b"");
        assert_eq!(
            out.status.code(),
            Some(255),
            "over {transport}: {}",
            show(&out)
        );
        assert!(
            text(&out.stderr).contains("Host key verification failed."),
            "over {transport}: {}",
            show(&out)
        );
    }
    assert_eq!(std::fs::read(&global).expect("read"), before);
}
