//! The real binary, measured through real sockets in the namespaces it makes.
//!
//! These tests need root (namespaces, TUN devices); as another user each
//! fails saying so, unless SSHQ_TEST_SKIP_ROOT is set (then it says it
//! skipped): a run that is not root must not pass without testing. Sockets are opened by threads that enter a namespace
//! (a socket stays in the namespace it was created in), so no helper
//! programs are involved. Each test takes a few seconds at most, and they
//! run one at a time so that their timings do not disturb each other.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const LINKEM: &str = env!("CARGO_BIN_EXE_sshq-linkem");
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);

/// Held by each test: measurements on a shared 2-core machine are only
/// meaningful if tests do not compete with each other for the CPU.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Set (to any value) to run the tests outside root: they then pass without
/// running, saying so. CI runs as root and never sets it.
const SKIP_ROOT_TESTS: &str = "SSHQ_TEST_SKIP_ROOT";

/// Whether `test` runs: true as root. Outside root the test fails (a run
/// that is not root must not pass without testing), unless
/// SSHQ_TEST_SKIP_ROOT is set: then it says the test is skipped.
fn is_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var_os(SKIP_ROOT_TESTS).is_some() {
        println!("SKIPPED {test}: needs root ({SKIP_ROOT_TESTS} is set)");
        return false;
    }
    panic!("{test}: creating network namespaces and TUN devices needs root; run the tests as root (CI does), or set {SKIP_ROOT_TESTS}=1 to skip");
}

/// A running `sshq-linkem`; stopped with SIGTERM when dropped.
struct Linkem {
    child: Child,
    name: String,
    control: PathBuf,
    _dir: tempfile::TempDir,
}

impl Linkem {
    fn start(test: &str, link_args: &[&str]) -> Linkem {
        let dir = tempfile::tempdir().unwrap();
        // Unique per process and test, short enough for a namespace name.
        let name = format!("lkt{}{test}", std::process::id() % 100_000);
        let control = dir.path().join("control.sock");
        let mut child = Command::new(LINKEM)
            .args(["--name", &name, "--control"])
            .arg(&control)
            // A safety net: even if this test process dies, the emulator
            // stops and removes its namespaces.
            .args(["--duration", "60"])
            .args(link_args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, line) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = BufReader::new(stdout).read_line(&mut first);
            let _ = lines.send(first);
        });
        let linkem = Linkem {
            child,
            name,
            control,
            _dir: dir,
        };
        let first = line
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_default();
        assert_eq!(first, "ready\n", "sshq-linkem did not become ready");
        linkem
    }

    fn client_ns(&self) -> String {
        format!("{}-c", self.name)
    }

    fn server_ns(&self) -> String {
        format!("{}-s", self.name)
    }

    /// Sends one control command and returns the answer line.
    fn control(&self, command: &str) -> String {
        let mut stream = UnixStream::connect(&self.control).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(format!("{command}\n").as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(stream).read_line(&mut answer).unwrap();
        answer.trim_end().to_string()
    }

    fn stats(&self) -> serde_json::Value {
        let answer = self.control("stats");
        let json = answer.strip_prefix("ok ").expect("stats answered ok");
        serde_json::from_str(json).unwrap()
    }

    /// Stops the emulator with SIGTERM and returns its exit code.
    fn stop(&mut self) -> Option<i32> {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Linkem {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = Path::new("/run/netns").join(ns);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path).unwrap();
                setns(&file, CloneFlags::CLONE_NEWNET).unwrap();
                f()
            })
            .join()
            .unwrap()
    })
}

fn udp_in(ns: &str, address: Ipv4Addr) -> UdpSocket {
    in_ns(ns, || {
        UdpSocket::bind(SocketAddrV4::new(address, 0)).unwrap()
    })
}

/// A UDP echo server in the server namespace, answering until `until`.
/// Returns its address and a channel of each datagram's source address.
fn echo_server(linkem: &Linkem, until: Instant) -> (SocketAddr, mpsc::Receiver<SocketAddr>) {
    let socket = udp_in(&linkem.server_ns(), SERVER);
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let address = socket.local_addr().unwrap();
    let (sources, received) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 2048];
        while Instant::now() < until {
            if let Ok((length, from)) = socket.recv_from(&mut buffer) {
                let _ = socket.send_to(&buffer[..length], from);
                let _ = sources.send(from);
            }
        }
    });
    (address, received)
}

/// Sends one probe and waits up to `wait` for its echo; the round-trip time.
fn probe(client: &UdpSocket, server: SocketAddr, id: u32, wait: Duration) -> Option<Duration> {
    let sent = Instant::now();
    client.send_to(&id.to_be_bytes(), server).ok()?;
    let mut buffer = [0u8; 64];
    while sent.elapsed() < wait {
        client
            .set_read_timeout(Some(
                wait - sent.elapsed().min(wait) + Duration::from_millis(1),
            ))
            .ok()?;
        if let Ok((4, _)) = client.recv_from(&mut buffer) {
            if buffer[..4] == id.to_be_bytes() {
                return Some(sent.elapsed());
            }
        }
    }
    None
}

#[test]
fn round_trip_time_matches_the_configured_delay() {
    if !is_root("round_trip_time_matches_the_configured_delay") {
        return;
    }
    let _serial = serial();
    let linkem = Linkem::start("rtt", &["--delay-ms", "25"]);
    let (server, _) = echo_server(&linkem, Instant::now() + Duration::from_secs(10));
    let client = udp_in(&linkem.client_ns(), Ipv4Addr::UNSPECIFIED);
    let mut rtts: Vec<Duration> = (0..20)
        .map(|id| probe(&client, server, id, Duration::from_secs(1)).expect("probe answered"))
        .collect();
    rtts.sort();
    eprintln!(
        "round trips at 25 ms each way: min {:?}, median {:?}, max {:?}",
        rtts[0], rtts[10], rtts[19]
    );
    // The emulator never delivers early, so no round trip is under 50 ms.
    // Above it, scheduling on a busy machine adds a little: the median must
    // be within 5 ms (the timer and wake-up latency of two hops).
    assert!(
        rtts[0] >= Duration::from_millis(50),
        "fastest round trip {:?}",
        rtts[0]
    );
    assert!(
        rtts[10] <= Duration::from_millis(55),
        "median round trip {:?}",
        rtts[10]
    );
}

#[test]
fn jitter_varies_the_round_trip_within_its_bounds() {
    if !is_root("jitter_varies_the_round_trip_within_its_bounds") {
        return;
    }
    let _serial = serial();
    let linkem = Linkem::start("jit", &["--delay-ms", "20", "--jitter-ms", "5"]);
    let (server, _) = echo_server(&linkem, Instant::now() + Duration::from_secs(10));
    let client = udp_in(&linkem.client_ns(), Ipv4Addr::UNSPECIFIED);
    let mut rtts: Vec<Duration> = (0..30)
        .map(|id| probe(&client, server, id, Duration::from_secs(1)).expect("probe answered"))
        .collect();
    rtts.sort();
    eprintln!(
        "round trips at 20 ± 5 ms each way: min {:?}, max {:?}",
        rtts[0], rtts[29]
    );
    // Each way is 15 to 25 ms, so a round trip is 30 to 50 ms, plus up to
    // 5 ms of scheduling on a busy machine at the top.
    assert!(
        rtts[0] >= Duration::from_millis(30),
        "fastest {:?}",
        rtts[0]
    );
    assert!(
        rtts[29] <= Duration::from_millis(55),
        "slowest {:?}",
        rtts[29]
    );
    // The sum of two uniform ±5 ms offsets has an sd of 4.1 ms; 30 samples
    // spanning less than 5 ms would mean jitter is not applied.
    assert!(rtts[29] - rtts[0] >= Duration::from_millis(5), "{rtts:?}");
}

#[test]
fn loss_matches_the_configured_rate() {
    if !is_root("loss_matches_the_configured_rate") {
        return;
    }
    let _serial = serial();
    const PROBES: u32 = 5000;
    let linkem = Linkem::start("loss", &["--loss-pct", "1", "--seed", "5"]);
    let (server, arrivals) = echo_server(&linkem, Instant::now() + Duration::from_secs(10));
    let client = udp_in(&linkem.client_ns(), Ipv4Addr::UNSPECIFIED);
    let receiver = client.try_clone().unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let echoes = std::thread::spawn(move || {
        let mut count = 0u32;
        let mut buffer = [0u8; 64];
        // Ends half a second after the last echo (or at the bound).
        let bound = Instant::now() + Duration::from_secs(10);
        while Instant::now() < bound && receiver.recv_from(&mut buffer).is_ok() {
            count += 1;
        }
        count
    });
    // Paced at 100 us so that no socket buffer overflows: the only loss on
    // the path is the emulator's.
    let start = Instant::now();
    for id in 0..PROBES {
        let due = start + Duration::from_micros(100) * id;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        client.send_to(&id.to_be_bytes(), server).unwrap();
    }
    let echoed = echoes.join().unwrap();
    let one_way = PROBES - arrivals.try_iter().count() as u32;
    let round_trip = PROBES - echoed;
    let stats = linkem.stats();
    eprintln!("1% each way: lost {one_way} of {PROBES} one way, {round_trip} round trip");
    // Binomial tolerances, five standard deviations wide so a correct
    // emulator practically never fails: one way, 5000 at 1% is 50 ± 35;
    // round trip, 5000 at 1 - 0.99² = 1.99% is 99.5 ± 49.
    assert!(
        (15..=85).contains(&one_way),
        "one-way loss {one_way} of {PROBES}"
    );
    assert!(
        (50..=149).contains(&round_trip),
        "round-trip loss {round_trip} of {PROBES}"
    );
    // And every loss was the emulator's.
    assert_eq!(stats["up"]["dropped_loss"], one_way, "{stats}");
    assert_eq!(
        stats["up"]["dropped_loss"].as_u64().unwrap()
            + stats["down"]["dropped_loss"].as_u64().unwrap(),
        u64::from(round_trip),
        "{stats}"
    );
}

#[test]
fn rate_limit_holds_for_a_tcp_transfer() {
    if !is_root("rate_limit_holds_for_a_tcp_transfer") {
        return;
    }
    let _serial = serial();
    const BYTES: usize = 5_000_000;
    let linkem = Linkem::start(
        "rate",
        &[
            "--rate-mbit",
            "20",
            "--queue-packets",
            "100",
            "--delay-ms",
            "5",
        ],
    );
    let listener = in_ns(&linkem.server_ns(), || {
        TcpListener::bind((SERVER, 0)).unwrap()
    });
    let address = listener.local_addr().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = vec![0u8; 65536];
        let mut total = 0;
        let mut first_byte = None;
        while total < BYTES {
            let length = stream.read(&mut buffer).unwrap();
            assert!(length > 0, "connection closed early");
            first_byte.get_or_insert_with(Instant::now);
            total += length;
        }
        first_byte.map(|first| first.elapsed())
    });
    let mut stream = in_ns(&linkem.client_ns(), || TcpStream::connect(address).unwrap());
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&vec![7u8; BYTES]).unwrap();
    let elapsed = receiver.join().unwrap().unwrap();
    let goodput = BYTES as f64 * 8.0 / elapsed.as_secs_f64();
    // The rate counts whole IP packets; TCP's payload is 1448 of each
    // 1500 bytes (IP and TCP headers with timestamps), so the expected
    // goodput is 20 Mbit/s × 1448/1500 = 19.3 Mbit/s. ±15% allows for slow
    // start and the losses when the 100-packet queue overflows.
    let expected = 20e6 * 1448.0 / 1500.0;
    eprintln!("TCP goodput through 20 Mbit/s: {:.2} Mbit/s", goodput / 1e6);
    assert!(
        (goodput / expected - 1.0).abs() <= 0.15,
        "goodput {:.2} Mbit/s, expected {:.2}",
        goodput / 1e6,
        expected / 1e6
    );
}

#[test]
fn a_blackout_stops_traffic_until_it_ends() {
    if !is_root("a_blackout_stops_traffic_until_it_ends") {
        return;
    }
    let _serial = serial();
    let linkem = Linkem::start("black", &["--delay-ms", "5"]);
    let (server, _) = echo_server(&linkem, Instant::now() + Duration::from_secs(10));
    let client = udp_in(&linkem.client_ns(), Ipv4Addr::UNSPECIFIED);
    let wait = Duration::from_millis(200);
    assert!(probe(&client, server, 1, wait).is_some());
    assert_eq!(linkem.control("blackout on"), "ok");
    for id in 2..7 {
        assert!(
            probe(&client, server, id, wait).is_none(),
            "probe {id} crossed a blackout"
        );
    }
    assert_eq!(linkem.control("blackout off"), "ok");
    assert!(probe(&client, server, 8, wait).is_some());
    let stats = linkem.stats();
    assert_eq!(stats["up"]["dropped_blackout"], 5, "{stats}");
}

/// Sends a datagram every 10 ms for `run` and issues `command` half way;
/// returns the sources the server saw (in order), the control answer, and
/// how many echoes came back.
fn flow_across(linkem: &Linkem, command: &str) -> (Vec<SocketAddr>, String, usize) {
    let (server, sources) = echo_server(linkem, Instant::now() + Duration::from_secs(10));
    // Unconnected, so the kernel picks the source address for each datagram.
    let client = udp_in(&linkem.client_ns(), Ipv4Addr::UNSPECIFIED);
    client
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut answer = String::new();
    let mut echoes = 0;
    let mut buffer = [0u8; 64];
    for id in 0u32..100 {
        if id == 50 {
            answer = linkem.control(command);
        }
        client.send_to(&id.to_be_bytes(), server).unwrap();
        std::thread::sleep(Duration::from_millis(10));
        while client.recv_from(&mut buffer).is_ok() {
            echoes += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    while client.recv_from(&mut buffer).is_ok() {
        echoes += 1;
    }
    (sources.try_iter().collect(), answer, echoes)
}

#[test]
fn roaming_changes_the_client_address_while_a_udp_flow_continues() {
    if !is_root("roaming_changes_the_client_address_while_a_udp_flow_continues") {
        return;
    }
    let _serial = serial();
    let linkem = Linkem::start("roam", &["--delay-ms", "2"]);
    let (sources, answer, echoes) = flow_across(&linkem, "roam");
    assert_eq!(answer, "ok 10.77.0.2");
    let old: SocketAddr = (Ipv4Addr::new(10, 77, 0, 1), sources[0].port()).into();
    let new: SocketAddr = (Ipv4Addr::new(10, 77, 0, 2), sources[0].port()).into();
    assert_eq!(sources.first(), Some(&old));
    assert_eq!(sources.last(), Some(&new));
    assert!(
        sources
            .iter()
            .all(|source| *source == old || *source == new),
        "{sources:?}"
    );
    // Datagrams in flight while the address changes may be lost; the flow,
    // replies included, must otherwise go on.
    assert!(sources.len() >= 97, "server got {} of 100", sources.len());
    assert!(echoes >= 95, "client got {echoes} echoes of 100");
    assert_eq!(linkem.stats()["client_address"], "10.77.0.2");
}

#[test]
fn rebinding_changes_the_source_port_the_server_sees() {
    if !is_root("rebinding_changes_the_source_port_the_server_sees") {
        return;
    }
    let _serial = serial();
    let linkem = Linkem::start("nat", &["--delay-ms", "2"]);
    let (sources, answer, echoes) = flow_across(&linkem, "rebind");
    assert_eq!(answer, "ok");
    let first = sources[0];
    let last = *sources.last().unwrap();
    assert_eq!(first.ip(), last.ip());
    assert_ne!(
        first.port(),
        last.port(),
        "the server still sees the old port"
    );
    // Echoes sent to the old port after the rebind are dropped, as a real
    // NAT drops them; at 2 ms each way at most a couple are in flight.
    assert!(sources.len() >= 99, "server got {} of 100", sources.len());
    assert!(echoes >= 97, "client got {echoes} echoes of 100");
}

#[test]
fn the_control_socket_refuses_bad_commands_with_a_reason() {
    if !is_root("the_control_socket_refuses_bad_commands_with_a_reason") {
        return;
    }
    let _serial = serial();
    let linkem = Linkem::start("ctl", &[]);
    for (command, expected) in [
        ("fly", "error: unknown command 'fly'"),
        ("set nonsuch 1", "error: unknown option 'nonsuch'"),
        ("set loss-pct 200", "error: loss-pct: 200% is out of range"),
        ("set ge 1,2", "error: ge: '1,2' is not four"),
        ("blackout maybe", "error: usage: blackout on|off"),
        ("set up-delay-ms 30", "ok"),
        ("set ge 1,30,0,50", "ok"),
    ] {
        let answer = linkem.control(command);
        assert!(
            answer.starts_with(expected),
            "`{command}` answered `{answer}`"
        );
    }
    let long = "x".repeat(5000);
    assert!(linkem
        .control(&long)
        .starts_with("error: command longer than"));
}

#[test]
fn namespaces_are_replaced_when_stale_and_removed_on_exit() {
    if !is_root("namespaces_are_replaced_when_stale_and_removed_on_exit") {
        return;
    }
    let _serial = serial();
    let name = format!("lkt{}gone", std::process::id() % 100_000);
    let stale = format!("{name}-c");
    assert!(Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap()
        .success());
    let mut child = Command::new(LINKEM)
        .args(["--name", &name, "--duration", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let output = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "--duration 1 did not stop it"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "ready\n");
    assert!(String::from_utf8_lossy(&output.stderr).contains("deleting stale namespace"));
    for suffix in ["-c", "-s"] {
        let ns = format!("{name}{suffix}");
        assert!(
            !Path::new("/run/netns").join(&ns).exists(),
            "{ns} left behind"
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&name), "a namespace mount was left behind");
}

#[test]
fn without_root_it_exits_2_and_says_how_to_run_it() {
    if !is_root("without_root_it_exits_2_and_says_how_to_run_it (it drops root itself)") {
        return;
    }
    let _serial = serial();
    // setpriv (util-linux) runs the binary as nobody with no capabilities.
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ])
        .args([LINKEM, "--name", "lktnoroot"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("needs root") && stderr.contains("sudo"),
        "{stderr}"
    );
    assert!(!Path::new("/run/netns/lktnoroot-c").exists());
}
