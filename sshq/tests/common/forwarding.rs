//! Forwarding test helpers: echo services (TCP and Unix socket), byte-exact
//! echo checks through a forward, many at once, clients whose forwards are
//! probed while their command runs, an HTTP responder and curl through a
//! SOCKS proxy.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    run_with_input, show, wait_child, wait_until, Collector, Lab, Listeners, Server, TcpService,
    CLIENT_TIMEOUT,
};

/// Limit on any one socket read or write in forwarding tests.
pub const FORWARD_IO_TIMEOUT: Duration = Duration::from_secs(60);

/// A TCP service that echoes every byte until EOF, then half-closes.
pub fn echo_service() -> TcpService {
    TcpService::start(|mut stream| {
        let mut reader = stream.try_clone().expect("clone");
        let _ = std::io::copy(&mut reader, &mut stream);
        let _ = stream.shutdown(std::net::Shutdown::Write);
    })
}

/// A Unix-socket echo service at `path` (a thread per connection); stops
/// accepting and removes its socket when dropped.
pub struct UnixEchoService {
    pub path: PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl UnixEchoService {
    pub fn start(path: PathBuf) -> UnixEchoService {
        use std::os::unix::net::UnixListener;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        std::thread::spawn(move || {
                            let mut reader = stream.try_clone().expect("clone");
                            let _ = std::io::copy(&mut reader, &mut stream);
                            let _ = stream.shutdown(std::net::Shutdown::Write);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        UnixEchoService { path, stop }
    }
}

impl Drop for UnixEchoService {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where a forward is reached from the test: a loopback port or a socket.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Port(u16),
    Path(PathBuf),
}

impl Endpoint {
    /// The endpoint as written in a -L/-R argument.
    pub fn spec(&self) -> String {
        match self {
            Endpoint::Port(port) => port.to_string(),
            Endpoint::Path(path) => path.display().to_string(),
        }
    }
}

/// A connected stream of either kind, readable and writable from two threads.
trait Duplex: Read + Write + Send {
    fn other_half(&self) -> std::io::Result<Box<dyn Duplex>>;
    fn close_write(&self) -> std::io::Result<()>;
}

impl Duplex for TcpStream {
    fn other_half(&self) -> std::io::Result<Box<dyn Duplex>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn close_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Duplex for std::os::unix::net::UnixStream {
    fn other_half(&self) -> std::io::Result<Box<dyn Duplex>> {
        Ok(Box::new(self.try_clone()?))
    }
    fn close_write(&self) -> std::io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

fn connect_endpoint(to: &Endpoint) -> std::io::Result<Box<dyn Duplex>> {
    Ok(match to {
        Endpoint::Port(port) => {
            let stream = TcpStream::connect(("127.0.0.1", *port))?;
            stream.set_read_timeout(Some(FORWARD_IO_TIMEOUT))?;
            stream.set_write_timeout(Some(FORWARD_IO_TIMEOUT))?;
            Box::new(stream)
        }
        Endpoint::Path(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path)?;
            stream.set_read_timeout(Some(FORWARD_IO_TIMEOUT))?;
            stream.set_write_timeout(Some(FORWARD_IO_TIMEOUT))?;
            Box::new(stream)
        }
    })
}

/// Sends `data` to an echo service through `to` while reading the echo;
/// what came back by EOF.
pub fn echo_through(to: &Endpoint, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = connect_endpoint(to)?;
    let mut writer = stream.other_half()?;
    let sent = data.to_vec();
    let writing = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(&sent)?;
        writer.close_write()
    });
    let mut back = Vec::new();
    stream.read_to_end(&mut back)?;
    writing
        .join()
        .map_err(|_| std::io::Error::other("writer thread panicked"))??;
    Ok(back)
}

/// [`echo_through`], checked: the bytes that came back are the ones sent.
pub fn check_echo(to: &Endpoint, data: &[u8]) -> Result<(), String> {
    match echo_through(to, data) {
        Ok(back) if back == data => Ok(()),
        Ok(back) => Err(format!(
            "{} bytes back, differing from the {} sent",
            back.len(),
            data.len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits (up to 20 s) until a small echo through `to` works.
pub fn echo_works_within(to: &Endpoint, limit: Duration) -> bool {
    wait_until(limit, || check_echo(to, b"ping").is_ok())
}

/// Runs `work(i)` for i in 0..n on n threads at once; the failures, as text.
pub fn concurrently(
    n: u32,
    work: impl Fn(u32) -> Result<(), String> + Send + Sync + 'static,
) -> Vec<String> {
    let work = Arc::new(work);
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let work = work.clone();
            std::thread::spawn(move || work(i))
        })
        .collect();
    threads
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| match t.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("#{i}: {e}")),
            Err(_) => Some(format!("#{i}: panicked")),
        })
        .collect()
}

/// The transports sshq speaks to sshqd, for tests run over each.
pub const TRANSPORTS: [&str; 2] = ["tcp", "quic"];

/// sshqd serving QUIC and TCP on one port, with `extra` lines, for
/// forwarding tests that run over both transports.
pub fn start_sshqd_both(lab: &Lab, extra: &str) -> Server {
    lab.start_sshqd_on(&format!("Transports quic,tcp\n{extra}"), Listeners::Both)
}

/// What a remote command writes to stderr first in [`run_forwarding_client`].
pub const FORWARDS_READY: &str = "forwards-ready";

/// The remote command for [`run_forwarding_client`]: marks the session's
/// start, stays `seconds`, then prints `still-here`.
pub fn ready_then_still_here(seconds: u32) -> String {
    format!("echo {FORWARDS_READY} >&2; sleep {seconds}; echo still-here")
}

/// Runs a client (`args` ending in a [`ready_then_still_here`] command)
/// with its stderr in `log`. Once the remote command has started, every
/// forward the client asked for is set up (listeners bound, remote
/// forwards answered), and `during` runs; then the client's exit status,
/// stdout and stderr are returned with what `during` returned.
pub fn run_forwarding_client<T>(
    program: &str,
    args: &[String],
    log: PathBuf,
    during: impl FnOnce() -> T,
) -> (Output, T) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let stdout = Collector::start(child.stdout.take().expect("stdout"));
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let started = wait_until(Duration::from_secs(20), || {
        log_text().contains(FORWARDS_READY) || matches!(child.try_wait(), Ok(Some(_)))
    });
    let during_result = if started && log_text().contains(FORWARDS_READY) {
        Some(during())
    } else {
        None
    };
    let status = wait_child(&mut child, Instant::now() + CLIENT_TIMEOUT);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{program} still running after {CLIENT_TIMEOUT:?}; its log:\n{}",
            log_text()
        );
    };
    wait_until(Duration::from_secs(5), || stdout.finished());
    let output = Output {
        status,
        stdout: stdout.take(),
        stderr: log_text().into_bytes(),
    };
    let Some(during_result) = during_result else {
        panic!(
            "{program} never started its remote command:\n{}",
            show(&output)
        );
    };
    (output, during_result)
}

/// The payload [`http_service`] serves: large enough to take many channel
/// windows, and recognisable.
pub fn http_payload() -> Vec<u8> {
    (0..300_000u32).map(|i| (i % 251) as u8).collect()
}

/// A minimal HTTP/1.0 responder: reads the request head, answers with
/// [`http_payload`], closes.
pub fn http_service() -> TcpService {
    TcpService::start(|mut stream| {
        let _ = stream.set_read_timeout(Some(FORWARD_IO_TIMEOUT));
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => return,
            }
        }
        let body = http_payload();
        let reply = format!(
            "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(reply.as_bytes());
        let _ = stream.write_all(&body);
        let _ = stream.shutdown(std::net::Shutdown::Write);
    })
}

/// `curl <proxy_option> 127.0.0.1:socks url` (e.g. `--socks5-hostname`),
/// with no proxy settings from the environment.
pub fn curl_through(proxy_option: &str, socks: u16, url: &str) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", proxy_option])
        .arg(format!("127.0.0.1:{socks}"))
        .arg(url);
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
    ] {
        cmd.env_remove(var);
    }
    run_with_input(&mut cmd, b"")
}
