"""The servers an experiment runs, and the client command lines that reach them.

In the server namespace: OpenSSH's sshd, sshqd (QUIC and TCP on one port),
a second sshqd that only relays QUIC tunnel streams to that sshd
(`QuicRelay`, for "OpenSSH carried in one QUIC stream"), a third that runs
the one-stream baseline (`OneStreamBaseline`: sshq over QUIC with every
channel on one stream), and a bulk source (a TCP server sending zeros as
fast as its peer reads them); the transports are client command lines run
in the client namespace. All
servers share one Ed25519 host key, so one known_hosts file serves every
transport. Sessions log in as a dedicated user whose shell reads no rc
files (root's rc on these machines is slow).

`start_loopback_servers` is the benchmarks' pair on loopback instead.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

from .keys import bench_user, keygen
from .link import (BULK_LOCAL_PORT, BULK_PORT, DEFAULT_CONGESTION, ONE_STREAM_PORT, RELAY_PORT,
                   SERVER_ADDR, SSHD_PORT, SSHQD_PORT)
from .paths import LINKEM, SSHQ, SSHQD
from .ports import free_port, wait_tcp
from .probes import probe_argv
from .procs import in_ns, stop

# The transports every experiment compares, in the order they are run and
# plotted. The names are what the CSVs and summary.json carry.
TRANSPORTS = ("sshq-tcp", "openssh", "openssh-quic-tunnel", "sshq-one-stream", "sshq-quic", "sshq-auto",
              "mosh")
TRANSPORT_LABELS = {
    "sshq-tcp": "sshq over TCP",
    "openssh": "OpenSSH (TCP)",
    "openssh-quic-tunnel": "OpenSSH in one QUIC stream",
    "sshq-one-stream": "sshq over QUIC, all channels on one stream",
    "sshq-quic": "sshq over QUIC (stream per channel)",
    "sshq-auto": "sshq, Transport=auto",
    "mosh": "Mosh (UDP; started over OpenSSH)",
}
# What experiments run unless --transports says otherwise: the one-stream
# baseline only matters to the head-of-line study (hol.py asks for it).
# sshq-auto (QUIC first, TCP where UDP does not pass) only matters to the
# roaming lab, which adds it, and Mosh, a terminal-state protocol rather than
# a byte stream (see `probes.ScreenCounterClient`).
DEFAULT_TRANSPORTS = tuple(t for t in TRANSPORTS if t not in ("sshq-one-stream", "sshq-auto", "mosh"))
# Transports whose client shows a screen instead of relaying bytes.
SCREEN_TRANSPORTS = ("mosh",)


def require_root_and_tools():
    if os.geteuid() != 0:
        raise SystemExit("lab: the link emulator makes network namespaces, which needs root "
                         "(or CAP_NET_ADMIN): run this as root, e.g. `sudo interop/run hol`")
    for tool in (SSHQ, SSHQD, LINKEM):
        if not tool.exists():
            raise SystemExit(f"lab: {tool} is missing: run `cargo build --release` "
                             "(interop/run does) and retry")
    if not Path("/usr/sbin/sshd").exists():
        raise SystemExit("lab: /usr/sbin/sshd is missing: apt-get install openssh-server")


class Servers:
    """sshd, sshqd, the relaying sshqd and the bulk source, in the server namespace."""

    def __init__(self, link, workdir, quic_cc=DEFAULT_CONGESTION):
        self.link, self.dir = link, Path(workdir)
        # sshq's `CongestionControl` for QUIC, on both sides.
        self.quic_cc = quic_cc
        self.user = bench_user()
        self.procs = []

    def __enter__(self):
        d = self.dir
        os.chmod(d, 0o755)
        keygen(d / "host")
        keygen(d / "user")
        shutil.copy(d / "user.pub", d / "authorized_keys")
        os.chmod(d / "authorized_keys", 0o644)
        os.makedirs("/run/sshd", exist_ok=True)
        common = (f"ListenAddress {SERVER_ADDR}\nListenAddress 127.0.0.1\nHostKey {d}/host\n"
                  f"AuthorizedKeysFile {d}/authorized_keys\n")
        sshd_common = common
        (d / "sshd_config").write_text(
            f"Port {SSHD_PORT}\n{sshd_common}StrictModes no\nUsePAM no\nPidFile none\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nAllowTcpForwarding yes\n")
        if self.quic_cc:
            common += f"CongestionControl {self.quic_cc}\n"
        (d / "sshqd_config").write_text(f"Port {SSHQD_PORT}\n{common}Transports quic,tcp\n")
        (d / "relay_config").write_text(
            f"Port {RELAY_PORT}\n{common}Transports quic\nQuicRelay 127.0.0.1:{SSHD_PORT}\n")
        (d / "one_stream_config").write_text(
            f"Port {ONE_STREAM_PORT}\n{common}Transports quic\nOneStreamBaseline yes\n")
        ns = self.link.server_ns
        self.log = open(d / "servers.log", "w")
        self._start(in_ns(ns, ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")]))
        self._start(in_ns(ns, [str(SSHQD), "-D", "-e", "-f", str(d / "sshqd_config")]))
        self._start(in_ns(ns, [str(SSHQD), "-D", "-e", "-f", str(d / "relay_config")]))
        self._start(in_ns(ns, [str(SSHQD), "-D", "-e", "-f", str(d / "one_stream_config")]))
        self._start(probe_argv(ns, "bulk-source", "--port", BULK_PORT))
        self._wait_listening()
        return self

    def _start(self, argv):
        self.procs.append(subprocess.Popen(argv, stdout=self.log, stderr=self.log))

    def _wait_listening(self, timeout=15):
        deadline = time.time() + timeout
        want = {SSHD_PORT, SSHQD_PORT, BULK_PORT}
        while time.time() < deadline:
            out = subprocess.run(in_ns(self.link.server_ns, ["ss", "-ltnH"]), capture_output=True, text=True).stdout
            udp = subprocess.run(in_ns(self.link.server_ns, ["ss", "-lunH"]), capture_output=True, text=True).stdout
            tcp_ok = all(f":{p} " in out for p in want)
            if tcp_ok and all(f":{p} " in udp for p in (RELAY_PORT, SSHQD_PORT, ONE_STREAM_PORT)):
                return
            for p in self.procs:
                if p.poll() is not None:
                    raise SystemExit(f"lab: a server exited early: {p.args}; log {self.dir}/servers.log:\n"
                                     + (self.dir / "servers.log").read_text()[-1500:])
            time.sleep(0.1)
        raise SystemExit(f"lab: servers not listening after {timeout} s; log {self.dir}/servers.log")

    def __exit__(self, *exc):
        for p in self.procs:
            stop(p)
        self.log.close()

    # ------------------------------------------------------------ clients

    def client_argv(self, transport, tty=False, forward_bulk=False):
        """The client command line (without the remote command) for `transport`."""
        d = self.dir
        common = ["-F", "/dev/null", "-i", str(d / "user"), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                  "-o", f"UserKnownHostsFile={d}/known_hosts", "-o", "StrictHostKeyChecking=accept-new"]
        if tty:
            common.append("-tt")
        if forward_bulk:
            common += ["-L", f"127.0.0.1:{BULK_LOCAL_PORT}:127.0.0.1:{BULK_PORT}"]
        target = f"{self.user}@{SERVER_ADDR}"
        quic_cc = ["-o", f"CongestionControl={self.quic_cc}"] if self.quic_cc else []
        if transport == "sshq-tcp":
            return [str(SSHQ), *common, "-o", "Transport=tcp", "-p", str(SSHQD_PORT), target]
        if transport == "sshq-quic":
            return [str(SSHQ), *common, *quic_cc, "-o", "Transport=quic", "-p", str(SSHQD_PORT), target]
        if transport == "sshq-auto":
            return [str(SSHQ), *common, *quic_cc, "-o", "Transport=auto", "-p", str(SSHQD_PORT), target]
        if transport == "sshq-one-stream":
            return [str(SSHQ), *common, *quic_cc, "-o", "Transport=quic", "-o", "OneStreamBaseline=yes",
                    "-p", str(ONE_STREAM_PORT), target]
        if transport == "openssh":
            return ["ssh", *common, "-p", str(SSHD_PORT), target]
        if transport == "openssh-quic-tunnel":
            proxy = (f"{SSHQ} proxy -o UserKnownHostsFile={d}/known_hosts "
                     f"-o StrictHostKeyChecking=accept-new {' '.join(quic_cc)} %h %p")
            return ["ssh", *common, "-o", f"ProxyCommand={proxy}", "-p", str(RELAY_PORT), target]
        if transport == "mosh":
            # mosh logs in with ssh, starts mosh-server, then talks UDP to
            # it; the command (appended by the probe) follows `--`. No
            # local echo prediction: every echo shown is the server's.
            if not shutil.which("mosh"):
                raise SystemExit("lab: mosh is missing: apt-get install mosh (interop/run roam does)")
            ssh = " ".join(["ssh", *[a for a in common if a != "-tt"], "-p", str(SSHD_PORT)])
            return ["mosh", "--predict=never", f"--ssh={ssh}", "--server=env LANG=C.UTF-8 mosh-server",
                    target, "--"]
        raise ValueError(f"unknown transport {transport}")

    def server_port(self, transport):
        """The server-side TCP port whose sockets carry `transport` (None for QUIC)."""
        return {"sshq-tcp": SSHQD_PORT, "openssh": SSHD_PORT}.get(transport)


def start_loopback_servers(tmp, procs, sshd_extra=""):
    """Keys under `tmp`, then OpenSSH's sshd and sshqd (QUIC and TCP) on free
    loopback ports, each with its own config; appends them to `procs` (the
    caller stops them) and returns (sshd_port, sshqd_port) once both listen."""
    keygen(tmp / "host")
    keygen(tmp / "user")
    shutil.copy(tmp / "user.pub", tmp / "authorized_keys")
    os.chmod(tmp / "authorized_keys", 0o644)
    sshd_port, sshqd_port = free_port(), free_port()
    common = f"ListenAddress 127.0.0.1\nHostKey {tmp}/host\nAuthorizedKeysFile {tmp}/authorized_keys\n"
    (tmp / "sshd_config").write_text(
        f"Port {sshd_port}\n{common}StrictModes no\nUsePAM no\nPidFile none\n"
        f"PasswordAuthentication no\nKbdInteractiveAuthentication no\n{sshd_extra}")
    (tmp / "sshqd_config").write_text(f"Port {sshqd_port}\n{common}Transports quic,tcp\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)
    log = open(tmp / "servers.log", "w")
    procs.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(tmp / "sshd_config")], stderr=log))
    procs.append(subprocess.Popen([str(SSHQD), "-D", "-e", "-f", str(tmp / "sshqd_config")], stderr=log))
    wait_tcp(sshd_port)
    wait_tcp(sshqd_port)
    return sshd_port, sshqd_port
