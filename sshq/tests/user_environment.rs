//! PermitUserEnvironment (issue 14, item 3): ~/.ssh/environment and the
//! key's `environment=` set session variables as sshd sets them — only
//! under `yes` or for the names a pattern list allows, after sshd's own
//! variables (so they may replace PATH) but never SSH_CONNECTION — and
//! `Match LocalAddress` end to end. A real sshqd, sshq and OpenSSH's ssh.
//!
//! The sessions run as a user made for the test (`useradd`, removed at
//! the end): ~/.ssh/environment is written in its home, never in a real
//! user's.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use common::{run_with_input, show, text, Lab, Listeners, Server, SSHQ};

/// One test at a time: users are shared by the machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// A user made for one test, removed (home and all) when dropped.
struct TestUser {
    name: String,
    home: PathBuf,
}

impl TestUser {
    fn create(tag: &str) -> TestUser {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (CI runs as root): it creates a user"
        );
        let name = format!("sque{}{tag}", std::process::id() % 100_000);
        let _ = Command::new("userdel").args(["-r", "-f", &name]).output();
        let mut made = false;
        for _ in 0..20 {
            // useradd fails while another one holds /etc/passwd's lock.
            let out = Command::new("useradd")
                .args(["-m", "-s", "/bin/sh", &name])
                .output()
                .expect("useradd (passwd package)");
            if out.status.success() {
                made = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(made, "useradd {name} failed");
        // Not locked: sshd (UsePAM no) refuses locked accounts.
        let out = Command::new("usermod")
            .args(["-p", "*", &name])
            .output()
            .unwrap();
        assert!(out.status.success());
        let home = nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the new user")
            .dir;
        TestUser { name, home }
    }

    /// Writes `~/.ssh/name` as the user would, with sshd's modes.
    fn write_ssh_file(&self, name: &str, contents: &str) {
        let ssh = self.home.join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::write(ssh.join(name), contents).unwrap();
        let out = Command::new("chown")
            .args(["-R", &format!("{}:", self.name)])
            .arg(&ssh)
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::set_permissions(&self.home, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(ssh.join(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("pgrep").args(["-u", &self.name]).output() {
            for pid in text(&out.stdout)
                .lines()
                .filter_map(|l| l.trim().parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = Command::new("userdel")
            .args(["-r", "-f", &self.name])
            .output();
    }
}

/// Runs `program` (sshq or ssh) as `user` against `server`, printing the
/// variables the test looks at.
fn session(lab: &Lab, program: &str, server: &Server, user: &TestUser, extra: &[&str]) -> Output {
    let mut args = lab.client_opts("user");
    args.extend(["-p".to_string(), server.port.to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(format!("{}@127.0.0.1", user.name));
    args.push("echo \"A=$SQ_A B=$SQ_B LD=$LD_PRELOAD_X PATH=$PATH CONN=$SSH_CONNECTION\"".into());
    run_with_input(Command::new(program).args(&args), b"")
}

fn start(lab: &Lab, permit: &str) -> Server {
    let config = format!(
        "AuthorizedKeysFile .ssh/authorized_keys\nPermitUserEnvironment {permit}\nTransports quic,tcp\n"
    );
    lab.start_sshqd_on(&config, Listeners::Both)
}

/// The user's key line (with `environment=` options) and ~/.ssh/environment.
fn set_up(lab: &Lab, user: &TestUser) {
    let key = std::fs::read_to_string(lab.path("user.pub")).unwrap();
    let line = format!("environment=\"SQ_A=from-key\",environment=\"SQ_B=key-b\" {key}");
    // The lab's configuration names its own file first (the first
    // AuthorizedKeysFile wins): the same line there.
    std::fs::write(lab.path("authorized_keys"), &line).unwrap();
    user.write_ssh_file("authorized_keys", &line);
    user.write_ssh_file(
        "environment",
        "# the user's own\nSQ_B=from-file\nLD_PRELOAD_X=evil\nPATH=/user/bin\nSSH_CONNECTION=forged\nnot a line\n",
    );
}

fn every_client(lab: &Lab, server: &Server, user: &TestUser) -> Vec<(String, String)> {
    let mut outs = Vec::new();
    for transport in ["quic", "tcp"] {
        let option = format!("Transport={transport}");
        let out = session(lab, SSHQ, server, user, &["-o", &option]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "sshq {transport}: {}\n{}",
            show(&out),
            server.log_text()
        );
        outs.push((format!("sshq {transport}"), text(&out.stdout)));
    }
    let out = session(lab, "ssh", server, user, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "ssh: {}\n{}",
        show(&out),
        server.log_text()
    );
    outs.push(("ssh".into(), text(&out.stdout)));
    outs
}

#[test]
fn permit_user_environment_yes_no_and_a_pattern_list() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::new();
    let user = TestUser::create("e");
    set_up(&lab, &user);

    // yes: the key's, then the file's (which wins for SQ_B), replacing
    // PATH, never SSH_CONNECTION.
    let server = start(&lab, "yes");
    for (client, out) in every_client(&lab, &server, &user) {
        assert!(
            out.starts_with("A=from-key B=from-file LD=evil PATH=/user/bin CONN=127.0.0.1 "),
            "{client}: {out}"
        );
    }
    drop(server);

    // no (sshd's default): none of them.
    let server = start(&lab, "no");
    for (client, out) in every_client(&lab, &server, &user) {
        assert!(out.starts_with("A= B= LD= PATH=/"), "{client}: {out}");
        assert!(!out.contains("/user/bin"), "{client}: {out}");
    }
    drop(server);

    // A pattern list: only the names it allows.
    let server = start(&lab, "SQ_*,!SQ_B");
    for (client, out) in every_client(&lab, &server, &user) {
        assert!(
            out.starts_with("A=from-key B= LD= PATH=/"),
            "{client}: {out}"
        );
        assert!(!out.contains("/user/bin"), "{client}: {out}");
    }
}

#[test]
fn match_local_address_applies_to_connections_to_that_address() {
    let lab = Lab::new();
    // sshqd listens on 127.0.0.1 (the lab's ListenAddress) and 127.0.0.2.
    // In a file of its own: a Match block ends with its file, so the lab's
    // own lines after it stay global.
    let block = lab.path("match.conf");
    std::fs::write(
        &block,
        "Match LocalAddress 127.0.0.2\n  ForceCommand echo via-second-address\n",
    )
    .unwrap();
    let config = format!(
        "ListenAddress 127.0.0.2\nTransports quic,tcp\nInclude {}\n",
        block.display()
    );
    let server = lab.start_sshqd_on(&config, Listeners::Both);
    for (program, extra) in [
        (SSHQ, "Transport=quic"),
        (SSHQ, "Transport=tcp"),
        ("ssh", "LogLevel=ERROR"),
    ] {
        let out = lab.client(
            program,
            "user",
            server.port,
            &["-o", extra],
            &["echo", "plain"],
            b"",
        );
        assert_eq!(
            text(&out.stdout),
            "plain\n",
            "{program} {extra}: {}",
            show(&out)
        );
        let mut args = lab.client_opts("user");
        args.extend([
            "-p".into(),
            server.port.to_string(),
            "-o".into(),
            extra.into(),
        ]);
        args.push(format!("{}@127.0.0.2", lab.user));
        args.extend(["echo".into(), "plain".into()]);
        let out = run_with_input(Command::new(program).args(&args), b"");
        assert_eq!(
            text(&out.stdout),
            "via-second-address\n",
            "{program} {extra}: {}",
            show(&out)
        );
    }
}
