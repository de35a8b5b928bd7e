//! AuthorizedKeysCommand and AuthorizedPrincipalsCommand (issue 14, items
//! 1 and 3), as sshd runs them: as AuthorizedKeysCommandUser, its stdout
//! read as authorized_keys (or principals) lines, refused when it fails,
//! prints nothing, or is not owned by root and safe from others. A real
//! sshqd and real clients (sshq over both transports, OpenSSH's ssh).
//!
//! The commands run as `nobody`, so they live in a directory of their own
//! that `nobody` may enter (the lab's is private to root).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{run_with_input, show, text, Lab, Listeners, Server};

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (CI runs as root): the command must be owned by root and run as nobody"
    );
}

/// A directory `nobody` can enter, with a file it may write (`out`).
struct CommandDir {
    dir: tempfile::TempDir,
}

impl CommandDir {
    fn new() -> CommandDir {
        let dir = tempfile::Builder::new()
            .prefix("sshq-akc.")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = dir.path().join("out");
        std::fs::write(&out, "").unwrap();
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o666)).unwrap();
        CommandDir { dir }
    }

    /// A shell script `name` with `body`, owned by root, mode 0755.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn out_text(&self) -> String {
        std::fs::read_to_string(self.out()).unwrap_or_default()
    }
}

fn nobody_uid() -> u32 {
    nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user")
        .uid
        .as_raw()
}

/// The lab key's authorized_keys line, with `options` in front.
fn key_line(lab: &Lab, options: &str) -> String {
    let key = std::fs::read_to_string(lab.path("user.pub")).unwrap();
    format!("{options} {}", key.trim()).trim().to_string()
}

fn start(lab: &Lab, command: &Path, args: &str) -> Server {
    // The lab's own file comes first in its configuration: empty it, so
    // that only the command can let the key in.
    std::fs::write(lab.path("authorized_keys"), "").unwrap();
    let config = format!(
        "AuthorizedKeysFile none\nAuthorizedKeysCommand {} {args}\nAuthorizedKeysCommandUser nobody\n\
         Transports quic,tcp\n",
        command.display()
    );
    lab.start_sshqd_on(&config, Listeners::Both)
}

fn logs_in(lab: &Lab, server: &Server) -> Vec<(String, Output)> {
    let mut runs = Vec::new();
    for transport in ["quic", "tcp"] {
        let option = format!("Transport={transport}");
        let out = lab.sshq(server.port, &["-o", &option], &["echo", "in"], b"");
        runs.push((format!("sshq over {transport}"), out));
    }
    let out = lab.ssh(server.port, &[], &["echo", "in"], b"");
    runs.push(("ssh".to_string(), out));
    runs
}

fn assert_all_in(lab: &Lab, server: &Server) {
    for (client, out) in logs_in(lab, server) {
        assert_eq!(
            text(&out.stdout),
            "in\n",
            "{client}: {}\n{}",
            show(&out),
            server.log_text()
        );
    }
}

fn assert_all_refused(lab: &Lab, server: &Server) {
    for (client, out) in logs_in(lab, server) {
        assert_ne!(
            out.status.code(),
            Some(0),
            "{client} got in: {}",
            show(&out)
        );
        assert_eq!(text(&out.stdout), "", "{client}");
    }
}

#[test]
fn the_commands_keys_let_the_user_in_and_it_runs_as_nobody() {
    need_root();
    let lab = Lab::new();
    let dir = CommandDir::new();
    let out = dir.out().display().to_string();
    let body = format!(
        "echo \"$(id -u) $*\" >> {out}\necho '# from the command'\necho '{}'",
        key_line(&lab, "")
    );
    let command = dir.script("keys", &body);
    let server = start(&lab, &command, "%u %U %t %f");
    assert_all_in(&lab, &server);
    let fingerprint = text(
        &Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(lab.path("user.pub"))
            .output()
            .unwrap()
            .stdout,
    );
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_string();
    let me = nix::unistd::geteuid().as_raw();
    let expected = format!(
        "{} {} {me} ssh-ed25519 {fingerprint}",
        nobody_uid(),
        lab.user
    );
    let ran = dir.out_text();
    assert!(!ran.is_empty(), "the command never ran");
    for line in ran.lines() {
        assert_eq!(line, expected);
    }
}

#[test]
fn options_on_the_commands_lines_apply() {
    need_root();
    let lab = Lab::new();
    let dir = CommandDir::new();
    let line = key_line(&lab, r#"command="echo forced""#);
    let command = dir.script("keys", &format!("echo '{line}'"));
    // No arguments: the user name is passed, as in sshd.
    let server = start(&lab, &command, "");
    let out = lab.ssh(server.port, &[], &["echo", "asked"], b"");
    assert_eq!(text(&out.stdout), "forced\n", "{}", show(&out));
}

#[test]
fn nothing_printed_a_failure_or_an_unsafe_program_lets_nobody_in() {
    need_root();
    let lab = Lab::new();
    let dir = CommandDir::new();
    // Nothing printed.
    let silent = dir.script("silent", "exit 0");
    let server = start(&lab, &silent, "%u");
    assert_all_refused(&lab, &server);
    drop(server);

    // The key printed, but the command fails: nothing counts, and it is logged.
    let failing = dir.script("failing", &format!("echo '{}'\nexit 3", key_line(&lab, "")));
    let server = start(&lab, &failing, "%u");
    assert_all_refused(&lab, &server);
    let log = server.log_text();
    assert!(
        log.contains(&format!(
            "AuthorizedKeysCommand {} {} failed, status 3",
            failing.display(),
            lab.user
        )),
        "{log}"
    );
    drop(server);

    // Writable by others, or not owned by root: never run.
    let loose = dir.script(
        "loose",
        &format!(
            "echo ran >> {}\necho '{}'",
            dir.out().display(),
            key_line(&lab, "")
        ),
    );
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o757)).unwrap();
    let server = start(&lab, &loose, "%u");
    assert_all_refused(&lab, &server);
    let log = server.log_text();
    assert!(
        log.contains(&format!(
            "Unsafe AuthorizedKeysCommand \"{}\": bad ownership or modes for file",
            loose.display()
        )),
        "{log}"
    );
    drop(server);
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755)).unwrap();
    nix::unistd::chown(&loose, Some(nix::unistd::Uid::from_raw(nobody_uid())), None).unwrap();
    let server = start(&lab, &loose, "%u");
    assert_all_refused(&lab, &server);
    assert!(server.log_text().contains("Unsafe AuthorizedKeysCommand"));
    assert_eq!(dir.out_text(), "", "an unsafe command ran");
}

#[test]
fn a_command_without_its_user_stops_sshqd_as_it_stops_sshd() {
    let lab = Lab::new();
    let config = lab.write_sshqd_config(
        2222,
        &[lab.path("host_ed25519")],
        "AuthorizedKeysCommand /bin/true %u\n",
    );
    let out = lab.sshqd_refusing(&config);
    assert!(
        text(&out.stderr).contains("AuthorizedKeysCommand set without AuthorizedKeysCommandUser"),
        "{}",
        show(&out)
    );
    let config = lab.write_sshqd_config(
        2222,
        &[lab.path("host_ed25519")],
        "AuthorizedKeysCommand keys %u\n",
    );
    let out = lab.sshqd_refusing(&config);
    assert!(
        text(&out.stderr).contains("AuthorizedKeysCommand must be an absolute path"),
        "{}",
        show(&out)
    );
}

#[test]
fn the_principals_commands_names_let_a_certificate_in() {
    need_root();
    let lab = Lab::new();
    lab.keygen("user_ca", "ed25519", "ca");
    let signed = run_with_input(
        Command::new("ssh-keygen")
            .current_dir(lab.dir.path())
            .args([
                "-q", "-s", "user_ca", "-I", "ops-id", "-n", "ops,web", "user.pub",
            ]),
        b"",
    );
    assert!(signed.status.success(), "{}", show(&signed));
    let dir = CommandDir::new();
    let body = format!(
        "echo \"$(id -u) $*\" >> {}\n[ \"$2\" = ops-id ] && echo 'command=\"echo via-command\" ops'",
        dir.out().display()
    );
    let command = dir.script("principals", &body);
    let config = format!(
        "AuthorizedKeysFile none\nTrustedUserCAKeys {}\n\
         AuthorizedPrincipalsCommand {} %u %i %s %T\nAuthorizedPrincipalsCommandUser nobody\n\
         Transports quic,tcp\n",
        lab.path("user_ca.pub").display(),
        command.display()
    );
    std::fs::write(lab.path("authorized_keys"), "").unwrap();
    let server = lab.start_sshqd_on(&config, Listeners::Both);
    for (client, out) in logs_in(&lab, &server) {
        assert_eq!(
            text(&out.stdout),
            "via-command\n",
            "{client}: {}\n{}",
            show(&out),
            server.log_text()
        );
    }
    let ran = dir.out_text();
    assert!(
        ran.lines()
            .any(|l| l == format!("{} {} ops-id 0 ssh-ed25519", nobody_uid(), lab.user)),
        "{ran}"
    );
}
