//! The IO shell: one thread polls the two TUN devices, the control socket and
//! a signalfd, feeds packets through the two [`Link`]s and sleeps until the
//! next packet is due.
//!
//! One thread is enough: each packet costs one read and one write system
//! call, and keeping everything in one thread needs no locking between the
//! control commands and the packet path.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{ppoll, PollFd, PollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::time::TimeSpec;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::control::{self, Command, MAX_LINE};
use crate::link::{Link, LinkStats};
use crate::netns::{self, Namespaces, Sysctl};
use crate::options::{self, LinkConfigs};
use crate::rebind::Rebinder;
use crate::Error;

/// What the command line asked for.
pub struct Settings {
    pub name: String,
    pub configs: LinkConfigs,
    pub seed: u64,
    pub control: Option<PathBuf>,
    pub duration: Option<Duration>,
}

/// Largest packet a TUN device can hand over (IPv4's maximum total length).
const MAX_PACKET: usize = 65_535;
/// Packets read from one device before turning to the other, so that a flood
/// in one direction cannot starve the other.
const READ_BATCH: usize = 64;
/// Spare packet buffers kept for reuse, so steady forwarding allocates nothing.
const POOL_LIMIT: usize = 4096;
/// Control connections served at once; more are refused.
const MAX_CONTROL_CLIENTS: usize = 16;

/// The client's namespace lets a secondary address take over when the
/// primary is deleted (roaming). Both namespaces turn IPv6 off on the TUN
/// device: the emulated link is IPv4, and router solicitations and MLD
/// reports would otherwise cross it, consuming seeded random draws and
/// showing up in the counters.
const CLIENT_SYSCTLS: &[Sysctl] = &[
    Sysctl {
        path: "/proc/sys/net/ipv4/conf/all/promote_secondaries",
        value: "1",
        optional: false,
    },
    Sysctl {
        path: "/proc/sys/net/ipv6/conf/tun0/disable_ipv6",
        value: "1",
        optional: true,
    },
];
const SERVER_SYSCTLS: &[Sysctl] = &[Sysctl {
    path: "/proc/sys/net/ipv6/conf/tun0/disable_ipv6",
    value: "1",
    optional: true,
}];

/// Sets up the namespaces, prints `ready`, forwards until SIGINT, SIGTERM,
/// SIGHUP or the end of `duration`, then removes everything it made.
pub fn run(settings: Settings) -> Result<(), Error> {
    // Block the stop signals before anything else, so one arriving during
    // setup waits in the signalfd and still leads to a clean exit. SIGHUP
    // too: a closed terminal must not leave the namespaces behind.
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGINT);
    stop_signals.add(Signal::SIGTERM);
    stop_signals.add(Signal::SIGHUP);
    stop_signals
        .thread_block()
        .map_err(|errno| io_error("cannot block SIGINT/SIGTERM/SIGHUP", errno))?;
    let signals = SignalFd::with_flags(
        &stop_signals,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|errno| io_error("cannot create a signalfd", errno))?;

    // The control socket first: a bad path then fails before any namespace
    // is made. Commands sent before `ready` wait in the listen backlog.
    let control = settings
        .control
        .as_deref()
        .map(ControlSocket::bind)
        .transpose()?;
    let namespaces = Namespaces::create(&settings.name)?;
    let client_tun = namespaces.open_tun(&namespaces.client, CLIENT_SYSCTLS)?;
    let server_tun = namespaces.open_tun(&namespaces.server, SERVER_SYSCTLS)?;
    namespaces.configure()?;

    // Each direction gets its own random stream, both derived from the seed.
    let mut seeds = Xoshiro256PlusPlus::seed_from_u64(settings.seed);
    let mut emulator = Emulator {
        up: Link::new(settings.configs.up.clone(), seeds.next_u64()),
        down: Link::new(settings.configs.down.clone(), seeds.next_u64()),
        configs: settings.configs,
        rebinder: Rebinder::new(),
        client_host: 1,
        namespaces: &namespaces,
        client_tun,
        server_tun,
        scratch: vec![0; MAX_PACKET],
        pool: Vec::new(),
        tun_write_errors: 0,
    };
    eprintln!(
        "sshq-linkem: namespaces {} and {}, seed {}",
        namespaces.client, namespaces.server, settings.seed
    );
    // The kernel may fire a timer up to 50 us late by default, to batch
    // wake-ups; packets are due at exact instants, so ask for no slack.
    if let Err(errno) = nix::sys::prctl::set_timerslack(1) {
        eprintln!(
            "sshq-linkem: cannot reduce timer slack ({errno}); delays may run up to 50 us late"
        );
    }
    let mut stdout = io::stdout();
    writeln!(stdout, "ready")
        .and_then(|()| stdout.flush())
        .map_err(|source| Error::Io {
            context: "cannot write `ready` to stdout".to_string(),
            source,
        })?;
    let deadline = settings.duration.map(|duration| Instant::now() + duration);
    let result = emulator.forward(&signals, control, deadline);
    eprintln!("sshq-linkem: final stats {}", emulator.stats_json());
    result
}

fn io_error(context: &str, errno: Errno) -> Error {
    Error::Io {
        context: context.to_string(),
        source: io::Error::from(errno),
    }
}

struct Emulator<'a> {
    /// Client → server.
    up: Link,
    /// Server → client.
    down: Link,
    configs: LinkConfigs,
    rebinder: Rebinder,
    /// The client's address is 10.77.0.`client_host`.
    client_host: u8,
    namespaces: &'a Namespaces,
    client_tun: File,
    server_tun: File,
    /// Every packet is read here first, then copied into a right-sized buffer.
    scratch: Vec<u8>,
    pool: Vec<Vec<u8>>,
    tun_write_errors: u64,
}

#[derive(Clone, Copy)]
enum Side {
    Client,
    Server,
}

/// The `stats` answer.
#[derive(Serialize)]
struct Stats {
    up: LinkStats,
    down: LinkStats,
    /// Packets dropped by the NAT after a rebind (stale port, or table full).
    dropped_nat: u64,
    tun_write_errors: u64,
    blackout: bool,
    client_address: String,
    rebinds: u64,
}

impl Emulator<'_> {
    fn forward(
        &mut self,
        signals: &SignalFd,
        mut control: Option<ControlSocket>,
        deadline: Option<Instant>,
    ) -> Result<(), Error> {
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                eprintln!("sshq-linkem: --duration elapsed, stopping");
                return Ok(());
            }
            let wake = [self.up.poll_timeout(), self.down.poll_timeout(), deadline]
                .into_iter()
                .flatten()
                .min();
            let timeout =
                wake.map(|wake| TimeSpec::from_duration(wake.saturating_duration_since(now)));

            let mut fds = vec![
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.client_tun.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.server_tun.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(control) = &control {
                fds.extend(control.poll_fds());
            }
            match ppoll(&mut fds, timeout, None) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(errno) => return Err(io_error("poll failed", errno)),
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|fd| fd.revents().is_some_and(|events| !events.is_empty()))
                .collect();
            drop(fds);

            if ready[0] {
                if let Ok(Some(signal)) = signals.read_signal() {
                    let name = Signal::try_from(signal.ssi_signo as i32)
                        .map_or("a signal", |signal| signal.as_str());
                    eprintln!("sshq-linkem: received {name}, stopping");
                    return Ok(());
                }
            }
            if ready[1] {
                self.read_packets(Side::Client)?;
            }
            if ready[2] {
                self.read_packets(Side::Server)?;
            }
            self.deliver(Instant::now());
            if let Some(control) = &mut control {
                control.serve(&ready[3..], self);
            }
        }
    }

    /// Reads up to a batch of packets from one side and hands them to the
    /// link. A read error means the device is gone (e.g. its namespace was
    /// deleted under us): nothing more can be forwarded, so it ends the run.
    fn read_packets(&mut self, from: Side) -> Result<(), Error> {
        for _ in 0..READ_BATCH {
            let tun = match from {
                Side::Client => &self.client_tun,
                Side::Server => &self.server_tun,
            };
            let length = match (&*tun).read(&mut self.scratch) {
                Ok(0) => return Ok(()),
                Ok(length) => length,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    let ns = match from {
                        Side::Client => &self.namespaces.client,
                        Side::Server => &self.namespaces.server,
                    };
                    return Err(Error::Io {
                        context: format!("reading {} in {ns}", netns::TUN_NAME),
                        source,
                    });
                }
            };
            let mut packet = self.pool.pop().unwrap_or_default();
            packet.clear();
            packet.extend_from_slice(&self.scratch[..length]);
            let now = Instant::now();
            match from {
                Side::Client => {
                    if self.rebinder.outbound(&mut packet) {
                        self.up.handle_packet(now, packet);
                    } else {
                        self.recycle(packet);
                    }
                }
                Side::Server => {
                    self.down.handle_packet(now, packet);
                }
            }
        }
        Ok(())
    }

    /// Writes every packet that is due to the far side.
    fn deliver(&mut self, now: Instant) {
        while let Some(packet) = self.up.poll_transmit(now) {
            write_packet(&self.server_tun, &packet, &mut self.tun_write_errors);
            self.recycle(packet);
        }
        while let Some(mut packet) = self.down.poll_transmit(now) {
            // The NAT sits at the client's end, so replies are translated
            // on arrival there, with the mappings of that moment.
            if self.rebinder.inbound(&mut packet) {
                write_packet(&self.client_tun, &packet, &mut self.tun_write_errors);
            }
            self.recycle(packet);
        }
    }

    fn recycle(&mut self, packet: Vec<u8>) {
        if self.pool.len() < POOL_LIMIT {
            self.pool.push(packet);
        }
    }

    /// Runs one control command and returns its answer line.
    fn execute(&mut self, line: &str) -> String {
        match control::parse(line) {
            Err(why) => format!("error: {why}"),
            Ok(Command::Set { option, value }) => {
                let mut configs = self.configs.clone();
                match options::apply(&mut configs, &option, &value) {
                    Ok(()) => {
                        self.up.set_config(configs.up.clone());
                        self.down.set_config(configs.down.clone());
                        self.configs = configs;
                        "ok".to_string()
                    }
                    Err(why) => format!("error: {why}"),
                }
            }
            Ok(Command::Blackout(on)) => {
                self.up.set_blackout(on);
                self.down.set_blackout(on);
                "ok".to_string()
            }
            Ok(Command::UdpBlock(on)) => {
                self.up.set_udp_blocked(on);
                self.down.set_udp_blocked(on);
                "ok".to_string()
            }
            Ok(Command::Roam) => {
                // .1 to .254 in turn, then around again.
                let next = if self.client_host >= 254 {
                    1
                } else {
                    self.client_host + 1
                };
                match self.namespaces.move_client(self.client_host, next) {
                    Ok(()) => {
                        self.client_host = next;
                        format!("ok {}", netns::client_address(next))
                    }
                    Err(error) => format!("error: roaming failed: {error}"),
                }
            }
            Ok(Command::Rebind) => {
                self.rebinder.rebind();
                "ok".to_string()
            }
            Ok(Command::Stats) => format!("ok {}", self.stats_json()),
        }
    }

    fn stats_json(&self) -> String {
        let stats = Stats {
            up: self.up.stats(),
            down: self.down.stats(),
            dropped_nat: self.rebinder.dropped(),
            tun_write_errors: self.tun_write_errors,
            blackout: self.up.blackout(),
            client_address: netns::client_address(self.client_host),
            rebinds: self.rebinder.rebinds(),
        };
        serde_json::to_string(&stats).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
    }
}

/// Writes one packet into a TUN device. A TUN write does not block; it fails
/// only for packets the kernel rejects (counted, and the first few logged).
fn write_packet(tun: &File, packet: &[u8], errors: &mut u64) {
    if let Err(error) = (&*tun).write(packet) {
        *errors += 1;
        if *errors <= 5 {
            eprintln!(
                "sshq-linkem: writing a {}-byte packet to {}: {error}",
                packet.len(),
                netns::TUN_NAME
            );
        }
    }
}

/// The Unix socket that takes control commands; removed when dropped.
struct ControlSocket {
    path: PathBuf,
    listener: UnixListener,
    clients: Vec<ControlClient>,
}

struct ControlClient {
    stream: UnixStream,
    /// Bytes received that do not yet form a whole line.
    pending: Vec<u8>,
}

impl ControlSocket {
    fn bind(path: &Path) -> Result<ControlSocket, Error> {
        let context = |what: &str| format!("--control {}: {what}", path.display());
        match std::fs::symlink_metadata(path) {
            Ok(metadata) if metadata.file_type().is_socket() => {
                // Left by an earlier run that was killed.
                std::fs::remove_file(path).map_err(|source| Error::Io {
                    context: context("cannot remove the stale socket"),
                    source,
                })?;
            }
            Ok(_) => {
                return Err(Error::Usage(context(
                    "exists and is not a socket; choose another path",
                )))
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(path).map_err(|source| Error::Io {
            context: context("cannot listen"),
            source,
        })?;
        listener.set_nonblocking(true).map_err(|source| Error::Io {
            context: context("cannot make the socket non-blocking"),
            source,
        })?;
        Ok(ControlSocket {
            path: path.to_path_buf(),
            listener,
            clients: Vec::new(),
        })
    }

    /// The listener first, then each client, in the order `serve` expects.
    fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let mut fds = vec![PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            self.clients
                .iter()
                .map(|client| PollFd::new(client.stream.as_fd(), PollFlags::POLLIN)),
        );
        fds
    }

    /// Accepts new connections and answers the commands of those ready.
    /// `ready` has one entry per descriptor of `poll_fds`.
    fn serve(&mut self, ready: &[bool], emulator: &mut Emulator) {
        let mut index = 0;
        self.clients.retain_mut(|client| {
            index += 1;
            !ready.get(index).copied().unwrap_or(false) || client.serve(emulator)
        });
        if ready.first().copied().unwrap_or(false) {
            self.accept();
        }
    }

    fn accept(&mut self) {
        // Bounded: at most MAX_CONTROL_CLIENTS + 1 connections per wake-up.
        for _ in 0..=MAX_CONTROL_CLIENTS {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    eprintln!("sshq-linkem: control socket: {error}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CONTROL_CLIENTS || stream.set_nonblocking(true).is_err() {
                let _ = (&stream).write_all(b"error: too many control connections\n");
                continue;
            }
            self.clients.push(ControlClient {
                stream,
                pending: Vec::new(),
            });
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ControlClient {
    /// Reads what arrived and answers each whole line. Returns false when
    /// the connection should be closed.
    fn serve(&mut self, emulator: &mut Emulator) -> bool {
        let mut chunk = [0u8; 4096];
        let mut open = true;
        // Bounded: the line limit stops a client that sends without end.
        while self.pending.len() <= MAX_LINE {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(length) => self.pending.extend_from_slice(&chunk[..length]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        while let Some(end) = self.pending.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            if !self.answer(&line, emulator) {
                return false;
            }
        }
        if self.pending.len() > MAX_LINE {
            let _ = self.reply(&format!("error: command longer than {MAX_LINE} bytes"));
            return false;
        }
        if !open && !self.pending.is_empty() {
            // A last command without its newline before the client closed.
            let line = std::mem::take(&mut self.pending);
            self.answer(&line, emulator);
        }
        open
    }

    fn answer(&mut self, line: &[u8], emulator: &mut Emulator) -> bool {
        let answer = match std::str::from_utf8(line) {
            Ok(text) => emulator.execute(text),
            Err(_) => "error: the command is not UTF-8 text".to_string(),
        };
        self.reply(&answer).is_ok()
    }

    /// Answers are short and a client reads each before sending the next, so
    /// the socket buffer has room; a client that lets it fill is dropped
    /// rather than allowed to stall the packet path.
    fn reply(&mut self, answer: &str) -> io::Result<()> {
        self.stream.write_all(format!("{answer}\n").as_bytes())
    }
}
