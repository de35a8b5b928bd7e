//! Real processes and real ptys.

use super::*;

use std::ffi::CString;
use std::time::Duration;

use nix::unistd::Gid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);
const CONNECTION: &str = "192.0.2.1 50022 192.0.2.2 22";

/// Ourselves, with a predictable shell and a home that exists (so that no
/// chdir message mixes into the output when run as e.g. nobody).
fn me() -> SessionUser {
    let user = unistd::User::from_uid(unistd::geteuid())
        .expect("passwd lookup")
        .expect("our own passwd entry");
    SessionUser {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        home: if user.dir.is_dir() {
            user.dir
        } else {
            std::env::temp_dir()
        },
        shell: PathBuf::from("/bin/sh"),
    }
}

fn request(program: Program, pty: Option<PtyRequest>) -> SpawnRequest {
    SpawnRequest {
        user: me(),
        program,
        pty,
        env: vec![("LC_SSHQ_TEST".into(), "hello".into())],
        user_env: Vec::new(),
        ssh_connection: CONNECTION.into(),
        auth_sock: None,
        pam_service: None,
    }
}

fn command(cmd: &str) -> Program {
    Program::Command(cmd.as_bytes().to_vec())
}

fn pty(cols: u32, rows: u32) -> PtyRequest {
    PtyRequest {
        term: "xterm-256color".into(),
        size: sshq_core::channel::WindowSize {
            cols,
            rows,
            ..Default::default()
        },
        ..PtyRequest::default()
    }
}

/// Runs a pipe session to the end: stdout, stderr, status.
async fn run(req: SpawnRequest) -> (Vec<u8>, Vec<u8>, ExitStatus) {
    let mut proc = spawn(req).expect("spawn");
    let mut stdout = proc.take_stdout().expect("stdout");
    let mut stderr = proc.take_stderr().expect("stderr");
    drop(proc.take_stdin());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (a, b) = timeout(LIMIT, async {
        tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err))
    })
    .await
    .expect("output in time");
    a.expect("read stdout");
    b.expect("read stderr");
    let status = timeout(LIMIT, proc.wait())
        .await
        .expect("exit in time")
        .expect("wait");
    (out, err, status)
}

/// Runs a pty session to the end: terminal output and status.
async fn run_pty(req: SpawnRequest) -> (String, ExitStatus) {
    let mut proc = spawn(req).expect("spawn");
    assert!(proc.take_stderr().is_none(), "stderr goes to the pty");
    let mut master = proc.take_stdout().expect("master");
    let mut out = Vec::new();
    timeout(LIMIT, master.read_to_end(&mut out))
        .await
        .expect("output in time")
        .expect("read master");
    let status = timeout(LIMIT, proc.wait())
        .await
        .expect("exit in time")
        .expect("wait");
    (String::from_utf8_lossy(&out).into_owned(), status)
}

/// Gone, or a zombie waiting for an init that may not reap in a container.
fn pid_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

#[tokio::test]
async fn exit_codes() {
    for (cmd, code) in [("true", 0), ("false", 1), ("exit 42", 42)] {
        let (_, _, status) = run(request(command(cmd), None)).await;
        assert_eq!(status, ExitStatus::Code(code), "{cmd}");
    }
}

#[tokio::test]
async fn stdout_and_stderr_are_separate() {
    let (out, err, status) = run(request(command("echo out; echo err >&2; exit 3"), None)).await;
    assert_eq!(out, b"out\n");
    assert_eq!(err, b"err\n");
    assert_eq!(status, ExitStatus::Code(3));
}

#[tokio::test]
async fn sixteen_mib_round_trip_through_cat() {
    let mut data = vec![0u8; 16 << 20];
    let mut x: u32 = 0x1234_5678;
    for b in data.iter_mut() {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *b = (x >> 24) as u8;
    }
    let mut proc = spawn(request(command("cat"), None)).expect("spawn");
    let mut stdin = proc.take_stdin().expect("stdin");
    let mut stdout = proc.take_stdout().expect("stdout");
    let expected = data.clone();
    let writer = tokio::spawn(async move {
        stdin.write_all(&data).await?;
        // EOF for cat.
        stdin.shutdown().await?;
        // Writing after shutdown is an error, not a silent loss.
        assert!(stdin.write_all(b"late").await.is_err());
        io::Result::Ok(())
    });
    let mut out = Vec::with_capacity(expected.len());
    timeout(LIMIT, stdout.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("read");
    writer.await.expect("writer task").expect("write");
    assert_eq!(out.len(), expected.len());
    assert!(out == expected, "bytes differ");
    assert_eq!(proc.wait().await.expect("wait"), ExitStatus::Code(0));
}

#[tokio::test]
async fn non_utf8_command_bytes() {
    let cmd = b"printf '%s' '\xff\xfe\x80ok'".to_vec();
    let (out, _, status) = run(request(Program::Command(cmd), None)).await;
    assert_eq!(out, b"\xff\xfe\x80ok");
    assert_eq!(status, ExitStatus::Code(0));
}

#[tokio::test]
async fn nul_in_command_is_refused() {
    let err = spawn(request(Program::Command(b"echo a\0b".to_vec()), None)).expect_err("NUL");
    assert!(matches!(err, SpawnError::NulByte { .. }), "{err}");
}

#[tokio::test]
async fn login_shell_reads_commands_from_stdin() {
    let mut proc = spawn(request(Program::Shell, None)).expect("spawn");
    let mut stdin = proc.take_stdin().expect("stdin");
    let mut stdout = proc.take_stdout().expect("stdout");
    stdin
        .write_all(b"echo \"$0\"; pwd; exit 7\n")
        .await
        .expect("write");
    stdin.shutdown().await.expect("shutdown");
    let mut out = Vec::new();
    timeout(LIMIT, stdout.read_to_end(&mut out))
        .await
        .expect("in time")
        .expect("read");
    let home = me().home;
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("-sh\n{}\n", home.display())
    );
    assert_eq!(proc.wait().await.expect("wait"), ExitStatus::Code(7));
}

#[tokio::test]
async fn subsystem_runs_through_the_shell_and_refuses_signals() {
    let mut proc = spawn(request(
        Program::Subsystem("echo sub; exec sleep 5".into()),
        None,
    ))
    .expect("spawn");
    assert!(matches!(proc.signal("TERM"), Err(SignalError::Subsystem)));
    let mut line = String::new();
    let mut stdout = BufReader::new(proc.take_stdout().expect("stdout"));
    timeout(LIMIT, stdout.read_line(&mut line))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(line, "sub\n");
    proc.set_hangup_grace(Duration::from_millis(100));
}

#[tokio::test]
async fn missing_shell_is_an_exec_error() {
    let mut req = request(command("true"), None);
    req.user.shell = PathBuf::from("/nonexistent/shell");
    let err = spawn(req).expect_err("no such shell");
    assert!(matches!(err, SpawnError::Exec { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/shell"), "{err}");
}

#[tokio::test]
async fn working_directory_is_home_or_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut req = request(command("pwd"), None);
    req.user.home = dir.path().to_path_buf();
    let (out, err, _) = run(req).await;
    assert_eq!(
        String::from_utf8_lossy(&out).trim_end(),
        dir.path().to_string_lossy()
    );
    assert!(err.is_empty());

    let mut req = request(command("pwd"), None);
    req.user.home = PathBuf::from("/nonexistent/home");
    let (out, err, status) = run(req).await;
    assert_eq!(out, b"/\n");
    assert_eq!(
        String::from_utf8_lossy(&err),
        "Could not chdir to home directory /nonexistent/home: No such file or directory\n"
    );
    assert_eq!(status, ExitStatus::Code(0));
}

#[tokio::test]
async fn environment_without_pty() {
    let mut req = request(command("env"), None);
    req.auth_sock = Some(PathBuf::from("/tmp/agent.sock"));
    // A client value for a variable we set must not win.
    req.env.push(("USER".into(), "mallory".into()));
    let (out, _, _) = run(req).await;
    let out = String::from_utf8_lossy(&out);
    let vars: Vec<&str> = out.lines().collect();
    let user = me();
    let path = if user.uid == 0 { ROOT_PATH } else { USER_PATH };
    for expected in [
        format!("USER={}", user.name),
        format!("LOGNAME={}", user.name),
        format!("HOME={}", user.home.display()),
        format!("PATH={path}"),
        format!("MAIL=/var/mail/{}", user.name),
        "SHELL=/bin/sh".to_owned(),
        format!("SSH_CONNECTION={CONNECTION}"),
        "SSH_CLIENT=192.0.2.1 50022 22".to_owned(),
        "SSH_AUTH_SOCK=/tmp/agent.sock".to_owned(),
        "LC_SSHQ_TEST=hello".to_owned(),
    ] {
        assert!(
            vars.contains(&expected.as_str()),
            "missing {expected} in:\n{out}"
        );
    }
    assert!(!vars.iter().any(|v| v.starts_with("TERM=")), "{out}");
    assert!(!vars.iter().any(|v| v.starts_with("SSH_TTY=")), "{out}");
    assert!(!vars.contains(&"USER=mallory"), "{out}");
    // Our own environment does not leak in.
    if std::env::var_os("CARGO_MANIFEST_DIR").is_some() {
        assert!(!out.contains("CARGO_MANIFEST_DIR="), "{out}");
    }
}

#[tokio::test]
async fn pty_tty_size_and_environment() {
    let (out, status) = run_pty(request(command("tty; stty size; env"), Some(pty(100, 30)))).await;
    assert_eq!(status, ExitStatus::Code(0));
    let lines: Vec<&str> = out.split("\r\n").collect();
    assert!(lines[0].starts_with("/dev/pts/"), "{out:?}");
    assert_eq!(lines[1], "30 100", "{out:?}");
    assert!(lines.contains(&"TERM=xterm-256color"), "{out:?}");
    assert!(
        lines.contains(&format!("SSH_TTY={}", lines[0]).as_str()),
        "{out:?}"
    );
    assert!(
        lines.contains(&format!("SSH_CONNECTION={CONNECTION}").as_str()),
        "{out:?}"
    );
    assert!(
        lines.contains(&format!("USER={}", me().name).as_str()),
        "{out:?}"
    );
}

#[tokio::test]
async fn pty_terminal_modes_are_applied() {
    let mut req = pty(80, 24);
    // ECHO off, ONLCR off, VINTR = ^B.
    req.modes = vec![(53, 0), (72, 0), (1, 2)];
    let (out, _) = run_pty(request(command("stty -a"), Some(req))).await;
    // Without ONLCR, lines end in a bare "\n".
    assert!(!out.contains('\r'), "{out:?}");
    assert!(out.contains("intr = ^B;"), "{out:?}");
    assert!(out.split_whitespace().any(|w| w == "-echo"), "{out:?}");
    assert!(out.split_whitespace().any(|w| w == "-onlcr"), "{out:?}");
}

#[tokio::test]
async fn pty_window_change_is_seen() {
    let mut proc = spawn(request(
        command("stty size; read line; stty size"),
        Some(pty(80, 24)),
    ))
    .expect("spawn");
    let mut stdin = proc.take_stdin().expect("master writer");
    let mut master = BufReader::new(proc.take_stdout().expect("master reader"));
    let mut line = String::new();
    timeout(LIMIT, master.read_line(&mut line))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(line, "24 80\r\n");
    proc.resize(132, 50, 0, 0).expect("resize");
    stdin.write_all(b"go\n").await.expect("write");
    let mut rest = String::new();
    timeout(LIMIT, master.read_to_string(&mut rest))
        .await
        .expect("in time")
        .expect("read");
    assert!(rest.ends_with("50 132\r\n"), "{rest:?}");
    assert_eq!(proc.wait().await.expect("wait"), ExitStatus::Code(0));
    assert_eq!(
        proc.tty_path().map(|p| p.starts_with("/dev/pts")),
        Some(true)
    );
}

#[tokio::test]
async fn resize_without_pty_does_nothing() {
    let proc = spawn(request(command("true"), None)).expect("spawn");
    proc.resize(10, 10, 0, 0).expect("no-op");
    assert!(proc.tty_path().is_none());
}

#[tokio::test]
async fn signals_by_ssh_name() {
    for (name, with_pty) in [
        ("TERM", false),
        ("KILL", false),
        ("INT", true),
        ("HUP", true),
    ] {
        let req = request(command("sleep 100"), with_pty.then(|| pty(80, 24)));
        let proc = spawn(req).expect("spawn");
        // Let the shell get going; signals before exec are fine too, but
        // this exercises the usual case.
        tokio::time::sleep(Duration::from_millis(100)).await;
        proc.signal(name).expect("signal");
        let status = timeout(LIMIT, proc.wait())
            .await
            .expect("in time")
            .expect("wait");
        assert_eq!(
            status,
            ExitStatus::Signal {
                name: name.into(),
                core_dumped: false
            }
        );
        assert!(matches!(proc.signal(name), Err(SignalError::Exited)));
    }
}

#[tokio::test]
async fn unknown_signal_is_refused() {
    let mut proc = spawn(request(command("sleep 100"), None)).expect("spawn");
    proc.set_hangup_grace(Duration::from_millis(100));
    assert!(matches!(
        proc.signal("STOP"),
        Err(SignalError::Unsupported(_))
    ));
    assert!(matches!(
        proc.signal("SIGTERM"),
        Err(SignalError::Unsupported(_))
    ));
    assert!(proc.try_exit_status().is_none());
}

#[test]
fn unnamed_signals_use_the_openssh_name() {
    assert_eq!(signal_ssh_name(Signal::SIGWINCH as i32), "SIG@openssh.com");
    assert_eq!(signal_ssh_name(Signal::SIGSEGV as i32), "SEGV");
}

/// Reads a line holding a pid.
async fn read_pid<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> u32 {
    let mut line = String::new();
    timeout(LIMIT, reader.read_line(&mut line))
        .await
        .expect("in time")
        .expect("read");
    line.trim().parse().expect("a pid")
}

async fn wait_gone(pids: &[u32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if pids.iter().all(|&p| pid_gone(p)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn drop_kills_the_whole_group_even_when_it_ignores_hup() {
    // Both the shell and its background child ignore SIGHUP, so only the
    // SIGKILL after the grace period ends them.
    let cmd = "trap '' HUP; sleep 1000 & echo $$; echo $!; wait";
    let mut proc = spawn(request(command(cmd), None)).expect("spawn");
    proc.set_hangup_grace(Duration::from_millis(300));
    let mut stdout = BufReader::new(proc.take_stdout().expect("stdout"));
    let shell = read_pid(&mut stdout).await;
    let grandchild = read_pid(&mut stdout).await;
    assert_eq!(shell, proc.id());
    drop(proc);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !pid_gone(grandchild),
        "SIGKILL came before the grace period ended"
    );
    assert!(wait_gone(&[shell, grandchild], Duration::from_secs(10)).await);
}

#[tokio::test]
async fn drop_sends_hup_first() {
    let cmd = "trap 'echo got-hup; exit 0' HUP; echo ready; sleep 1000 & wait";
    let mut proc = spawn(request(command(cmd), None)).expect("spawn");
    proc.set_hangup_grace(Duration::from_secs(5));
    let pid = proc.id();
    let mut stdout = BufReader::new(proc.take_stdout().expect("stdout"));
    let mut line = String::new();
    timeout(LIMIT, stdout.read_line(&mut line))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(line, "ready\n");
    drop(proc);
    let mut rest = String::new();
    timeout(LIMIT, stdout.read_to_string(&mut rest))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(rest, "got-hup\n");
    assert!(
        wait_gone(&[pid], Duration::from_secs(4)).await,
        "gone well before SIGKILL"
    );
}

#[tokio::test]
async fn drop_hangs_up_a_pty_session() {
    let cmd = "echo $$; exec sleep 1000";
    let mut proc = spawn(request(command(cmd), Some(pty(80, 24)))).expect("spawn");
    let mut master = BufReader::new(proc.take_stdout().expect("master"));
    let pid = read_pid(&mut master).await;
    drop(proc);
    assert!(wait_gone(&[pid], Duration::from_secs(10)).await);
}

#[tokio::test]
async fn switches_to_another_user_when_root() {
    if !unistd::geteuid().is_root() {
        println!("skipped: switching users needs root");
        return;
    }
    let Some(nobody) = SessionUser::lookup("nobody").expect("lookup") else {
        println!("skipped: no user `nobody` here");
        return;
    };
    assert!(SessionUser::lookup("no-such-user-sshq")
        .expect("lookup")
        .is_none());
    let expected_groups = {
        let name = CString::new(nobody.name.clone()).expect("name");
        let mut gids: Vec<u32> = unistd::getgrouplist(&name, Gid::from_raw(nobody.gid))
            .expect("groups")
            .into_iter()
            .map(Gid::as_raw)
            .collect();
        gids.sort_unstable();
        gids.dedup();
        gids
    };
    // nobody's shell is usually nologin; keep its ids and home.
    let user = SessionUser {
        shell: PathBuf::from("/bin/sh"),
        ..nobody.clone()
    };
    let mut req = request(command("id -u; id -g; id -G; pwd"), None);
    req.user = user.clone();
    let (out, err, status) = run(req).await;
    assert_eq!(status, ExitStatus::Code(0));
    let out = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], nobody.uid.to_string());
    assert_eq!(lines[1], nobody.gid.to_string());
    let mut groups: Vec<u32> = lines[2]
        .split_whitespace()
        .map(|g| g.parse().expect("gid"))
        .collect();
    groups.sort_unstable();
    groups.dedup();
    assert_eq!(groups, expected_groups);
    if !nobody.home.is_dir() {
        assert_eq!(lines[3], "/");
        assert!(String::from_utf8_lossy(&err).starts_with("Could not chdir to home directory"));
    }

    // The terminal belongs to the user, and the user is not root's PATH.
    let mut req = request(
        command("stat -c %u \"$(tty)\"; echo \"$PATH\""),
        Some(pty(80, 24)),
    );
    req.user = user;
    let (out, status) = run_pty(req).await;
    assert_eq!(status, ExitStatus::Code(0));
    assert!(
        out.contains(&format!("\r\n{}\r\n", nobody.uid))
            || out.starts_with(&format!("{}\r\n", nobody.uid)),
        "{out:?}"
    );
    assert!(out.contains(USER_PATH), "{out:?}");
}

#[tokio::test]
async fn failed_user_switch_says_which_step() {
    if !unistd::geteuid().is_root() {
        println!("skipped: switching users needs root");
        return;
    }
    // (uid_t)-1 means "no change" to the kernel and is refused with EINVAL,
    // after the groups and the gid were set fine.
    let mut req = request(command("true"), None);
    req.user.name = "sshq-invalid".into();
    req.user.uid = u32::MAX;
    req.user.gid = 65534;
    let err = spawn(req).expect_err("invalid uid");
    assert!(
        matches!(&err, SpawnError::SwitchUser { step: "setuid", user, .. } if user == "sshq-invalid"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("cannot switch to user sshq-invalid: setuid failed"),
        "{err}"
    );
}

#[test]
fn runtime_shutdown_still_hangs_up() {
    let build = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    // Dropped, then the runtime ends before the supervisor runs again.
    let runtime = build();
    let pid = runtime.block_on(async {
        let proc = spawn(request(command("sleep 100"), None)).expect("spawn");
        proc.id()
    });
    drop(runtime);
    // Still owned when the runtime ends (the server exiting).
    let runtime = build();
    let proc =
        runtime.block_on(async { spawn(request(command("sleep 100"), None)).expect("spawn") });
    let owned = proc.id();
    drop(runtime);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(pid_gone(pid) && pid_gone(owned)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(pid_gone(pid), "dropped session survived the runtime");
    assert!(pid_gone(owned), "owned session survived the runtime");
    drop(proc);
}
