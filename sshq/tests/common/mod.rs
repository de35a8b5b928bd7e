//! A small lab for the integration tests: keys made by the real ssh-keygen,
//! a real OpenSSH sshd and a real sshqd on free loopback ports, each with
//! its own configuration in a temporary directory, stopped when dropped.

#![allow(dead_code)] // each test binary uses its own part of the lab

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const SSHQ: &str = env!("CARGO_BIN_EXE_sshq");
pub const SSHQD: &str = env!("CARGO_BIN_EXE_sshqd");

/// Pre-authentication limits for lab servers: every test client comes from
/// 127.0.0.1, and some tests start dozens of clients at once, so sshqd's
/// defaults (MaxStartups 10:30:100, at most 5 unauthenticated connections
/// per source, PerSourcePenalties after failed or abandoned logins) would
/// make tests that run many clients, or refused ones, refuse each other.
/// Tests of those limits set them in `extra` (tests/hardening_preauth.rs).
pub const LAB_PREAUTH_LIMITS: &str =
    "MaxStartups 256\nPerSourceMaxStartups none\nPerSourcePenalties no\n";

/// How long any one client or tool may run before the test gives up on it
/// (so that a hung client fails the test instead of hanging it).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// A running server, killed on drop.
pub struct Server {
    pub port: u16,
    child: Child,
    pub log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The server process, e.g. to stop it (SIGSTOP) and play a dead peer.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal the server");
    }

    /// The server's exit status, once it exits within `limit`.
    pub fn exit_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, Instant::now() + limit)
    }
}

/// The listeners a server must have opened before a test uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listeners {
    /// TCP only (OpenSSH's sshd, or sshqd's TCP side).
    Tcp,
    /// sshqd's QUIC endpoint only (`Transports quic`).
    Quic,
    /// Both, on the same port number.
    Both,
}

impl Listeners {
    /// Whether `log` says the server listens on what is wanted on `port`
    /// (and, for TCP, a connection succeeds).
    fn ready(self, log: &str, port: u16) -> bool {
        // "Server listening on 127.0.0.1 port N." and "... port N (QUIC)."
        let tcp = || {
            log.contains(&format!("listening on 127.0.0.1 port {port}."))
                && TcpStream::connect(("127.0.0.1", port)).is_ok()
        };
        let quic = || log.contains(&format!("listening on 127.0.0.1 port {port} (QUIC)"));
        match self {
            Listeners::Tcp => tcp(),
            Listeners::Quic => quic(),
            Listeners::Both => tcp() && quic(),
        }
    }
}

/// Keys and files of one test.
pub struct Lab {
    pub dir: tempfile::TempDir,
    /// The user the servers log in (whoever runs the tests).
    pub user: String,
}

/// The lab's ClientReattachDirectory, inside its temporary directory.
pub const HELD_DIR: &str = "held";

/// An interactive sshq on a real pty (40 rows, 120 columns, TERM=xterm)
/// to `server` over `transport`, with `extra` options.
pub fn pty_sshq(lab: &Lab, server: &Server, transport: &str, extra: &[&str]) -> PtyClient {
    let option = format!("Transport={transport}");
    let mut options = vec!["-o", &option];
    options.extend_from_slice(extra);
    let args = lab.client_args("user", "accept-new", server.port, &options, &[]);
    PtyClient::spawn(SSHQ, &args, 40, 120, &[("TERM", "xterm")])
}

/// Starts a shell in `client` and waits (40 s at most) for it; `X` is set
/// in it, to recognise the same shell later.
pub fn shell_ready(client: &PtyClient, server: &Server) {
    client.type_keys("PS1='$ '; export X=$((40+2)); echo READY-$((1+1))\r");
    assert!(
        client.wait_for("READY-2", Duration::from_secs(40)),
        "no shell; terminal:\n{}\n{}",
        client.output(),
        server.log_text()
    );
}

impl Drop for Lab {
    /// Held sessions outlive sshqd by design: their holders (and the
    /// programs they hold) go with the lab, not an hour later.
    fn drop(&mut self) {
        for pid in self.holders() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Lab {
    pub fn new() -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("sshq-test.")
            .tempdir()
            .expect("temp dir");
        let lab = Lab {
            dir,
            user: current_user(),
        };
        for (name, comment) in [
            ("host_ed25519", "host"),
            ("other_host_ed25519", "other-host"),
            ("user", "user"),
            ("stranger", "stranger"),
        ] {
            lab.keygen(name, "ed25519", comment);
        }
        std::fs::copy(lab.path("user.pub"), lab.path("authorized_keys")).expect("authorized_keys");
        lab
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The session holders of this lab's sshqd servers: processes whose
    /// command line names a socket in the lab's holder directory.
    pub fn holders(&self) -> Vec<i32> {
        let held = self.path(HELD_DIR);
        let held = held.to_string_lossy();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
                (cmdline.contains("--session-holder") && cmdline.contains(held.as_ref()))
                    .then_some(pid)
            })
            .collect()
    }

    pub fn keygen(&self, name: &str, kind: &str, comment: &str) {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", comment, "-f"])
            .arg(self.path(name))
            .status()
            .expect("ssh-keygen must be installed (openssh-client)");
        assert!(status.success(), "ssh-keygen failed");
    }

    /// Client options shared by sshq and ssh: our key, our known_hosts, no prompts.
    pub fn client_opts(&self, key: &str) -> Vec<String> {
        self.client_opts_strict(key, "accept-new")
    }

    /// [`Lab::client_opts`] with another StrictHostKeyChecking value.
    pub fn client_opts_strict(&self, key: &str, strict: &str) -> Vec<String> {
        vec![
            "-i".into(),
            self.path(key).display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.path("known_hosts").display()),
            "-o".into(),
            format!("StrictHostKeyChecking={strict}"),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ]
    }

    pub fn target(&self) -> String {
        format!("{}@127.0.0.1", self.user)
    }

    /// Starts OpenSSH's sshd on a free port.
    pub fn start_sshd(&self) -> Server {
        self.start_sshd_with("")
    }

    /// Starts OpenSSH's sshd like [`Lab::start_sshd`] with `extra` lines
    /// first (sshd keeps the first value of a keyword, so they win).
    pub fn start_sshd_with(&self, extra: &str) -> Server {
        self.start_sshd_as(Path::new("/usr/sbin/sshd"), extra)
    }

    /// [`Lab::start_sshd_with`] with sshd run as `program`, a link to it:
    /// sshd names its PAM service after its program name.
    pub fn start_sshd_as(&self, program: &Path, extra: &str) -> Server {
        let _ = std::fs::create_dir_all("/run/sshd");
        let program = program.to_str().expect("sshd path is UTF-8");
        self.start_server("sshd", program, |port| {
            let config = self.path(&format!("sshd_config.{port}"));
            std::fs::write(
                &config,
                format!(
                    "{extra}\nPort {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {ak}\n\
                     PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     StrictModes no\nUsePAM no\nPidFile none\nSubsystem sftp /usr/lib/openssh/sftp-server\n\
                     AllowAgentForwarding yes\nAllowTcpForwarding yes\nAcceptEnv LANG LC_* SSHQ_TEST_*\n",
                    host = self.path("host_ed25519").display(),
                    ak = self.path("authorized_keys").display(),
                ),
            )
            .expect("sshd_config");
            config
        })
    }

    /// Starts sshqd on a free port with the lab's keys and `extra` config
    /// lines; ready once it listens on TCP.
    pub fn start_sshqd(&self, extra: &str) -> Server {
        self.start_sshqd_on(extra, Listeners::Tcp)
    }

    /// Starts sshqd like [`Lab::start_sshqd`]; ready once it listens on
    /// every one of `listeners` (`extra` must enable them, e.g.
    /// `Transports quic` for [`Listeners::Quic`]).
    pub fn start_sshqd_on(&self, extra: &str, listeners: Listeners) -> Server {
        self.start_server_when(
            "sshqd",
            SSHQD,
            |port| self.write_sshqd_config(port, &[self.path("host_ed25519")], extra),
            listeners,
        )
    }

    /// Starts sshqd with a configuration of the test's own making:
    /// `config_for(port)` is the whole text (for tests whose keywords must
    /// not meet the lab's defaults, e.g. the default AuthorizedKeysFile).
    pub fn start_sshqd_config(
        &self,
        config_for: impl Fn(u16) -> String,
        listeners: Listeners,
    ) -> Server {
        self.start_server_when(
            "sshqd",
            SSHQD,
            |port| {
                let config = self.path(&format!("sshqd_config.{port}"));
                let mut text = config_for(port);
                // As in write_sshqd_config: the lab's many clients from
                // one address must not trip the pre-authentication limits.
                let lower = text.to_ascii_lowercase();
                if !lower.contains("maxstartups") && !lower.contains("persource") {
                    text.push('\n');
                    text.push_str(LAB_PREAUTH_LIMITS);
                }
                text.push('\n');
                text.push_str(&self.held_directory_line());
                std::fs::write(&config, text).expect("sshqd_config");
                config
            },
            listeners,
        )
    }

    fn start_server(
        &self,
        name: &str,
        program: &str,
        config_for: impl Fn(u16) -> PathBuf,
    ) -> Server {
        self.start_server_when(name, program, config_for, Listeners::Tcp)
    }

    /// Runs `program -D -e -f config` on a free port until its log says it
    /// listens there on `listeners`; if another process took the port
    /// meanwhile, tries another. A server that dies fails the test, showing
    /// its log.
    fn start_server_when(
        &self,
        name: &str,
        program: &str,
        config_for: impl Fn(u16) -> PathBuf,
        listeners: Listeners,
    ) -> Server {
        for _ in 0..5 {
            let port = free_port();
            let config = config_for(port);
            let log = self.path(&format!("{name}.{port}.log"));
            if let Some(server) = self.run_server(name, program, port, &config, log, listeners) {
                return server;
            }
        }
        panic!("{name}: no free port found in 5 attempts");
    }

    /// Starts sshqd again on `port`, with the configuration it had, as an
    /// administrator restarts it; its log is `sshqd.PORT.again.log`.
    pub fn restart_sshqd(&self, port: u16, listeners: Listeners) -> Server {
        let config = self.path(&format!("sshqd_config.{port}"));
        let log = self.path(&format!("sshqd.{port}.again.log"));
        // The old sockets may take a moment to go.
        for _ in 0..20 {
            if let Some(server) =
                self.run_server("sshqd", SSHQD, port, &config, log.clone(), listeners)
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("sshqd could not listen on port {port} again");
    }

    /// Runs `program -D -e -f config` on `port` until its log says it
    /// listens there on `listeners`; `None` if the port is taken.
    fn run_server(
        &self,
        name: &str,
        program: &str,
        port: u16,
        config: &Path,
        log: PathBuf,
        listeners: Listeners,
    ) -> Option<Server> {
        let child = Command::new(program)
            .args(["-D", "-e", "-f"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        let mut server = Server { port, child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = server.log_text();
            if !server.alive() {
                if log.contains("Address already in use") {
                    return None; // lost the port to someone else: try another
                }
                panic!("{name} exited at start; its log:\n{log}");
            }
            // The log lines prove it is *our* server that listens.
            if listeners.ready(&log, port) {
                return Some(server);
            }
            if Instant::now() >= deadline {
                panic!("{name} does not listen on port {port} after 10 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes an sshqd configuration for `port` with these host keys, the
    /// lab's authorized_keys, sftp and AcceptEnv, then `extra` lines, then
    /// [`LAB_PREAUTH_LIMITS`] unless `extra` sets a pre-authentication limit
    /// itself.
    pub fn write_sshqd_config(&self, port: u16, host_keys: &[PathBuf], extra: &str) -> PathBuf {
        let config = self.path(&format!("sshqd_config.{port}"));
        let mut text = format!("Port {port}\nListenAddress 127.0.0.1\n");
        for key in host_keys {
            text.push_str(&format!("HostKey {}\n", key.display()));
        }
        text.push_str(&format!(
            "AuthorizedKeysFile {ak}\nSubsystem sftp /usr/lib/openssh/sftp-server\n\
             AcceptEnv LANG LC_* SSHQ_TEST_*\n{extra}\n",
            ak = self.path("authorized_keys").display(),
        ));
        let lower = extra.to_ascii_lowercase();
        if !lower.contains("maxstartups") && !lower.contains("persource") {
            text.push_str(LAB_PREAUTH_LIMITS);
        }
        text.push_str(&self.held_directory_line());
        std::fs::write(&config, text).expect("sshqd_config");
        config
    }

    /// Keeps the lab's held sessions in the lab (after `extra`, which wins).
    fn held_directory_line(&self) -> String {
        format!(
            "ClientReattachDirectory {}\n",
            self.path(HELD_DIR).display()
        )
    }

    /// Runs `sshqd -D -e -f config` expecting it to refuse to start; fails
    /// the test if it is still running after a few seconds.
    pub fn sshqd_refusing(&self, config: &Path) -> Output {
        let mut cmd = Command::new(SSHQD);
        cmd.args(["-D", "-e", "-f"]).arg(config);
        run_with_timeout(&mut cmd, b"", Duration::from_secs(10))
    }

    /// Makes known_hosts hold exactly `key_name.pub` for `[127.0.0.1]:port`.
    pub fn write_known_hosts(&self, port: u16, key_name: &str) {
        let public =
            std::fs::read_to_string(self.path(&format!("{key_name}.pub"))).expect("public key");
        let fields: Vec<&str> = public.split_whitespace().take(2).collect();
        std::fs::write(
            self.path("known_hosts"),
            format!("[127.0.0.1]:{port} {}\n", fields.join(" ")),
        )
        .expect("known_hosts");
    }

    /// The base64 part of `key_name.pub`.
    pub fn public_key_blob(&self, key_name: &str) -> String {
        let public =
            std::fs::read_to_string(self.path(&format!("{key_name}.pub"))).expect("public key");
        public
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `program args...` with `input` on stdin; returns its output.
    pub fn run(&self, program: &str, args: &[String], input: &[u8]) -> Output {
        run_with_input(Command::new(program).args(args), input)
    }

    /// `sshq <opts> -p port user@127.0.0.1 command`.
    pub fn sshq(&self, port: u16, extra: &[&str], command: &[&str], input: &[u8]) -> Output {
        self.client(SSHQ, "user", port, extra, command, input)
    }

    /// `ssh <opts> -p port user@127.0.0.1 command` with OpenSSH.
    pub fn ssh(&self, port: u16, extra: &[&str], command: &[&str], input: &[u8]) -> Output {
        self.client("ssh", "user", port, extra, command, input)
    }

    pub fn client(
        &self,
        program: &str,
        key: &str,
        port: u16,
        extra: &[&str],
        command: &[&str],
        input: &[u8],
    ) -> Output {
        let args = self.client_args(key, "accept-new", port, extra, command);
        self.run(program, &args, input)
    }

    /// The whole argument list of a client run: options (with this
    /// StrictHostKeyChecking), `-p port`, `extra`, the target, the command.
    pub fn client_args(
        &self,
        key: &str,
        strict: &str,
        port: u16,
        extra: &[&str],
        command: &[&str],
    ) -> Vec<String> {
        let mut args = self.client_opts_strict(key, strict);
        args.push("-p".into());
        args.push(port.to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(self.target());
        args.extend(command.iter().map(|s| s.to_string()));
        args
    }
}

/// Runs a command with `input` on stdin, collecting stdout and stderr;
/// fails the test if it runs longer than [`CLIENT_TIMEOUT`].
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    run_with_timeout(cmd, input, CLIENT_TIMEOUT)
}

/// [`run_with_input`] with its own limit: past it the process is killed and
/// the test fails, showing what the process wrote so far.
pub fn run_with_timeout(cmd: &mut Command, input: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Feed stdin from a thread so a large input cannot deadlock on a full stdout pipe.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = Collector::start(child.stdout.take().expect("stdout"));
    let stderr = Collector::start(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + limit;
    let status = wait_child(&mut child, deadline);
    // The pipes close when the process (and anything it left holding them) is gone.
    let done = wait_until(deadline.saturating_duration_since(Instant::now()), || {
        stdout.finished() && stderr.finished()
    });
    match status {
        Some(status) if done => Output {
            status,
            stdout: stdout.take(),
            stderr: stderr.take(),
        },
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} not finished after {limit:?} (exit status: {status:?}; its output stays open \
                 while anything holds it); killed it.\nstdout so far: {}\nstderr so far: {}",
                clip(&stdout.take()),
                clip(&stderr.take())
            );
        }
    }
}

/// Waits for `child` to exit until `deadline`; `None` if it is still running.
fn wait_child(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a pipe (or pty) to its end in a thread, keeping what came so far.
struct Collector {
    data: Arc<Mutex<Vec<u8>>>,
    thread: JoinHandle<()>,
}

impl Collector {
    fn start(mut from: impl Read + Send + 'static) -> Collector {
        let data = Arc::new(Mutex::new(Vec::new()));
        let sink = data.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 64 * 1024];
            // A pty master reports EIO once the last slave is closed: an end too.
            while let Ok(n @ 1..) = from.read(&mut buf) {
                sink.lock().expect("collector").extend_from_slice(&buf[..n]);
            }
        });
        Collector { data, thread }
    }

    fn finished(&self) -> bool {
        self.thread.is_finished()
    }

    fn take(&self) -> Vec<u8> {
        self.data.lock().expect("collector").clone()
    }
}

/// Polls `condition` every 50 ms for up to `limit`; whether it became true.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client running on a real pseudo-terminal of a chosen size, as the
/// session leader with that terminal as its controlling tty (so a resize
/// of the terminal sends it SIGWINCH, as in a terminal emulator).
pub struct PtyClient {
    child: Child,
    pty: pty_process::blocking::Pty,
    output: Collector,
    what: String,
}

impl PtyClient {
    pub fn spawn(
        program: &str,
        args: &[String],
        rows: u16,
        cols: u16,
        env: &[(&str, &str)],
    ) -> PtyClient {
        let (pty, pts) = pty_process::blocking::open().expect("open a pty");
        pty.resize(pty_process::Size::new(rows, cols))
            .expect("set the pty size");
        let reader = std::fs::File::from(
            std::os::fd::AsFd::as_fd(&pty)
                .try_clone_to_owned()
                .expect("dup pty"),
        );
        let mut cmd = pty_process::blocking::Command::new(program).args(args);
        for (name, value) in env {
            cmd = cmd.env(name, value);
        }
        let child = cmd
            .spawn(pts)
            .unwrap_or_else(|e| panic!("cannot start {program} on a pty: {e}"));
        PtyClient {
            child,
            pty,
            output: Collector::start(reader),
            what: format!("{program} {}", args.join(" ")),
        }
    }

    /// Everything the client wrote to its terminal so far, without CRs.
    pub fn output(&self) -> String {
        text(&self.output.take()).replace('\r', "")
    }

    /// Waits until the terminal shows `needle`; whether it did within `limit`.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        wait_until(limit, || self.output().contains(needle))
    }

    /// Types `keys` on the terminal, as a user would.
    pub fn type_keys(&self, keys: &str) {
        use std::io::Write;
        (&self.pty)
            .write_all(keys.as_bytes())
            .expect("type on the pty");
    }

    /// Sends `signal` to the client (SIGSTOP for a laptop lid closing).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, signal).expect("signal the client");
    }

    /// Whether the client still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Resizes the terminal: the kernel sends SIGWINCH to the client.
    pub fn resize(&self, rows: u16, cols: u16) {
        self.pty
            .resize(pty_process::Size::new(rows, cols))
            .expect("resize the pty");
    }

    /// Waits for the client to exit (failing the test after [`CLIENT_TIMEOUT`])
    /// and returns its status and all it wrote to the terminal.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        let Some(status) = wait_child(&mut self.child, deadline) else {
            panic!(
                "{} still running after {CLIENT_TIMEOUT:?}; terminal so far:\n{}",
                self.what,
                self.output()
            );
        };
        wait_until(Duration::from_secs(5), || self.output.finished());
        (status, self.output())
    }
}

impl Drop for PtyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client left running in the background (e.g. `sshq -N -L ...`), its
/// stderr in a file; killed on drop.
pub struct Background {
    child: Child,
    pub log: PathBuf,
}

impl Background {
    pub fn spawn(program: &str, args: &[String], log: PathBuf) -> Background {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Background { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP server on a free loopback port running `handler` on a thread per
/// connection, for forwarding tests; stops accepting when dropped.
pub struct TcpService {
    pub port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl TcpService {
    pub fn start(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> TcpService {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test service");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let handler = handler.clone();
                        std::thread::spawn(move || handler(stream));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TcpService { port, stop }
    }
}

impl Drop for TcpService {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Status, stdout and stderr of a run, for assertion messages (long output clipped).
pub fn show(out: &Output) -> String {
    format!(
        "status: {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        clip(&out.stdout),
        clip(&out.stderr)
    )
}

fn clip(bytes: &[u8]) -> String {
    const MAX: usize = 4000;
    if std::str::from_utf8(bytes).is_err() {
        return format!("<{} bytes, not text>", bytes.len());
    }
    if bytes.len() <= MAX {
        return format!("{:?}", text(bytes));
    }
    format!(
        "{:?}... ({} bytes in all)",
        text(&bytes[..MAX]),
        bytes.len()
    )
}

/// Whether `output` has a `/dev/pts/N` line; returns it.
pub fn pts_line(output: &str) -> Option<&str> {
    output.lines().map(str::trim).find(|l| {
        l.strip_prefix("/dev/pts/")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// Whether `output` has a `ROWS COLS` line.
pub fn has_size_line(output: &str) -> bool {
    output.lines().any(|l| {
        let parts: Vec<&str> = l.split_whitespace().collect();
        parts.len() == 2 && parts.iter().all(|p| p.parse::<u32>().is_ok())
    })
}

/// Pids of processes whose command line contains `pattern` (`pgrep -f`).
pub fn pgrep(pattern: &str) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-f", "--", pattern])
        .output()
        .expect("pgrep (procps)");
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A port free for both TCP and UDP on 127.0.0.1.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until something listens on TCP `port`.
pub fn wait_tcp(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

pub fn sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut file = std::fs::File::open("/dev/urandom").expect("urandom");
    file.read_exact(&mut data).expect("random");
    data
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// Helpers for the forwarding tests: echo services on ports and sockets,
/// echo checks, an HTTP responder and curl through a SOCKS proxy.
mod forwarding;
// Not every test binary uses them (as with the rest of the lab).
#[allow(unused_imports)]
pub use forwarding::*;

/// A real ssh-agent holding the lab's user key.
pub mod agent;

/// sshq's transport crates as clients of a lab's sshqd.
pub mod clients;

/// sshq over QUIC, sshq over TCP and OpenSSH's ssh, for the login tests.
pub mod client_programs;

/// Helpers of the hostile-input suites: raw sockets, and the checks every
/// case makes afterwards (refusal logged, server alive, others unaffected).
pub mod hostile;

/// A PAM service for password and keyboard-interactive tests (root).
pub mod pam;

/// A client that speaks sshq/1 frame by frame to a real sshqd.
pub mod raw_quic;

/// The per-test setup of the session tests: a server, its client, the keys.
pub mod setup;

/// One rule for tests that need root, shared by every crate's tests.
#[allow(unused_imports)] // not every test binary has a test that needs root
pub use sshq_test_kit::needs_root;

impl Lab {
    /// The Ed25519 key pair of the lab's `name` key: the public key and the
    /// private key as PKCS#8 v1 (what rustls signs with).
    pub fn ed25519_parts(&self, name: &str) -> ([u8; 32], Vec<u8>) {
        let key = self.private_key(name);
        let pair = key.key_data().ed25519().expect("an Ed25519 key");
        // PKCS#8 v1: SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }.
        let mut pkcs8 = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        pkcs8.extend_from_slice(&pair.private.to_bytes());
        (pair.public.0, pkcs8)
    }

    /// The private key `name` the lab made, parsed.
    pub fn private_key(&self, name: &str) -> sshq_core::ssh_key::PrivateKey {
        let text = std::fs::read_to_string(self.path(name)).expect("read the lab key");
        sshq_core::ssh_key::PrivateKey::from_openssh(text).expect("parse the lab key")
    }
}
