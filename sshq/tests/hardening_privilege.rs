//! sshqd as root against hostile users (issue 10, items 1-5 and the umask):
//! every root file operation on a path the user controls, authorized_keys
//! that are not plain files, StrictModes, locked and expired accounts,
//! /etc/nologin, and descriptors leaking into sessions.
//!
//! These tests need root: they create real users (`useradd`, removed at
//! the end even on failure) and let sshqd switch to them. They run one at
//! a time (user creation and /etc/nologin are machine-wide).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{
    run_with_input, run_with_timeout, show, text, wait_until, Lab, Listeners, Server, SSHQ, SSHQD,
};

/// One test at a time: users and /etc/nologin are shared by the machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (CI runs as root): it creates users and sshqd must switch to them"
    );
}

/// A local user made for one test, with `lab`'s `user.pub` in
/// ~/.ssh/authorized_keys and sshd's modes; removed (with its home and
/// processes) when dropped.
struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl TestUser {
    fn create(tag: &str, lab: &Lab) -> TestUser {
        let name = format!("sqp{}{tag}", std::process::id() % 100_000);
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
        // Not locked (useradd's "!" would be, as sshd with UsePAM no sees it).
        run_ok("usermod", &["-p", "*", &name]);
        let user = nix::unistd::User::from_name(&name)
            .expect("getpwnam")
            .expect("the new user");
        let home = user.dir.clone();
        let test_user = TestUser {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            home,
        };
        let ssh = test_user.home.join(".ssh");
        std::fs::create_dir_all(&ssh).expect("~/.ssh");
        std::fs::copy(lab.path("user.pub"), ssh.join("authorized_keys")).expect("authorized_keys");
        run_ok(
            "chown",
            &[
                "-R",
                &format!("{0}:", test_user.name),
                &ssh.display().to_string(),
            ],
        );
        set_mode(&test_user.home, 0o755);
        set_mode(&ssh, 0o700);
        set_mode(&ssh.join("authorized_keys"), 0o600);
        test_user
    }

    fn keys_file(&self) -> PathBuf {
        self.home.join(".ssh/authorized_keys")
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // What it left in /tmp (agent directories it moved or linked).
        if let Ok(entries) = std::fs::read_dir("/tmp") {
            for entry in entries.flatten() {
                let path = entry.path();
                match std::fs::symlink_metadata(&path) {
                    Ok(meta) if meta.uid() == self.uid && meta.is_dir() => {
                        let _ = std::fs::remove_dir_all(&path);
                    }
                    Ok(meta) if meta.uid() == self.uid => {
                        let _ = std::fs::remove_file(&path);
                    }
                    _ => {}
                }
            }
        }
        // Its processes first (userdel refuses a user still running any),
        // each by pid.
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

fn run_ok(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", show(&out));
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// sshqd with the default AuthorizedKeysFile (~/.ssh/authorized_keys and
/// ~/.ssh/authorized_keys2) and default StrictModes, on TCP and QUIC.
fn start_sshqd(lab: &Lab, extra: &str) -> Server {
    let host = lab.path("host_ed25519");
    lab.start_sshqd_config(
        |port| {
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\n{extra}\n",
                host.display()
            )
        },
        Listeners::Both,
    )
}

/// `echo ok` as `user` with `key`, over `transport` ("tcp": OpenSSH's ssh,
/// "quic": sshq).
fn login(lab: &Lab, server: &Server, user: &str, transport: &str, command: &str) -> Output {
    let mut args = lab.client_opts("user");
    args.extend(["-p".to_string(), server.port.to_string()]);
    let program = if transport == "quic" {
        args.extend(["-o".to_string(), "Transport=quic".to_string()]);
        SSHQ
    } else {
        "ssh"
    };
    args.push(format!("{user}@127.0.0.1"));
    args.push(command.to_string());
    run_with_timeout(
        Command::new(program).args(&args),
        b"",
        Duration::from_secs(30),
    )
}

fn logs_in(lab: &Lab, server: &Server, user: &str, transport: &str) -> bool {
    let out = login(lab, server, user, transport, "echo ok");
    text(&out.stdout).trim() == "ok"
}

/// Owner, group and mode of `path` (not following a final symlink).
fn stat(path: &Path) -> (u32, u32, u32) {
    let meta = std::fs::symlink_metadata(path).expect("stat");
    (meta.uid(), meta.gid(), meta.mode())
}

/// Agent forwarding, item 1: the user races the socket for a symlink to a
/// root file while sessions start, and, deterministically, swaps the whole
/// directory for a link to a root directory before the session ends. No
/// file outside the user's control may change owner or mode, or vanish.
#[test]
fn agent_socket_races_touch_no_root_file() {
    need_root();
    let _serial = serial();
    let lab = Lab::new();
    let user = TestUser::create("ag", &lab);
    let server = start_sshqd(&lab, "AllowAgentForwarding yes");
    let pid = server.pid();

    // Root's: a file the racer points the socket at, and a directory the
    // session points the agent directory at, holding a file named like
    // the socket.
    let victim = lab.path("victim");
    std::fs::write(&victim, "root's\n").expect("victim");
    set_mode(&victim, 0o644);
    let victim_dir = PathBuf::from(format!("/var/tmp/sshq-victim-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&victim_dir);
    std::fs::create_dir(&victim_dir).expect("victim dir");
    set_mode(&victim_dir, 0o755);
    let victim_socket_name = victim_dir.join(format!("agent.{pid}"));
    std::fs::write(&victim_socket_name, "root's too\n").expect("victim in dir");
    set_mode(&victim_socket_name, 0o644);
    // The racer reaches the victim through the lab directory (root's, 0700):
    // make it traversable so the link resolves as the user too.
    set_mode(lab.dir.path(), 0o755);
    let before = [stat(&victim), stat(&victim_dir), stat(&victim_socket_name)];

    let agent = lab.path("agent.sock");
    let mut ssh_agent = common::Background::spawn(
        "ssh-agent",
        &["-D".into(), "-a".into(), agent.display().to_string()],
        lab.path("ssh-agent.log"),
    );
    assert!(
        wait_until(Duration::from_secs(10), || agent.exists()),
        "ssh-agent did not start"
    );
    assert!(ssh_agent.alive());

    // The racer: as the user, swap every agent socket it can see for a
    // symlink to the victim, as fast as it can, for a bounded time.
    let racer_script = format!(
        "while [ $SECONDS -lt 40 ]; do \
           for s in /tmp/sshq-*/agent.[0-9]*; do [ -S \"$s\" ] && rm -f \"$s\" && ln -s {victim} \"$s\"; done; \
         done",
        victim = victim.display()
    );
    let mut racer = Command::new("setpriv")
        .args([
            &format!("--reuid={}", user.uid),
            &format!("--regid={}", user.gid),
            "--clear-groups",
            "bash",
            "-c",
            &racer_script,
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("setpriv (util-linux)");

    let relink = format!(
        "d=$(dirname \"$SSH_AUTH_SOCK\"); mv \"$d\" \"$d.moved\" && ln -s {} \"$d\" && echo swapped",
        victim_dir.display()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sessions = 0;
    for round in 0..24 {
        if Instant::now() > deadline {
            break;
        }
        let transport = if round % 2 == 0 { "tcp" } else { "quic" };
        // Half the sessions also swap their own directory before ending.
        let command = if round % 3 == 0 {
            relink.as_str()
        } else {
            "true"
        };
        let mut args = lab.client_opts("user");
        args.extend([
            "-A".to_string(),
            "-o".to_string(),
            format!("Transport={transport}"),
            "-p".to_string(),
            server.port.to_string(),
            format!("{}@127.0.0.1", user.name),
            command.to_string(),
        ]);
        let out = run_with_input(
            Command::new(SSHQ).args(&args).env("SSH_AUTH_SOCK", &agent),
            b"",
        );
        if round % 3 == 0 {
            assert!(
                text(&out.stdout).contains("swapped"),
                "the session could not swap its agent directory: {}",
                show(&out)
            );
        }
        sessions += 1;
    }
    let _ = racer.kill();
    let _ = racer.wait();
    // Removal happens on a thread after the session: give it a moment.
    std::thread::sleep(Duration::from_millis(500));

    let after = [stat(&victim), stat(&victim_dir), stat(&victim_socket_name)];
    let contents = std::fs::read_to_string(&victim_socket_name);
    let _ = std::fs::remove_dir_all(&victim_dir);
    assert!(sessions >= 6, "only {sessions} sessions ran");
    assert_eq!(
        before,
        after,
        "a root-owned file changed owner or mode (victim, victim dir, file in it) \
         after {sessions} sessions; sshqd log:\n{}",
        server.log_text()
    );
    assert!(
        contents.is_ok(),
        "sshqd removed a root file through the user's symlink; log:\n{}",
        server.log_text()
    );
}

/// authorized_keys, item 2: a FIFO (and a link to /dev/zero) as the key
/// file refuses the login quickly, and logins that would each block a
/// worker thread on it do not stop another user's login.
#[test]
fn hostile_keys_files_refuse_without_stalling_others() {
    need_root();
    let _serial = serial();
    let lab = Lab::new();
    let fifo_user = TestUser::create("ff", &lab);
    let good = TestUser::create("ok", &lab);
    let server = start_sshqd(&lab, "");
    let keys = fifo_user.keys_file();
    std::fs::remove_file(&keys).expect("rm authorized_keys");
    nix::unistd::mkfifo(&keys, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    nix::unistd::chown(&keys, Some(nix::unistd::Uid::from_raw(fifo_user.uid)), None)
        .expect("chown");
    // More blocked logins than the server has worker threads (2 cores).
    let stalled: Vec<_> = (0..6)
        .map(|i| {
            let transport = if i % 2 == 0 { "tcp" } else { "quic" };
            let mut args = lab.client_opts("user");
            args.extend([
                "-o".to_string(),
                format!("Transport={transport}"),
                "-p".to_string(),
                server.port.to_string(),
                format!("{}@127.0.0.1", fifo_user.name),
                "true".to_string(),
            ]);
            std::thread::spawn(move || {
                run_with_timeout(Command::new(SSHQ).args(&args), b"", Duration::from_secs(40))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for transport in ["tcp", "quic"] {
        let started = Instant::now();
        assert!(
            logs_in(&lab, &server, &good.name, transport),
            "a good login over {transport} failed while FIFO logins ran; log:\n{}",
            server.log_text()
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a good login over {transport} took {:?}",
            started.elapsed()
        );
    }
    for handle in stalled {
        let out = handle.join().expect("client thread");
        assert!(
            !out.status.success(),
            "logged in with a FIFO as authorized_keys"
        );
    }
    // /dev/zero: refused at once, sshqd stays small and alive.
    std::fs::remove_file(&keys).expect("rm fifo");
    std::os::unix::fs::symlink("/dev/zero", &keys).expect("symlink");
    let started = Instant::now();
    assert!(!logs_in(&lab, &server, &fifo_user.name, "tcp"));
    assert!(started.elapsed() < Duration::from_secs(10));
    let log = server.log_text();
    assert!(
        log.contains("is not a regular file"),
        "no refusal logged for the FIFO or /dev/zero:\n{log}"
    );
    assert!(
        logs_in(&lab, &server, &good.name, "quic"),
        "sshqd did not survive"
    );
}

/// StrictModes, item 3, over both transports: a key file, ~/.ssh or home
/// that others may write refuses the login, with sshd's log line.
#[test]
fn strict_modes_refuse_writable_paths() {
    need_root();
    let _serial = serial();
    let lab = Lab::new();
    let user = TestUser::create("sm", &lab);
    let server = start_sshqd(&lab, "");
    let ssh = user.home.join(".ssh");
    for transport in ["tcp", "quic"] {
        assert!(
            logs_in(&lab, &server, &user.name, transport),
            "positive control over {transport} failed; log:\n{}",
            server.log_text()
        );
        for (path, bad, good) in [
            (user.keys_file(), 0o666, 0o600),
            (user.keys_file(), 0o620, 0o600),
            (ssh.clone(), 0o777, 0o700),
            (user.home.clone(), 0o775, 0o755),
        ] {
            set_mode(&path, bad);
            let refused = !logs_in(&lab, &server, &user.name, transport);
            set_mode(&path, good);
            assert!(
                refused,
                "{} with mode {bad:o} let a login in over {transport}",
                path.display()
            );
        }
    }
    let log = server.log_text();
    let keys = user.keys_file();
    for line in [
        format!(
            "Authentication refused: bad ownership or modes for file {}",
            keys.display()
        ),
        format!(
            "Authentication refused: bad ownership or modes for directory {}",
            ssh.display()
        ),
    ] {
        assert!(log.contains(&line), "sshqd did not log {line:?}:\n{log}");
    }
    // A key file owned by someone else (not root, not the user).
    run_ok("chown", &["nobody", &keys.display().to_string()]);
    assert!(!logs_in(&lab, &server, &user.name, "quic"));
    // StrictModes no: the same file is accepted (as in sshd).
    let relaxed = start_sshqd(&lab, "StrictModes no");
    run_ok("chown", &[&user.name, &keys.display().to_string()]);
    set_mode(&keys, 0o666);
    assert!(logs_in(&lab, &relaxed, &user.name, "tcp"));
}

/// Accounts, item 4: locked (usermod -L) and expired (chage -E 0)
/// accounts are refused with sshd's log lines, over both transports.
#[test]
fn locked_and_expired_accounts_are_refused() {
    need_root();
    let _serial = serial();
    let lab = Lab::new();
    let user = TestUser::create("ac", &lab);
    let server = start_sshqd(&lab, "");
    for transport in ["tcp", "quic"] {
        assert!(
            logs_in(&lab, &server, &user.name, transport),
            "positive control"
        );
        run_ok("usermod", &["-L", &user.name]);
        let locked = logs_in(&lab, &server, &user.name, transport);
        run_ok("usermod", &["-U", &user.name]);
        assert!(!locked, "a locked account logged in over {transport}");
        run_ok("chage", &["-E", "0", &user.name]);
        let expired = logs_in(&lab, &server, &user.name, transport);
        run_ok("chage", &["-E", "-1", &user.name]);
        assert!(!expired, "an expired account logged in over {transport}");
        assert!(
            logs_in(&lab, &server, &user.name, transport),
            "after unlocking"
        );
    }
    let log = server.log_text();
    for line in [
        format!("User {} not allowed because account is locked", user.name),
        format!("Account {} has expired", user.name),
    ] {
        assert!(log.contains(&line), "sshqd did not log {line:?}:\n{log}");
    }
}

/// Removes /etc/nologin when the test ends, however it ends.
struct NologinGuard;

impl Drop for NologinGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file("/etc/nologin");
    }
}

/// /etc/nologin, item 4: as sshd with UsePAM no, a non-root user's session
/// shows the file on stderr and exits 254.
#[test]
fn etc_nologin_keeps_users_out() {
    need_root();
    let _serial = serial();
    assert!(
        !Path::new("/etc/nologin").exists(),
        "/etc/nologin exists on this machine: this test would remove it"
    );
    let lab = Lab::new();
    let user = TestUser::create("nl", &lab);
    let server = start_sshqd(&lab, "");
    assert!(
        logs_in(&lab, &server, &user.name, "tcp"),
        "positive control"
    );
    let outs = {
        let _guard = NologinGuard;
        std::fs::write("/etc/nologin", "sshq test: down for maintenance\n").expect("/etc/nologin");
        ["tcp", "quic"].map(|transport| login(&lab, &server, &user.name, transport, "echo ok"))
    };
    for out in outs {
        assert_eq!(out.status.code(), Some(254), "{}", show(&out));
        assert!(
            text(&out.stderr).contains("down for maintenance"),
            "{}",
            show(&out)
        );
        assert!(!text(&out.stdout).contains("ok"), "{}", show(&out));
    }
    let log = server.log_text();
    let line = format!("User {} not allowed because /etc/nologin exists", user.name);
    assert!(log.contains(&line), "sshqd did not log {line:?}:\n{log}");
    assert!(
        logs_in(&lab, &server, &user.name, "quic"),
        "after /etc/nologin went away"
    );
}

/// Descriptors, item 5: a process of one session sees no pty master, socket
/// or other descriptor of sshqd, while other sessions with ptys start.
#[test]
fn sessions_inherit_no_descriptors() {
    need_root();
    let _serial = serial();
    let lab = Lab::new();
    let user = TestUser::create("fd", &lab);
    let server = start_sshqd(&lab, "");
    // Sessions with ptys, opening and closing masters meanwhile.
    let ptys: Vec<_> = (0..4)
        .map(|i| {
            let mut args = lab.client_opts("user");
            let transport = if i % 2 == 0 { "tcp" } else { "quic" };
            args.extend([
                "-tt".to_string(),
                "-o".to_string(),
                format!("Transport={transport}"),
                "-p".to_string(),
                server.port.to_string(),
                format!("{}@127.0.0.1", user.name),
                "for i in 1 2 3 4 5 6 7 8; do sleep 0.2; done".to_string(),
            ]);
            std::thread::spawn(move || {
                run_with_timeout(Command::new(SSHQ).args(&args), b"", Duration::from_secs(30))
            })
        })
        .collect();
    for round in 0..8 {
        let transport = if round % 2 == 0 { "tcp" } else { "quic" };
        // What `ls` itself holds: 0-2 and the directory it reads.
        let out = login(&lab, &server, &user.name, transport, "ls -l /proc/self/fd/");
        let listing = text(&out.stdout);
        let fds: Vec<&str> = listing.lines().filter(|l| l.contains(" -> ")).collect();
        assert!(
            !fds.is_empty(),
            "no listing over {transport}: {}",
            show(&out)
        );
        for line in &fds {
            let fd = line
                .split(" -> ")
                .next()
                .and_then(|l| l.split_whitespace().last())
                .unwrap_or("");
            let target = line.split(" -> ").nth(1).unwrap_or("");
            assert!(
                matches!(fd, "0" | "1" | "2") || target.starts_with("/proc/"),
                "the session's shell holds an extra descriptor over {transport}: {line}\n{listing}"
            );
            assert!(!line.contains("ptmx"), "a pty master leaked: {line}");
        }
    }
    for handle in ptys {
        let _ = handle.join();
    }
}

/// Item 11 (part): sshqd sets umask 022 at start, so what it creates, and
/// its sessions, never start group- or world-writable.
#[test]
fn sshqd_sets_umask_022() {
    need_root();
    let _serial = serial();
    let lab = Lab::new();
    let port = common::free_port();
    let config = lab.path("umask.conf");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nTransports tcp\n",
            lab.path("host_ed25519").display(),
            lab.path("authorized_keys").display()
        ),
    )
    .expect("config");
    let script = format!("umask 000; exec {SSHQD} -D -e -f {}", config.display());
    let mut server = common::Background::spawn("sh", &["-c".into(), script], lab.path("umask.log"));
    assert!(
        wait_until(Duration::from_secs(10), || server
            .log_text()
            .contains(&format!("listening on 127.0.0.1 port {port}."))),
        "sshqd did not start: {}",
        server.log_text()
    );
    assert!(server.alive());
    let out = lab.sshq(port, &["-o", "Transport=tcp"], &["umask"], b"");
    assert_eq!(text(&out.stdout).trim(), "0022", "{}", show(&out));
}

/// Reattach (issue 13): a session token is good only together with a login
/// as the session's own user. Another user, with their own key, who
/// somehow holds the token is refused, in the same words as for a token
/// that never existed; the owner, logged in afresh, gets the session.
#[test]
fn a_reattach_as_another_user_is_refused() {
    use sshq::reattach::wire::{Frame, Program, SUBSYSTEM};
    use sshq::reattach::{send, FrameReader};
    use sshq_core::channel::{ChannelKind, ChannelRequest, PtyRequest};
    use sshq_core::transport::{Channel, ChannelControl, Connection};

    need_root();
    let _serial = serial();
    let lab = Lab::new();
    lab.keygen("other", "ed25519", "other");
    let owner = TestUser::create("ro", &lab);
    let other = TestUser::create("rx", &lab);
    std::fs::copy(lab.path("other.pub"), other.keys_file()).expect("other's key");
    let server = start_sshqd(&lab, "");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        // The session channel as the client opens one, up to the first answer.
        async fn open<C: Connection>(conn: &C, pty: bool, first: Frame) -> Frame {
            let channel = conn
                .open_channel(ChannelKind::Session)
                .await
                .expect("channel");
            let parts = channel.split();
            if pty {
                let request = ChannelRequest::Pty(PtyRequest {
                    term: "xterm".into(),
                    ..PtyRequest::default()
                });
                assert!(parts.control.request(request, true).await.expect("pty-req"));
            }
            let subsystem = ChannelRequest::Subsystem(SUBSYSTEM.to_string());
            assert!(parts
                .control
                .request(subsystem, true)
                .await
                .expect("subsystem"));
            let mut data_out = parts.data_out;
            send(&mut data_out, &first).await.expect("first frame");
            let answer = FrameReader::new(parts.data_in).next().await;
            // Keep the channel's other halves until the answer is in.
            drop((data_out, parts.control, parts.requests));
            answer.expect("an answer").expect("a frame")
        }
        let conn = common::clients::tcp_client_as(&lab, &server, &owner.name, "user").await;
        let Frame::Session { token, .. } = open(&conn, true, Frame::Start(Program::Shell)).await
        else {
            panic!("no session started");
        };
        conn.close("bye").await;
        let resume = Frame::Resume {
            token,
            output_received: 0,
        };
        let stranger = common::clients::tcp_client_as(&lab, &server, &other.name, "other").await;
        match open(&stranger, false, resume.clone()).await {
            Frame::Refused(reason) => assert!(reason.contains("no such session"), "{reason}"),
            other => panic!("another user took the session over: {other:?}"),
        }
        let owner_again = common::clients::tcp_client_as(&lab, &server, &owner.name, "user").await;
        let answer = open(&owner_again, false, resume).await;
        assert!(matches!(answer, Frame::Resumed { .. }), "{answer:?}");
    });
    assert!(server
        .log_text()
        .contains("refused a reattach to a session of another user"));
}
