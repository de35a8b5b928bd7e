//! The direction matrix: sshq and sshqd against real OpenSSH and each
//! other, every check in every direction it applies to: sshq → OpenSSH
//! sshd, OpenSSH ssh → sshqd, sshq → sshqd over TCP and sshq → sshqd over
//! QUIC (`common::setup::Dir`). What only QUIC has is in tests/quic.rs.
//! Each test has its own lab (temporary directory, keys, servers on free
//! ports).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::setup::{Dir, Setup};
use common::{has_size_line, pts_line, random_bytes, sha256, show, text, Lab};

/// One test per listed direction, each calling the check of the same name:
/// `check: dir, dir;` gives tests `check::dir`.
macro_rules! directions {
    ($($check:ident: $($dir:ident),+;)*) => {$(
        mod $check {
            $(#[test]
            fn $dir() {
                super::$check(super::Dir::$dir)
            })+
        }
    )*};
}

directions! {
    exit_codes: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    stderr_apart_from_stdout: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    cat_16_mib: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    stdin_eof_reaches_remote: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    remote_killed_by_signal: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    pty_with_t_on_a_terminal: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    pty_with_tt_without_terminal: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    window_change: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    stranger_key_refused: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    changed_host_key_refused: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    accept_new_records_host_key: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    strict_checking_refuses_unknown_host: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    set_env_reaches_remote: sshq_to_sshd, ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    session_environment: ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    session_environment_with_pty: ssh_to_sshqd, sshq_to_sshqd, sshq_quic_to_sshqd;
    unknown_option_refused: sshq_to_sshqd, ssh_to_sshqd, sshq_quic_to_sshqd;
    unknown_config_keyword_refused: sshq_to_sshqd, ssh_to_sshqd, sshq_quic_to_sshqd;
}

fn exit_codes(dir: Dir) {
    let s = Setup::new(dir);
    for code in [0, 1, 42] {
        let out = s.run(&[], &[&format!("exit {code}")], b"");
        assert_eq!(
            out.status.code(),
            Some(code),
            "`exit {code}`:\n{}",
            s.show(&out)
        );
    }
}

fn stderr_apart_from_stdout(dir: Dir) {
    let s = Setup::new(dir);
    let out = s.run(&[], &["echo out; echo err >&2"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(text(&out.stdout), "out\n", "{}", s.show(&out));
    assert!(
        text(&out.stderr).lines().any(|l| l == "err"),
        "{}",
        s.show(&out)
    );
}

fn cat_16_mib(dir: Dir) {
    let s = Setup::new(dir);
    let data = random_bytes(16 << 20);
    let out = s.run(&[], &["cat"], &data);
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(
        out.stdout.len(),
        data.len(),
        "bytes back through cat:\n{}",
        s.show(&out)
    );
    assert_eq!(
        sha256(&out.stdout),
        sha256(&data),
        "SHA-256 of what came back"
    );
}

fn stdin_eof_reaches_remote(dir: Dir) {
    let s = Setup::new(dir);
    let out = s.run(&[], &["wc -c"], &random_bytes(12345));
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(text(&out.stdout).trim(), "12345", "{}", s.show(&out));
}

/// OpenSSH's ssh exits 255 when the remote command dies by a signal.
fn remote_killed_by_signal(dir: Dir) {
    let s = Setup::new(dir);
    let out = s.run(&[], &["kill -TERM $$"], b"");
    assert_eq!(out.status.code(), Some(255), "{}", s.show(&out));
}

/// OpenSSH's sshd running as an ordinary user cannot hand out ptys (it must
/// chown the tty and write login records, and gives up): outside root the
/// sshd direction fails (see `common::needs_root`).
fn sshd_gives_ptys(dir: Dir) -> bool {
    !matches!(dir, Dir::sshq_to_sshd)
        || common::needs_root("OpenSSH's sshd gives no pty sessions unless it runs as root")
}

fn pty_with_t_on_a_terminal(dir: Dir) {
    if !sshd_gives_ptys(dir) {
        return;
    }
    let s = Setup::new(dir);
    let (status, out) = s.on_pty(&["-t"], &["tty; stty size"], 37, 111).finish();
    assert_eq!(
        status.code(),
        Some(0),
        "terminal:\n{out}\n{}",
        s.server_log()
    );
    assert!(pts_line(&out).is_some(), "no /dev/pts/N line:\n{out}");
    assert!(
        out.lines().any(|l| l.trim() == "37 111"),
        "remote size is not 37 111:\n{out}"
    );
}

fn pty_with_tt_without_terminal(dir: Dir) {
    if !sshd_gives_ptys(dir) {
        return;
    }
    let s = Setup::new(dir);
    let out = s.run(&["-tt"], &["tty; stty size"], b"");
    let stdout = text(&out.stdout).replace('\r', "");
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert!(
        pts_line(&stdout).is_some(),
        "no /dev/pts/N line:\n{}",
        s.show(&out)
    );
    assert!(
        has_size_line(&stdout),
        "no `rows cols` line:\n{}",
        s.show(&out)
    );
}

/// The remote polls its size (up to 10 s) until it changes from 37x111.
fn window_change(dir: Dir) {
    if !sshd_gives_ptys(dir) {
        return;
    }
    let s = Setup::new(dir);
    let script = "echo ready; i=0; while [ \"$(stty size)\" = '37 111' ] && [ $i -lt 100 ]; do \
                  sleep 0.1; i=$((i+1)); done; echo \"size: $(stty size)\"";
    let client = s.on_pty(&["-t"], &[script], 37, 111);
    assert!(
        client.wait_for("ready", Duration::from_secs(30)),
        "the remote command did not start:\n{}",
        client.output()
    );
    client.resize(20, 70);
    let (status, out) = client.finish();
    assert_eq!(
        status.code(),
        Some(0),
        "terminal:\n{out}\n{}",
        s.server_log()
    );
    assert!(
        out.contains("size: 20 70"),
        "the remote did not see the resize to 20 70:\n{out}"
    );
}

fn stranger_key_refused(dir: Dir) {
    let s = Setup::new(dir);
    let out = s.run_as(
        "stranger",
        "accept-new",
        s.transport_options(),
        &["echo reached"],
    );
    assert_eq!(out.status.code(), Some(255), "{}", s.show(&out));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        s.show(&out)
    );
    assert!(!text(&out.stdout).contains("reached"), "{}", s.show(&out));
}

fn changed_host_key_refused(dir: Dir) {
    let s = Setup::new(dir);
    s.lab.write_known_hosts(s.port(), "other_host_ed25519");
    let out = s.run(&[], &["echo reached"], b"");
    assert_eq!(out.status.code(), Some(255), "{}", s.show(&out));
    assert!(
        text(&out.stderr).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        s.show(&out)
    );
    assert!(!text(&out.stdout).contains("reached"), "{}", s.show(&out));
}

fn accept_new_records_host_key(dir: Dir) {
    let s = Setup::new(dir);
    let out = s.run(&[], &["echo first"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(text(&out.stdout), "first\n", "{}", s.show(&out));
    let found = s.lab.run(
        "ssh-keygen",
        &[
            "-F".into(),
            format!("[127.0.0.1]:{}", s.port()),
            "-f".into(),
            s.lab.path("known_hosts").display().to_string(),
        ],
        b"",
    );
    assert_eq!(
        found.status.code(),
        Some(0),
        "ssh-keygen -F finds no key:\n{}",
        s.show(&found)
    );
    assert!(
        text(&found.stdout).contains(&s.lab.public_key_blob("host_ed25519")),
        "the recorded key is not the server's:\n{}",
        s.show(&found)
    );
    // Now known, the key passes strict checking.
    let out = s.run_strict("yes", &["echo again"]);
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(text(&out.stdout), "again\n", "{}", s.show(&out));
}

fn strict_checking_refuses_unknown_host(dir: Dir) {
    let s = Setup::new(dir);
    std::fs::write(s.lab.path("known_hosts"), "").expect("known_hosts");
    let out = s.run_strict("yes", &["echo reached"]);
    assert_eq!(out.status.code(), Some(255), "{}", s.show(&out));
    assert!(
        text(&out.stderr).contains("Host key verification failed."),
        "{}",
        s.show(&out)
    );
    assert!(!text(&out.stdout).contains("reached"), "{}", s.show(&out));
    let known = std::fs::read_to_string(s.lab.path("known_hosts")).unwrap_or_default();
    assert!(
        known.trim().is_empty(),
        "strict checking recorded a key: {known}"
    );
}

/// SetEnv reaches the remote for names in AcceptEnv (SSHQ_TEST_*), not others.
fn set_env_reaches_remote(dir: Dir) {
    let s = Setup::new(dir);
    let out = s.run(
        &["-o", "SetEnv=SSHQ_TEST_X=1 NOT_ACCEPTED_Y=2"],
        &["echo \"x=$SSHQ_TEST_X y=$NOT_ACCEPTED_Y\""],
        b"",
    );
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    assert_eq!(text(&out.stdout), "x=1 y=\n", "{}", s.show(&out));
}

/// `env` output as a map (a pty's CRs removed).
fn env_map(stdout: &[u8]) -> HashMap<String, String> {
    text(stdout)
        .replace('\r', "")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The passwd entry's home directory and shell of `user`.
fn home_and_shell(user: &str) -> (String, String) {
    let out = Command::new("getent")
        .args(["passwd", user])
        .output()
        .expect("getent");
    let line = text(&out.stdout);
    let fields: Vec<&str> = line.trim().split(':').collect();
    assert!(fields.len() >= 7, "getent passwd {user}: {line}");
    let shell = if fields[6].is_empty() {
        "/bin/sh"
    } else {
        fields[6]
    };
    (fields[5].to_string(), shell.to_string())
}

/// Checks USER, HOME, SHELL, PATH, SSH_CONNECTION and SSH_CLIENT.
fn check_login_environment(s: &Setup, env: &HashMap<String, String>, shown: &str) {
    let get = |name: &str| {
        env.get(name)
            .unwrap_or_else(|| panic!("{name} is not set in the session:\n{shown}"))
            .as_str()
    };
    let (home, shell) = home_and_shell(&s.lab.user);
    assert_eq!(get("USER"), s.lab.user, "{shown}");
    assert_eq!(get("HOME"), home, "{shown}");
    assert_eq!(get("SHELL"), shell, "{shown}");
    assert!(get("PATH").split(':').any(|d| d == "/usr/bin"), "{shown}");
    let connection: Vec<&str> = get("SSH_CONNECTION").split(' ').collect();
    let port = s.port().to_string();
    assert_eq!(connection.len(), 4, "SSH_CONNECTION:\n{shown}");
    assert_eq!(
        [connection[0], connection[2], connection[3]],
        ["127.0.0.1", "127.0.0.1", port.as_str()],
        "SSH_CONNECTION:\n{shown}"
    );
    let client = format!("127.0.0.1 {} {port}", connection[1]);
    assert_eq!(get("SSH_CLIENT"), client, "SSH_CLIENT:\n{shown}");
}

fn session_environment(dir: Dir) {
    let s = Setup::new(dir);
    let out = s.run(&[], &["env"], b"");
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    let env = env_map(&out.stdout);
    check_login_environment(&s, &env, &s.show(&out));
    assert!(
        !env.contains_key("SSH_TTY"),
        "SSH_TTY without a pty:\n{}",
        s.show(&out)
    );
    assert!(
        !env.contains_key("TERM"),
        "TERM without a pty:\n{}",
        s.show(&out)
    );
}

fn session_environment_with_pty(dir: Dir) {
    let s = Setup::new(dir);
    let extra = [s.transport_options(), &["-tt"]].concat();
    let args = s.args("user", "accept-new", &extra, &["tty; env"]);
    let mut cmd = Command::new(s.client);
    cmd.args(&args).env("TERM", "xterm-256color");
    let out = common::run_with_input(&mut cmd, b"");
    assert_eq!(out.status.code(), Some(0), "{}", s.show(&out));
    let env = env_map(&out.stdout);
    check_login_environment(&s, &env, &s.show(&out));
    let stdout = text(&out.stdout).replace('\r', "");
    let tty = pts_line(&stdout).unwrap_or_else(|| panic!("no /dev/pts/N line:\n{}", s.show(&out)));
    assert_eq!(
        env.get("SSH_TTY").map(String::as_str),
        Some(tty),
        "{}",
        s.show(&out)
    );
    assert_eq!(
        env.get("TERM").map(String::as_str),
        Some("xterm-256color"),
        "{}",
        s.show(&out)
    );
}

fn unknown_option_refused(dir: Dir) {
    let s = Setup::new(dir);
    let out = s.run(&["-o", "Foo=bar"], &["echo reached"], b"");
    assert_eq!(out.status.code(), Some(255), "{}", s.show(&out));
    assert!(
        text(&out.stderr).to_lowercase().contains("foo"),
        "does not name the option:\n{}",
        s.show(&out)
    );
    assert!(!text(&out.stdout).contains("reached"), "{}", s.show(&out));
}

fn unknown_config_keyword_refused(dir: Dir) {
    let s = Setup::new(dir);
    let config = s.lab.path("client_config");
    std::fs::write(
        &config,
        "# a test configuration\nHost *\n    FrobnicateLevel 3\n",
    )
    .expect("config");
    let config = config.display().to_string();
    let out = s.run(&["-F", &config], &["echo reached"], b"");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(255), "{}", s.show(&out));
    assert!(
        stderr.contains(&config),
        "does not name the file:\n{}",
        s.show(&out)
    );
    assert!(
        stderr.contains("line 3"),
        "does not name the line:\n{}",
        s.show(&out)
    );
    assert!(
        stderr.to_lowercase().contains("frobnicatelevel"),
        "does not name the keyword:\n{}",
        s.show(&out)
    );
    assert!(!text(&out.stdout).contains("reached"), "{}", s.show(&out));
}

/// OpenSSH's sftp, in batch mode, puts and gets a 4 MiB file through sshqd's
/// sftp Subsystem.
#[test]
fn sftp_put_and_get_through_sshqd() {
    let lab = Lab::new();
    let server = lab.start_sshqd("");
    let data = random_bytes(4 << 20);
    let (local, remote, back) = (
        lab.path("blob"),
        lab.path("blob.remote"),
        lab.path("blob.back"),
    );
    std::fs::write(&local, &data).expect("blob");
    let batch = lab.path("sftp.batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {}\nget {} {}\n",
            local.display(),
            remote.display(),
            remote.display(),
            back.display()
        ),
    )
    .expect("batch");
    let mut args = lab.client_opts("user");
    args.extend([
        "-b".into(),
        batch.display().to_string(),
        "-P".into(),
        server.port.to_string(),
        lab.target(),
    ]);
    let out = lab.run("sftp", &args, b"");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\nsshqd log:\n{}",
        show(&out),
        server.log_text()
    );
    let remote_data = std::fs::read(&remote).expect("sftp put wrote nothing");
    assert!(
        remote_data == data,
        "put: {} bytes arrived, differing from the {} sent",
        remote_data.len(),
        data.len()
    );
    let back_data = std::fs::read(&back).expect("sftp get wrote nothing");
    assert!(
        back_data == data,
        "get: {} bytes came back, differing from the {} sent",
        back_data.len(),
        data.len()
    );
}

/// Runs sshqd with `config` and checks it refuses to start, saying all of `needles`.
fn assert_sshqd_refuses(lab: &Lab, config: &std::path::Path, needles: &[&str]) {
    let out = lab.sshqd_refusing(config);
    assert!(
        !out.status.success(),
        "sshqd started (or exited 0):\n{}",
        show(&out)
    );
    let stderr = text(&out.stderr).to_lowercase();
    for needle in needles {
        assert!(
            stderr.contains(&needle.to_lowercase()),
            "the message lacks {needle:?}:\n{}",
            show(&out)
        );
    }
}

#[test]
fn sshqd_refuses_unknown_keyword() {
    let lab = Lab::new();
    let config = lab.write_sshqd_config(
        common::free_port(),
        &[lab.path("host_ed25519")],
        "FrobnicateLevel 3",
    );
    let written = std::fs::read_to_string(&config).expect("config");
    let line = 1 + written
        .lines()
        .position(|l| l.starts_with("FrobnicateLevel"))
        .expect("keyword line");
    let path = config.display().to_string();
    assert_sshqd_refuses(
        &lab,
        &config,
        &[&path, &format!("line {line}"), "FrobnicateLevel"],
    );
}

#[test]
fn sshqd_refuses_without_readable_host_key() {
    let lab = Lab::new();
    let missing = lab.path("no_such_host_key");
    let config = lab.write_sshqd_config(common::free_port(), std::slice::from_ref(&missing), "");
    assert_sshqd_refuses(&lab, &config, &[&missing.display().to_string(), "host key"]);

    let garbage = lab.path("garbage_host_key");
    std::fs::write(&garbage, "this is not a key\n").expect("garbage key");
    let config = lab.write_sshqd_config(common::free_port(), std::slice::from_ref(&garbage), "");
    assert_sshqd_refuses(&lab, &config, &[&garbage.display().to_string(), "host key"]);
}

#[test]
fn sshqd_refuses_ecdsa_host_key_only() {
    let lab = Lab::new();
    lab.keygen("host_ecdsa", "ecdsa", "ecdsa-host");
    let config = lab.write_sshqd_config(common::free_port(), &[lab.path("host_ecdsa")], "");
    assert_sshqd_refuses(&lab, &config, &["Ed25519"]);
}
