//! The plan's encoding and sshd's environment rules. The helper itself
//! runs as a real process under real PAM in `tests/pam_session.rs`.

use std::ffi::{OsStr, OsString};

use super::super::logging::{LogSetup, SyslogFacility};
use super::super::process::SessionUser;
use super::SessionPlan;

fn os(s: &str) -> OsString {
    OsString::from(s)
}

fn plan() -> SessionPlan {
    SessionPlan {
        service: "sshd".into(),
        user: SessionUser {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/alice".into(),
            shell: "/bin/bash".into(),
        },
        ssh_connection: "192.0.2.1 50022 192.0.2.2 22".into(),
        tty: Some("/dev/pts/7".into()),
        program: "/bin/bash".into(),
        argv: vec![os("bash"), os("-c"), os("echo \u{e9}")],
        env: vec![
            (os("LANG"), os("C.UTF-8")),
            (os("PATH"), os("/usr/bin:/bin")),
            (os("USER"), os("alice")),
        ],
        env_after_pam: vec![
            (os("SSH_CLIENT"), os("192.0.2.1 50022 22")),
            (os("SSH_CONNECTION"), os("192.0.2.1 50022 192.0.2.2 22")),
            (os("SSH_TTY"), os("/dev/pts/7")),
        ],
        login_messages: true,
        log: LogSetup {
            filter: "info,russh=warn".into(),
            syslog: Some(SyslogFacility::Local(2)),
        },
    }
}

#[test]
fn plans_round_trip() {
    let mut plain = plan();
    plain.tty = None;
    plain.login_messages = false;
    plain.log.syslog = None;
    plain.env.clear();
    for plan in [plan(), plain] {
        let mut bytes = Vec::new();
        plan.encode(&mut bytes);
        assert_eq!(SessionPlan::decode(&bytes).unwrap(), plan);
        // Every truncation, and anything extra, is refused.
        for cut in 0..bytes.len() {
            assert!(SessionPlan::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        bytes.push(0);
        assert!(SessionPlan::decode(&bytes).is_err());
    }
}

#[test]
fn a_huge_count_is_refused_without_allocating_for_it() {
    let mut bytes = Vec::new();
    let mut plan = plan();
    plan.argv.clear();
    plan.encode(&mut bytes);
    // The argv count follows the program path; make it u32::MAX.
    let marker = b"/bin/bash";
    let at = bytes
        .windows(marker.len())
        .rposition(|w| w == marker)
        .unwrap()
        + marker.len();
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(SessionPlan::decode(&bytes).is_err());
}

#[test]
fn another_version_is_refused() {
    let mut bytes = Vec::new();
    plan().encode(&mut bytes);
    bytes[3] = 9;
    let error = SessionPlan::decode(&bytes).unwrap_err().to_string();
    assert!(error.contains("version 9"), "{error}");
}

fn env_of(plan: &SessionPlan, pam: &[(&str, &str)]) -> Vec<String> {
    let pam: Vec<(&OsStr, &OsStr)> = pam
        .iter()
        .map(|(n, v)| (OsStr::new(*n), OsStr::new(*v)))
        .collect();
    plan.program_env(pam)
        .into_iter()
        .map(|entry| entry.into_string().unwrap())
        .collect()
}

#[test]
fn pam_variables_replace_sshd_ones_as_in_do_setup_env() {
    let env = env_of(
        &plan(),
        &[
            ("PATH", "/pam/bin"),
            ("MAIL", "/var/mail/alice"),
            ("SSH_TTY", "/dev/evil"),
            ("SSH_CLIENT", "evil"),
            ("SSH_CONNECTION", "evil"),
            ("SSH_CONNECTION_EXTRA", "evil"),
            ("SSH_AUTH_INFO_0", "publickey ..."),
        ],
    );
    assert_eq!(
        env,
        [
            "LANG=C.UTF-8",
            // PAM's replaces sshd's in place.
            "PATH=/pam/bin",
            "USER=alice",
            "MAIL=/var/mail/alice",
            // sshd sets these after PAM's environment: they win.
            "SSH_TTY=/dev/pts/7",
            "SSH_CLIENT=192.0.2.1 50022 22",
            "SSH_CONNECTION=192.0.2.1 50022 192.0.2.2 22",
        ]
    );
}

#[test]
fn the_remote_host_is_the_client_address() {
    assert_eq!(plan().remote_host(), Some("192.0.2.1"));
    let mut unknown = plan();
    unknown.ssh_connection = String::new();
    assert_eq!(unknown.remote_host(), None);
}
