//! UsePAM's session stage under real PAM: the spawner runs session
//! programs through sshqd's PAM session helper (this very build's sshqd),
//! with a PAM service of the test's own in /etc/pam.d: pam_env for the
//! environment, pam_limits for a limit, pam_exec writing a line when the
//! session opens and when it closes. Needs root (PAM's session modules,
//! /etc/pam.d, the switch to nobody). The last tests run a real sshqd
//! with `UsePAM yes` and a real sshq over both transports, a pty session
//! over QUIC going through a session holder (reattach).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sshq::server::process::{self, ExitStatus, Program, SessionUser, SpawnRequest};
use sshq_core::channel::{PtyRequest, WindowSize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::time::timeout;

const SSHQD: &str = env!("CARGO_BIN_EXE_sshqd");
const LIMIT: Duration = Duration::from_secs(30);
const CONNECTION: &str = "192.0.2.1 50022 192.0.2.2 22";
/// The open-files limit pam_limits gives nobody in these sessions.
const NOFILE_SOFT: u64 = 1234;

/// A PAM service in /etc/pam.d and the files its modules use, all
/// removed on drop.
struct PamService {
    name: String,
    file: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for PamService {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

impl PamService {
    /// pam_env, pam_limits and pam_exec (markers) in the session stack,
    /// then `extra_session` lines.
    fn new(extra_session: &str) -> PamService {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().expect("temporary directory");
        let d = dir.path();
        std::fs::write(
            d.join("pam_env.conf"),
            "SSHQ_PAM_VAR DEFAULT=from-pam\n\
             PATH OVERRIDE=/usr/local/bin:/usr/bin:/bin:/sshq-pam\n\
             SSH_CONNECTION DEFAULT=forged\n",
        )
        .unwrap();
        std::fs::write(
            d.join("limits.conf"),
            // root for the sshqd tests, which log in as whoever runs them.
            format!(
                "nobody soft nofile {NOFILE_SOFT}\nnobody hard nofile 1500\n\
                 root soft nofile {NOFILE_SOFT}\nroot hard nofile 1500\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("mark.sh"),
            format!(
                "echo \"$PAM_TYPE user=$PAM_USER tty=$PAM_TTY rhost=$PAM_RHOST\" >> {}\n",
                d.join("markers").display()
            ),
        )
        .unwrap();
        // The program writes its own marker as nobody.
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(d.join("markers"), "").unwrap();
        std::fs::set_permissions(d.join("markers"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        let name = format!(
            "sshq-session-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let file = Path::new("/etc/pam.d").join(&name);
        std::fs::write(
            &file,
            format!(
                "auth required pam_permit.so\n\
                 account required pam_permit.so\n\
                 session required pam_env.so conffile={d}/pam_env.conf readenv=0\n\
                 session required pam_limits.so conf={d}/limits.conf\n\
                 session required pam_exec.so /bin/sh {d}/mark.sh\n\
                 {extra_session}",
                d = d.display()
            ),
        )
        .expect("write the PAM service (needs root)");
        PamService { name, file, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn markers(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("markers"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn request(&self, command: &str, pty: bool) -> SpawnRequest {
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .expect("a nobody user");
        SpawnRequest {
            user: SessionUser {
                name: nobody.name,
                uid: nobody.uid.as_raw(),
                gid: nobody.gid.as_raw(),
                home: "/".into(),
                shell: "/bin/sh".into(),
            },
            program: Program::Command(command.as_bytes().to_vec()),
            pty: pty.then(|| PtyRequest {
                term: "xterm".into(),
                size: WindowSize {
                    cols: 80,
                    rows: 24,
                    ..Default::default()
                },
                ..PtyRequest::default()
            }),
            env: vec![("LC_SSHQ_TEST".into(), "client".into())],
            user_env: Vec::new(),
            ssh_connection: CONNECTION.into(),
            auth_sock: None,
            pam_service: Some(self.name.clone()),
        }
    }
}

fn setup() -> bool {
    if !sshq_test_kit::needs_root("PAM session modules, /etc/pam.d and the switch to nobody") {
        return false;
    }
    process_helper();
    true
}

/// The spawner runs /proc/self/exe as the helper, which here is the test
/// binary: name the sshqd of this build instead.
fn process_helper() {
    sshq::server::pam_session::use_helper_program(PathBuf::from(SSHQD));
}

fn open_files_limit() -> (u64, u64) {
    let mut limit = nix::libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    assert_eq!(
        unsafe { nix::libc::getrlimit(nix::libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    (limit.rlim_cur, limit.rlim_max)
}

/// Runs a pipe session to the end.
async fn run_pipes(req: SpawnRequest) -> (String, String, ExitStatus) {
    let mut proc = tokio::task::spawn_blocking(move || process::spawn(req))
        .await
        .unwrap()
        .expect("spawn");
    let mut stdout = proc.take_stdout().unwrap();
    let mut stderr = proc.take_stderr().unwrap();
    drop(proc.take_stdin());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (a, b) = timeout(LIMIT, async {
        tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err))
    })
    .await
    .expect("output in time");
    a.unwrap();
    b.unwrap();
    let status = timeout(LIMIT, proc.wait())
        .await
        .expect("exit in time")
        .unwrap();
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        status,
    )
}

async fn run_pty(req: SpawnRequest) -> (String, ExitStatus) {
    let mut proc = tokio::task::spawn_blocking(move || process::spawn(req))
        .await
        .unwrap()
        .expect("spawn");
    let mut master = proc.take_stdout().unwrap();
    let mut out = Vec::new();
    timeout(LIMIT, master.read_to_end(&mut out))
        .await
        .expect("output in time")
        .unwrap();
    let status = timeout(LIMIT, proc.wait())
        .await
        .expect("exit in time")
        .unwrap();
    (String::from_utf8_lossy(&out).into_owned(), status)
}

fn line<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} line in {out:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_runs_in_the_pam_session_without_a_pty() {
    if !setup() {
        return;
    }
    let pam = PamService::new("");
    let ours = open_files_limit();
    let command = format!(
        "echo var=$SSHQ_PAM_VAR; echo path=$PATH; echo conn=$SSH_CONNECTION; \
         echo client=$LC_SSHQ_TEST; echo mail=${{MAIL-unset}}; echo nofile=$(ulimit -n); \
         echo uid=$(id -u); echo pwd=$(pwd); echo program >> {}; exit 3",
        pam.path("markers").display()
    );
    let (out, err, status) = run_pipes(pam.request(&command, false)).await;
    assert_eq!(status, ExitStatus::Code(3), "out {out:?} err {err:?}");
    assert!(err.is_empty(), "{err:?}");
    assert_eq!(line(&out, "var="), "from-pam");
    // PAM's replaces sshd's PATH; sshd's SSH_CONNECTION wins over PAM's.
    assert_eq!(
        line(&out, "path="),
        "/usr/local/bin:/usr/bin:/bin:/sshq-pam"
    );
    assert_eq!(line(&out, "conn="), CONNECTION);
    assert_eq!(line(&out, "client="), "client");
    // sshd leaves MAIL to pam_mail under UsePAM.
    assert_eq!(line(&out, "mail="), "unset");
    assert_eq!(line(&out, "nofile="), NOFILE_SOFT.to_string());
    assert_eq!(line(&out, "uid="), "65534");
    assert_eq!(line(&out, "pwd="), "/");
    // Opened before the program ran, closed after it ended (the status
    // arrives only once the helper closed the session).
    assert_eq!(
        pam.markers(),
        [
            "open_session user=nobody tty=ssh rhost=192.0.2.1",
            "program",
            "close_session user=nobody tty=ssh rhost=192.0.2.1",
        ]
    );
    // pam_limits changed the helper, never this process.
    assert_eq!(open_files_limit(), ours);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pty_session_runs_in_the_pam_session_and_its_signal_death_is_reported() {
    if !setup() {
        return;
    }
    let pam = PamService::new("");
    let ours = open_files_limit();
    let command =
        "echo var=$SSHQ_PAM_VAR; echo nofile=$(ulimit -n); echo tty=$(tty); kill -TERM $$";
    let (out, status) = run_pty(pam.request(command, true)).await;
    assert_eq!(
        status,
        ExitStatus::Signal {
            name: "TERM".into(),
            core_dumped: false
        },
        "{out:?}"
    );
    assert_eq!(line(&out, "var="), "from-pam");
    assert_eq!(line(&out, "nofile="), NOFILE_SOFT.to_string());
    let tty = line(&out, "tty=").to_owned();
    assert!(tty.starts_with("/dev/pts/"), "{out:?}");
    // PAM_TTY is the session's terminal.
    assert_eq!(
        pam.markers(),
        [
            format!("open_session user=nobody tty={tty} rhost=192.0.2.1"),
            format!("close_session user=nobody tty={tty} rhost=192.0.2.1"),
        ]
    );
    assert_eq!(open_files_limit(), ours);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pty_session_exit_code_comes_through() {
    if !setup() {
        return;
    }
    let pam = PamService::new("");
    let (out, status) = run_pty(pam.request("echo done; exit 7", true)).await;
    assert_eq!(status, ExitStatus::Code(7), "{out:?}");
    assert_eq!(line(&out, "done"), "");
    assert_eq!(pam.markers().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_signal_reaches_the_program_once_and_the_session_still_closes() {
    if !setup() {
        return;
    }
    let pam = PamService::new("");
    // Counts the TERMs it gets: a second copy (the helper passing on one
    // the program already had) would arrive within the second it waits.
    let command = "n=0; trap 'n=$((n+1))' TERM; echo ready; \
                   while [ $n -eq 0 ]; do sleep 0.1; done; sleep 1; echo got=$n; exit 5";
    let req = pam.request(command, false);
    let mut proc = tokio::task::spawn_blocking(move || process::spawn(req))
        .await
        .unwrap()
        .expect("spawn");
    let mut stdout = BufReader::new(proc.take_stdout().unwrap());
    let mut first = String::new();
    timeout(LIMIT, stdout.read_line(&mut first))
        .await
        .expect("ready in time")
        .unwrap();
    assert_eq!(first, "ready\n");
    assert!(pam.markers()[0].starts_with("open_session"));
    proc.signal("TERM").expect("signal the group");
    let mut rest = String::new();
    timeout(LIMIT, stdout.read_to_string(&mut rest))
        .await
        .expect("output in time")
        .unwrap();
    let status = timeout(LIMIT, proc.wait())
        .await
        .expect("exit in time")
        .unwrap();
    assert_eq!(status, ExitStatus::Code(5), "{rest:?}");
    assert_eq!(line(&rest, "got="), "1");
    assert_eq!(pam.markers().len(), 2, "{:?}", pam.markers());
    assert!(pam.markers()[1].starts_with("close_session"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_pam_session_runs_nothing_and_ends_254_with_pams_message() {
    if !setup() {
        return;
    }
    let pam = PamService::new(
        "session required pam_echo.so Sessions are closed for maintenance\n\
         session required pam_deny.so\n",
    );
    let ran = pam.path("ran");
    let command = format!("touch {}", ran.display());
    let (out, err, status) = run_pipes(pam.request(&command, false)).await;
    assert_eq!(status, ExitStatus::Code(254), "out {out:?} err {err:?}");
    assert!(
        out.contains("Sessions are closed for maintenance"),
        "{out:?}"
    );
    assert!(!ran.exists(), "the program must not run");
    // pam_exec ran on open before pam_deny refused; nothing was opened to
    // close.
    assert!(pam
        .markers()
        .iter()
        .all(|m| !m.starts_with("close_session")));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_pam_messages_the_user_hears_why_and_what_to_do() {
    if !setup() {
        return;
    }
    let pam = PamService::new("session required pam_deny.so\n");
    let (out, err, status) = run_pipes(pam.request("echo ran", false)).await;
    assert_eq!(status, ExitStatus::Code(254), "out {out:?} err {err:?}");
    assert!(!out.contains("ran"), "{out:?}");
    assert!(err.contains("could not open a PAM session"), "{err:?}");
    assert!(err.contains("administrator"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_session_is_hung_up_and_its_pam_session_still_closes() {
    if !setup() {
        return;
    }
    let pam = PamService::new("");
    let req = pam.request("echo ready; sleep 30", true);
    let mut proc = tokio::task::spawn_blocking(move || process::spawn(req))
        .await
        .unwrap()
        .expect("spawn");
    let mut master = BufReader::new(proc.take_stdout().unwrap());
    let mut first = String::new();
    timeout(LIMIT, master.read_line(&mut first))
        .await
        .expect("ready in time")
        .unwrap();
    assert_eq!(first.trim_end(), "ready");
    // What sshqd does when the channel goes away: SIGHUP to the group.
    drop(proc);
    let deadline = tokio::time::Instant::now() + LIMIT;
    while pam.markers().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let markers = pam.markers();
    assert_eq!(markers.len(), 2, "{markers:?}");
    assert!(markers[1].starts_with("close_session"), "{markers:?}");
}

/// sshqd's "Max open files" line in /proc.
fn daemon_open_files_limit(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .expect("sshqd's limits")
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("an open files line")
        .to_owned()
}

#[test]
fn sshqd_with_use_pam_runs_commands_in_a_pam_session_over_both_transports() {
    if !setup() {
        return;
    }
    let pam = PamService::new("");
    let lab = common::Lab::new();
    let config = format!("UsePAM yes\nPAMServiceName {}", pam.name);
    let server = lab.start_sshqd_on(&config, common::Listeners::Both);
    let before = daemon_open_files_limit(server.pid());
    for (n, transport) in ["tcp", "quic"].into_iter().enumerate() {
        let option = format!("Transport={transport}");
        let args = lab.client_args(
            "user",
            "accept-new",
            server.port,
            &["-o", &option],
            &["echo var=$SSHQ_PAM_VAR nofile=$(ulimit -n); exit 3"],
        );
        let out = std::process::Command::new(common::SSHQ)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("sshq");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{transport}: {stdout} {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log_text()
        );
        assert!(
            stdout.contains(&format!("var=from-pam nofile={NOFILE_SOFT}")),
            "{transport}: {stdout}"
        );
        // The session was closed before the exit status went out.
        let markers = pam.markers();
        assert_eq!(markers.len(), 2 * (n + 1), "{transport}: {markers:?}");
        assert!(markers[2 * n].starts_with("open_session"), "{markers:?}");
        assert!(
            markers[2 * n + 1].starts_with("close_session"),
            "{markers:?}"
        );
        assert!(
            markers[2 * n].ends_with("tty=ssh rhost=127.0.0.1"),
            "{markers:?}"
        );
    }
    assert_eq!(daemon_open_files_limit(server.pid()), before);
}

#[test]
fn sshqd_with_use_pam_runs_a_held_pty_shell_in_a_pam_session() {
    if !setup() {
        return;
    }
    let pam = PamService::new("");
    let lab = common::Lab::new();
    let config = format!("UsePAM yes\nPAMServiceName {}", pam.name);
    let server = lab.start_sshqd_on(&config, common::Listeners::Both);
    let before = daemon_open_files_limit(server.pid());
    let client = common::pty_sshq(&lab, &server, "quic", &[]);
    common::shell_ready(&client, &server);
    // A reattachable session: its program runs under a session holder.
    assert!(!lab.holders().is_empty(), "{}", server.log_text());
    client.type_keys("echo var=$SSHQ_PAM_VAR nofile=$(ulimit -n) tty=$(tty)\r");
    let expected = format!("var=from-pam nofile={NOFILE_SOFT} tty=/dev/pts/");
    assert!(
        client.wait_for(&expected, LIMIT),
        "{}\n{}",
        client.output(),
        server.log_text()
    );
    let markers = pam.markers();
    assert_eq!(markers.len(), 1, "{markers:?}");
    assert!(
        markers[0].starts_with("open_session user=root tty=/dev/pts/"),
        "{markers:?}"
    );
    client.type_keys("exit\r");
    let deadline = std::time::Instant::now() + LIMIT;
    while pam.markers().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let markers = pam.markers();
    assert!(
        markers.len() == 2 && markers[1].starts_with("close_session"),
        "{markers:?}"
    );
    assert_eq!(daemon_open_files_limit(server.pid()), before);
}
