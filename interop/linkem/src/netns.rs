//! The two network namespaces, their TUN devices and addresses.
//!
//! Namespaces are made and removed with iproute2's `ip netns`, which keeps
//! them as bind mounts under /run/netns (where `ip netns exec` and `ip -n`
//! find them) and unmounts them on `ip netns del`, so nothing is left
//! mounted. Each TUN device is opened by a short-lived thread that enters
//! the namespace with setns(2): the device is created in that thread's
//! namespace, and its file descriptor keeps working from any thread.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::{setns, CloneFlags};

use crate::Error;

/// Name of the TUN device in both namespaces.
pub const TUN_NAME: &str = "tun0";
/// The client's first address; `roam` moves it to .2, .3, ... in the same /24.
pub const CLIENT_NETWORK: [u8; 3] = [10, 77, 0];
pub const SERVER_ADDRESS: &str = "10.77.1.1";
const CLIENT_SUBNET: &str = "10.77.0.0/24";
const SERVER_SUBNET: &str = "10.77.1.0/24";

const NETNS_DIR: &str = "/run/netns";
/// Length of each TUN device's queue (see `configure`).
const TUN_QUEUE: &str = "5000";

/// Capability bits (linux/capability.h) this program needs.
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Fails unless this process may create namespaces (CAP_SYS_ADMIN: they are
/// mounts) and TUN devices and addresses (CAP_NET_ADMIN).
pub fn check_privileges() -> Result<(), Error> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|source| Error::Io {
        context: "cannot read /proc/self/status to check capabilities".to_string(),
        source,
    })?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| effective & (1u64 << bit) != 0;
    if has(CAP_NET_ADMIN) && has(CAP_SYS_ADMIN) {
        Ok(())
    } else {
        Err(Error::NeedsPrivilege)
    }
}

/// A valid namespace base name: short, and safe as a file name and argument.
pub fn check_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= 32
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--name '{name}': use 1 to 32 letters, digits, '-', '_' or '.', not starting with \
             '-' or '.'"
        )))
    }
}

/// Runs `ip ARGS...`, turning a failure into an error that shows the command
/// and what `ip` said.
pub fn ip(args: &[&str]) -> Result<(), Error> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| Error::Io {
            context: "cannot run `ip` (from iproute2; install it with apt-get install iproute2)"
                .to_string(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(Error::Setup(format!(
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// The client and server namespaces; deleted when dropped, including on
/// error paths and panics.
pub struct Namespaces {
    pub client: String,
    pub server: String,
    created: Vec<String>,
}

impl Namespaces {
    /// Creates `NAME-c` and `NAME-s`, first deleting stale ones of that name.
    pub fn create(name: &str) -> Result<Namespaces, Error> {
        let mut namespaces = Namespaces {
            client: format!("{name}-c"),
            server: format!("{name}-s"),
            created: Vec::new(),
        };
        for ns in [namespaces.client.clone(), namespaces.server.clone()] {
            if Path::new(NETNS_DIR).join(&ns).exists() {
                eprintln!("sshq-linkem: deleting stale namespace {ns}");
                ip(&["netns", "del", &ns])?;
            }
            ip(&["netns", "add", &ns])?;
            namespaces.created.push(ns);
        }
        Ok(namespaces)
    }

    /// Opens the TUN device in namespace `ns` and writes `sysctls` (paths
    /// under /proc/sys/net, which resolve in the namespace of the writing
    /// thread) before the device is brought up.
    pub fn open_tun(&self, ns: &str, sysctls: &[Sysctl]) -> Result<File, Error> {
        let ns_path: PathBuf = Path::new(NETNS_DIR).join(ns);
        let context = format!("cannot create {TUN_NAME} in namespace {ns}");
        let opened = std::thread::scope(|scope| {
            scope
                .spawn(|| -> io::Result<File> {
                    let ns_file = File::open(&ns_path)?;
                    setns(&ns_file, CloneFlags::CLONE_NEWNET)?;
                    let tun = create_tun(TUN_NAME)?;
                    for sysctl in sysctls {
                        sysctl.write()?;
                    }
                    Ok(tun)
                })
                .join()
        });
        match opened {
            Ok(Ok(tun)) => Ok(tun),
            Ok(Err(source)) => Err(Error::Io { context, source }),
            Err(_) => Err(Error::Setup(format!(
                "{context}: the setup thread panicked"
            ))),
        }
    }

    /// Addresses, routes and links: the client has 10.77.0.1/24, the server
    /// 10.77.1.1/24, each routes the other's /24 into its TUN device.
    pub fn configure(&self) -> Result<(), Error> {
        let client_address = format!("{}/24", client_address(1));
        let server_address = format!("{SERVER_ADDRESS}/24");
        for (ns, address, peer_subnet) in [
            (&self.client, client_address.as_str(), SERVER_SUBNET),
            (&self.server, server_address.as_str(), CLIENT_SUBNET),
        ] {
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "addr", "add", address, "dev", TUN_NAME])?;
            // The device's queue holds packets the kernel has sent but this
            // process has not read yet. Linux's default of 500 overflows when
            // a TCP sender bursts while the emulator is briefly descheduled,
            // adding losses nobody configured (hundreds per 4 s iperf3 run at
            // 25 ms each way); 5000 absorbs such hiccups. It is not a queue
            // of the emulated link: the emulator drains it at full speed and
            // applies `--queue-packets` itself.
            ip(&[
                "-n",
                ns,
                "link",
                "set",
                TUN_NAME,
                "txqueuelen",
                TUN_QUEUE,
                "up",
            ])?;
            // No `src` on this route: the kernel then picks the device's
            // primary address, so after a roam new flows use the new one.
            ip(&["-n", ns, "route", "add", peer_subnet, "dev", TUN_NAME])?;
        }
        Ok(())
    }

    /// Moves the client from 10.77.0.`from` to 10.77.0.`to`: adds the new
    /// address, then deletes the old; with promote_secondaries the new one
    /// becomes primary instead of being deleted along with it.
    pub fn move_client(&self, from: u8, to: u8) -> Result<(), Error> {
        let new = format!("{}/24", client_address(to));
        let old = format!("{}/24", client_address(from));
        ip(&["-n", &self.client, "addr", "add", &new, "dev", TUN_NAME])?;
        ip(&["-n", &self.client, "addr", "del", &old, "dev", TUN_NAME])
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.created.drain(..) {
            if let Err(error) = ip(&["netns", "del", &ns]) {
                eprintln!("sshq-linkem: could not delete namespace {ns}: {error}");
            }
        }
    }
}

pub fn client_address(host: u8) -> String {
    let [a, b, c] = CLIENT_NETWORK;
    format!("{a}.{b}.{c}.{host}")
}

/// Creates TUN device `name` (IPv4/IPv6 packets without a protocol-info
/// header) in the calling thread's network namespace, non-blocking.
fn create_tun(name: &str) -> io::Result<File> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is plain old data, for which all-zero bytes are valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let name_bytes = name.as_bytes();
    if name_bytes.len() >= request.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (slot, &byte) in request.ifr_name.iter_mut().zip(name_bytes) {
        *slot = byte as libc::c_char;
    }
    request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which outlives the call;
    // the descriptor is open and owned by `tun`.
    let result = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut request) };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tun)
}

/// A kernel setting written while setting up a namespace.
pub struct Sysctl {
    pub path: &'static str,
    pub value: &'static str,
    /// An optional setting is skipped when the kernel lacks it (e.g. IPv6
    /// settings on a kernel without IPv6).
    pub optional: bool,
}

impl Sysctl {
    fn write(&self) -> io::Result<()> {
        match std::fs::write(self.path, self.value) {
            Err(error) if self.optional && error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(io::Error::new(
                error.kind(),
                format!("{}: {error}", self.path),
            )),
            Ok(()) => Ok(()),
        }
    }
}
