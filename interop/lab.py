#!/usr/bin/env python3
"""The network lab shared by the lossy-link experiments (hol, setup, bulk, roam).

What it sets up, for one experiment run:

- the link: `sshq-linkem` (interop/linkem) makes two network namespaces,
  NAME-c (the client, 10.77.0.1) and NAME-s (the server, 10.77.1.1), joined
  by TUN devices and a userspace process that applies delay and loss; the
  experiments change delay and loss between cells through its control
  socket, so every transport of a cell is measured on the same link;
- the servers, in NAME-s: OpenSSH's sshd, sshqd (QUIC and TCP on one port),
  a second sshqd that only relays QUIC tunnel streams to that sshd
  (`QuicRelay`, for "OpenSSH carried in one QUIC stream"), and a bulk source
  (a TCP server sending zeros as fast as its peer reads them);
- the four transports, as client command lines run in NAME-c: sshq over
  TCP, OpenSSH, OpenSSH through `sshq proxy` (the tunnel), sshq over QUIC.

All servers share one Ed25519 host key, so one known_hosts file serves
every transport. Sessions log in as a dedicated user whose shell reads no rc
files (root's rc on these machines is slow).

The module is also the program the experiments run inside the client
namespace (`python3 interop/lab.py probe-echo ...` and friends, see the
bottom of this file): a probe started with `ip netns exec NAME-c` sees the
client namespace's network, which the experiment's own process does not.

Percentiles use the nearest-rank definition (see `percentile`): always a
measured value, never an interpolation, and a p99 from fewer than 100
samples is the maximum, so such p99s are flagged.
"""

import argparse
import csv
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SSHQ = ROOT / "target/release/sshq"
SSHQD = ROOT / "target/release/sshqd"
# The link emulator (interop/linkem); SSHQ_LINKEM names another build of it.
LINKEM = Path(os.environ.get("SSHQ_LINKEM", ROOT / "target/release/sshq-linkem"))
BENCH_USER = "sshqbench"

CLIENT_ADDR = "10.77.0.1"
SERVER_ADDR = "10.77.1.1"

# The transports every experiment compares, in the order they are run and
# plotted. The names are what the CSVs and summary.json carry.
TRANSPORTS = ("sshq-tcp", "openssh", "openssh-quic-tunnel", "sshq-quic")
TRANSPORT_LABELS = {
    "sshq-tcp": "sshq over TCP",
    "openssh": "OpenSSH (TCP)",
    "openssh-quic-tunnel": "OpenSSH in one QUIC stream",
    "sshq-quic": "sshq over QUIC (stream per channel)",
}

# The congestion controllers the experiments use unless told otherwise:
# CUBIC on both, as quinn's default is CUBIC (sshq's `CongestionControl`).
DEFAULT_CONGESTION = "cubic"
CONGESTION_CHOICES = ("cubic", "bbr")

# The server's ports inside NAME-s (its own namespace: nothing else there).
SSHD_PORT, SSHQD_PORT, RELAY_PORT, BULK_PORT = 2201, 2202, 2203, 2204
# The client's -L port for the bulk channel, inside NAME-c.
BULK_LOCAL_PORT = 2299


# ---------------------------------------------------------------- statistics

def percentile(samples, pct):
    """The nearest-rank percentile: the smallest sample with at least `pct` %
    of the samples at or below it (sorted[ceil(pct/100 * n) - 1]).

    Correct for any n >= 1; with n < 100, the 99th percentile is the maximum.
    """
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(samples_ms):
    """p50, p95, p99, max and count of a list of latencies, in ms."""
    def rounded(v):
        return None if v is None else round(v, 2)
    return {
        "p50_ms": rounded(percentile(samples_ms, 50)),
        "p95_ms": rounded(percentile(samples_ms, 95)),
        "p99_ms": rounded(percentile(samples_ms, 99)),
        "max_ms": rounded(max(samples_ms) if samples_ms else None),
        "samples": len(samples_ms),
        # A nearest-rank p99 of fewer than 100 samples is just the maximum.
        "p99_from_few_samples": len(samples_ms) < 100,
    }


# ---------------------------------------------------------------- results

def results_dir(name, override=None):
    out = Path(override) if override else ROOT / "interop/results" / name
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_csv(path, rows, fields):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow(row)


def pyplot():
    """matplotlib's pyplot without a display (interop/run installs Debian's
    python3-matplotlib and runs the experiments with /usr/bin/python3)."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("lab: matplotlib is missing: apt-get install python3-matplotlib, "
                         "and run the experiments through interop/run (it uses /usr/bin/python3)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def git_commit():
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def run_metadata():
    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": git_commit(), "openssh": ssh_v,
            "kernel": os.uname().release, "cpus": os.cpu_count()}


# ---------------------------------------------------------------- processes

def in_ns(ns, argv):
    """`argv` run inside network namespace `ns`."""
    return ["ip", "netns", "exec", ns, *argv]


def probe_argv(ns, subcommand, *args):
    """This module run as a probe inside namespace `ns` (with this interpreter)."""
    return in_ns(ns, [sys.executable, str(Path(__file__).resolve()), subcommand, *map(str, args)])


def stop(proc, grace=3.0):
    """SIGTERM, then SIGKILL after `grace` seconds; waits for the exit."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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


def bench_user():
    """A user with /bin/sh and no rc files, created when missing (as root)."""
    if os.geteuid() != 0:
        return subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    if subprocess.run(["id", BENCH_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", BENCH_USER], check=True)
    subprocess.run(["usermod", "-p", "*", BENCH_USER], check=True)  # key login only
    return BENCH_USER


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


# ---------------------------------------------------------------- the link

class Link:
    """A running `sshq-linkem`: two namespaces and the impairments between them.

    Use as a context manager; on exit the emulator is stopped, which deletes
    both namespaces (and with them everything still listening in them).
    """

    def __init__(self, name, workdir, rate_mbit=None, queue_packets=None, seed=1):
        self.name = name
        self.client_ns, self.server_ns = f"{name}-c", f"{name}-s"
        self.control_path = str(Path(workdir) / "linkem.sock")
        self.log_path = Path(workdir) / "linkem.log"
        self.argv = [str(LINKEM), "--name", name, "--seed", str(seed), "--control", self.control_path]
        if rate_mbit:
            self.argv += ["--rate-mbit", str(rate_mbit), "--queue-packets", str(queue_packets)]
        self.rate_mbit, self.queue_packets = rate_mbit, queue_packets
        self.proc = None

    def __enter__(self):
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=log, text=True)
        # The emulator prints `ready` once packets flow; bounded by a timer
        # that kills it, since readline() itself cannot time out.
        timer = threading.Timer(20, self.proc.kill)
        timer.start()
        line = self.proc.stdout.readline().strip()
        timer.cancel()
        if line != "ready":
            stop(self.proc)
            raise SystemExit(f"lab: sshq-linkem did not become ready (said {line!r}); "
                             f"its log: {self.log_path.read_text()[-500:]}")
        return self

    def __exit__(self, *exc):
        stop(self.proc, grace=10)

    def control(self, command):
        """Sends one control command; returns the answer after `ok`."""
        text = linkem_control(self.control_path, command)
        if not text.startswith("ok"):
            raise RuntimeError(f"sshq-linkem refused `{command}`: {text}")
        return text[2:].strip()

    def set_path(self, rtt_ms, loss_pct):
        """Delay of half the RTT and `loss_pct` random loss, each direction."""
        self.control(f"set delay-ms {rtt_ms / 2}")
        self.control(f"set loss-pct {loss_pct}")

    def set_tcp_congestion(self, algorithm):
        """Sets the TCP congestion controller on the routes between the namespaces.

        A route's `congctl` applies to every TCP socket using it, so OpenSSH
        (which cannot be told per socket) and sshq get the same controller;
        the namespace-wide sysctl cannot be changed inside a namespace here.
        """
        for ns in (self.client_ns, self.server_ns):
            routes = subprocess.run(["ip", "-n", ns, "-o", "route", "show"], capture_output=True,
                                    text=True, check=True).stdout.splitlines()
            for route in routes:
                fields = route.split()
                if not fields or "tun" not in route:
                    continue
                if "congctl" in fields:  # drop an earlier setting
                    i = fields.index("congctl")
                    del fields[i:i + 2]
                subprocess.run(["ip", "-n", ns, "route", "replace", *fields, "congctl", algorithm], check=True)


def tcp_congestion_in_use(ns, port):
    """The congestion controllers `ss` shows for established TCP connections
    from local port `port` in namespace `ns` to the client's side of the
    link (a set; empty if none). Loopback connections inside a namespace
    keep the namespace default and are left out."""
    selector = f"( sport = :{port} and dst 10.77.0.0/16 )"
    out = subprocess.run(in_ns(ns, ["ss", "-tinH", "state", "established", selector]),
                         capture_output=True, text=True).stdout
    return {m for m in re.findall(r"\b(cubic|bbr|reno|bic|htcp|vegas|westwood)\b", out)}


# ---------------------------------------------------------------- the servers

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
        ns = self.link.server_ns
        self.log = open(d / "servers.log", "w")
        self._start(in_ns(ns, ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")]))
        self._start(in_ns(ns, [str(SSHQD), "-D", "-e", "-f", str(d / "sshqd_config")]))
        self._start(in_ns(ns, [str(SSHQD), "-D", "-e", "-f", str(d / "relay_config")]))
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
            if tcp_ok and f":{RELAY_PORT} " in udp and f":{SSHQD_PORT} " in udp:
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
        if transport == "openssh":
            return ["ssh", *common, "-p", str(SSHD_PORT), target]
        if transport == "openssh-quic-tunnel":
            proxy = (f"{SSHQ} proxy -o UserKnownHostsFile={d}/known_hosts "
                     f"-o StrictHostKeyChecking=accept-new {' '.join(quic_cc)} %h %p")
            return ["ssh", *common, "-o", f"ProxyCommand={proxy}", "-p", str(RELAY_PORT), target]
        raise ValueError(f"unknown transport {transport}")

    def server_port(self, transport):
        """The server-side TCP port whose sockets carry `transport` (None for QUIC)."""
        return {"sshq-tcp": SSHQD_PORT, "openssh": SSHD_PORT}.get(transport)


def congestion_for(transport, tcp_cc, quic_cc):
    """The congestion controller configured for `transport`'s bulk sender
    (the server side)."""
    return quic_cc if transport in ("sshq-quic", "openssh-quic-tunnel") else tcp_cc


# The bottleneck of the emulated link. Without one, a flow that loss does
# not hold back (CUBIC at 0 % loss, BBR at any loss) runs at what this
# 2-CPU machine can forward (~1 Gbit/s) and the measurement becomes one of
# CPU contention. 50 Mbit/s is a plausible access link; the 100-packet
# drop-tail queue holds 24 ms at that rate.
DEFAULT_RATE_MBIT = 50
DEFAULT_QUEUE_PACKETS = 100


def add_link_arguments(parser):
    """--rate-mbit, --queue-packets, --tcp-cc and --quic-cc."""
    parser.add_argument("--rate-mbit", type=float, default=DEFAULT_RATE_MBIT,
                        help=f"bottleneck rate each way (default {DEFAULT_RATE_MBIT}; 0: unlimited)")
    parser.add_argument("--queue-packets", type=int, default=DEFAULT_QUEUE_PACKETS,
                        help=f"drop-tail queue at the bottleneck (default {DEFAULT_QUEUE_PACKETS} packets)")
    add_congestion_arguments(parser)


def link_description(args):
    rate = (f"{args.rate_mbit:g} Mbit/s bottleneck each way with a {args.queue_packets}-packet drop-tail queue"
            if args.rate_mbit else "no rate limit")
    return (f"sshq-linkem link: delay RTT/2 each way, random loss in each direction, {rate}; "
            f"congestion control TCP `{args.tcp_cc}` (set on the link's routes with `ip route ... congctl`, "
            f"so OpenSSH's sockets get it too), QUIC `{args.quic_cc}` (sshq's CongestionControl, both sides)")


def add_congestion_arguments(parser):
    parser.add_argument("--tcp-cc", default=DEFAULT_CONGESTION, choices=CONGESTION_CHOICES,
                        help="TCP congestion controller, set on the link's routes (default cubic)")
    parser.add_argument("--quic-cc", default=DEFAULT_CONGESTION, choices=CONGESTION_CHOICES,
                        help="QUIC congestion controller, sshq's CongestionControl (default cubic)")


# ======================================================================
# Probes: run inside a namespace by `python3 interop/lab.py SUBCOMMAND`.
# ======================================================================

def serve_bulk(port):
    """Sends zeros to every TCP connection on 127.0.0.1:`port` until it closes."""
    listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
    chunk = bytes(256 * 1024)

    def pump(conn):
        with conn:
            try:
                while True:
                    conn.sendall(chunk)
            except OSError:
                pass  # the reader went away: the bulk channel is over

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=pump, args=(conn,), daemon=True).start()


class EchoClient:
    """A client process whose remote side echoes keystrokes (a pty in raw
    mode with echo on), timed byte by byte."""

    # Printable letters: a raw pty echoes each as exactly one byte.
    ALPHABET = b"abcdefghijklmnopqrstuvwxyz"
    # Sent until the first echo shows the session is up; not in ALPHABET,
    # so a late warm-up echo is told apart from a keystroke's.
    WARM_UP = ord("W")

    def __init__(self, argv, stderr_path):
        self.stderr = open(stderr_path, "ab")
        # `stty raw` makes the pty pass and echo every byte at once; the
        # echo is then the only output (cat's own output goes nowhere).
        self.proc = subprocess.Popen(argv + ["stty raw; exec cat >/dev/null"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, bufsize=0)
        self.arrivals = []  # (time, byte) of every output byte
        self.lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            now = time.perf_counter()
            with self.lock:
                if not data:
                    self.arrivals.append((now, None))
                    self.lock.notify_all()
                    return
                self.arrivals.extend((now, b) for b in data)
                self.lock.notify_all()

    def send(self, byte):
        os.write(self.proc.stdin.fileno(), bytes([byte]))

    def wait_arrivals(self, count, deadline):
        """Waits until `count` bytes arrived or `deadline` (perf_counter) passes."""
        with self.lock:
            while len(self.arrivals) < count and time.perf_counter() < deadline:
                if self.arrivals and self.arrivals[-1][1] is None:
                    return False  # the client's output ended
                self.lock.wait(timeout=0.05)
            return len(self.arrivals) >= count

    def warm_up(self, timeout):
        """Sends a byte every 200 ms until one comes back: the session is up."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            self.send(self.WARM_UP)
            if self.wait_arrivals(1, min(deadline, time.perf_counter() + 0.2)):
                time.sleep(0.5)  # lets the other warm-up echoes arrive
                with self.lock:
                    self.arrivals.clear()
                return True
            if self.proc.poll() is not None:
                return False
        return False

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        stop(self.proc, grace=2)
        self.stderr.close()
        return self.proc.returncode


class BulkReader:
    """Reads the forwarded bulk channel as fast as it comes."""

    def __init__(self, port, timeout):
        deadline = time.time() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(None)
        self.bytes = 0
        self.stopped = False
        self.marks = []  # (time, total bytes) at start and end of measuring
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = bytearray(1 << 20)
        while not self.stopped:
            try:
                n = self.sock.recv_into(buf)
            except OSError:
                return
            if n == 0:
                return
            self.bytes += n

    def mark(self):
        self.marks.append((time.perf_counter(), self.bytes))

    def close(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def probe_echo(args):
    """Keystrokes every `interval` ms, each echo timed; optionally with a bulk
    channel on the same connection, and control commands at given times."""
    argv = json.loads(args.argv)
    result = {"latencies_ms": [], "censored_ms": [], "unanswered": 0, "mismatched": 0, "bulk_bytes": 0,
              "bulk_seconds": 0.0, "events": [], "max_gap_ms": None, "exit": None, "error": None}
    client = EchoClient(argv, args.stderr)
    bulk = None
    try:
        if not client.warm_up(args.connect_timeout):
            result["error"] = "the session did not echo within the connect timeout"
            return result
        if args.bulk:
            try:
                bulk = BulkReader(args.bulk_port, timeout=10)
            except OSError as e:
                result["error"] = f"the bulk channel's -L port did not answer: {e}"
                return result
            time.sleep(args.bulk_warmup)  # let the bulk flow fill the path first
            bulk.mark()
        interval = args.interval_ms / 1000
        events = sorted(json.loads(args.events))  # [[seconds, command], ...]
        sent = []
        start = time.perf_counter()
        for i in range(args.count):
            at = start + i * interval
            while events and start + events[0][0] <= at:
                seconds, command = events.pop(0)
                answer = linkem_control(args.control, command)
                result["events"].append({"at_s": seconds, "command": command, "answer": answer})
            pause = at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            byte = EchoClient.ALPHABET[i % len(EchoClient.ALPHABET)]
            sent.append((time.perf_counter(), byte))
            try:
                client.send(byte)
            except OSError:
                result["error"] = f"the client stopped reading after {i} keystrokes"
                break
        client.wait_arrivals(len(sent), time.perf_counter() + args.drain_timeout)
        if bulk:
            bulk.mark()
        with client.lock:
            arrivals = [a for a in client.arrivals if a[1] not in (None, EchoClient.WARM_UP)]
        for (t_sent, byte), (t_echo, echoed) in zip(sent, arrivals):
            result["latencies_ms"].append(round((t_echo - t_sent) * 1000, 3))
            result["mismatched"] += echoed != byte
        result["unanswered"] = max(0, len(sent) - len(arrivals))
        # Keystrokes never echoed waited at least until now: their waits are
        # lower bounds (censored samples), kept so that percentiles do not
        # silently improve by dropping the slowest keystrokes.
        now = time.perf_counter()
        result["censored_ms"] = [round((now - t) * 1000, 3) for t, _ in sent[len(arrivals):]]
        times = [t for t, _ in arrivals[:len(sent)]]
        if result["unanswered"]:
            # Output stopped for good: the stall lasted at least until now.
            times.append(now)
        gaps = [b - a for a, b in zip(times, times[1:])]
        result["max_gap_ms"] = round(max(gaps) * 1000, 1) if gaps else None
        if bulk and len(bulk.marks) == 2:
            (t0, b0), (t1, b1) = bulk.marks
            result["bulk_bytes"], result["bulk_seconds"] = b1 - b0, round(t1 - t0, 3)
        return result
    finally:
        if bulk:
            bulk.close()
        result["exit"] = client.close()


def linkem_control(path, command):
    """Sends one command to sshq-linkem's control socket; returns its answer line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.decode().strip()


def probe_first_byte(args):
    """Time from starting the client to its first output byte, and its exit."""
    argv = json.loads(args.argv)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=open(args.stderr, "ab"))
    timer = threading.Timer(args.timeout, proc.kill)
    timer.start()
    first = proc.stdout.read(1)
    first_ms = (time.perf_counter() - start) * 1000
    proc.stdout.read()
    proc.wait()
    timer.cancel()
    return {"first_byte_ms": round(first_ms, 2) if first else None, "exit": proc.returncode}


def probe_throughput(args):
    """Reads the client's stdout (a remote `cat /dev/zero`) for `seconds`
    after its first byte; returns the bytes and time of that window."""
    argv = json.loads(args.argv)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=open(args.stderr, "ab"))
    fd = proc.stdout.fileno()
    result = {"bytes": 0, "seconds": 0.0, "error": None}
    timer = threading.Timer(args.connect_timeout + args.seconds + 5, proc.kill)
    timer.start()
    try:
        first = os.read(fd, 1 << 20)
        if not first:
            result["error"] = "no output"
            return result
        start = time.perf_counter()
        end = start + args.seconds
        total = len(first)
        while (now := time.perf_counter()) < end:
            data = os.read(fd, 1 << 20)
            if not data:
                result["error"] = "the output ended early"
                break
            total += len(data)
        result["bytes"], result["seconds"] = total, round(time.perf_counter() - start, 3)
        return result
    finally:
        timer.cancel()
        stop(proc, grace=2)


def main():
    ap = argparse.ArgumentParser(description="lab probes, run inside a network namespace")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bulk-source", help="send zeros to every connection on 127.0.0.1:PORT")
    b.add_argument("--port", type=int, required=True)
    e = sub.add_parser("probe-echo", help="time keystroke echoes, optionally beside a bulk channel")
    e.add_argument("--argv", required=True, help="client command line, as a JSON list")
    e.add_argument("--stderr", required=True, help="file the client's stderr is appended to")
    e.add_argument("--count", type=int, default=200)
    e.add_argument("--interval-ms", type=float, default=50)
    e.add_argument("--bulk", action="store_true")
    e.add_argument("--bulk-port", type=int, default=BULK_LOCAL_PORT)
    e.add_argument("--bulk-warmup", type=float, default=2.0)
    e.add_argument("--connect-timeout", type=float, default=30)
    e.add_argument("--drain-timeout", type=float, default=10)
    e.add_argument("--control", default="", help="sshq-linkem control socket, for --events")
    e.add_argument("--events", default="[]", help='JSON list of [seconds, "control command"]')
    f = sub.add_parser("probe-first-byte", help="time to the first output byte of a command")
    f.add_argument("--argv", required=True)
    f.add_argument("--stderr", required=True)
    f.add_argument("--timeout", type=float, default=60)
    t = sub.add_parser("probe-throughput", help="bytes per second of the client's output")
    t.add_argument("--argv", required=True)
    t.add_argument("--stderr", required=True)
    t.add_argument("--seconds", type=float, default=10)
    t.add_argument("--connect-timeout", type=float, default=30)
    args = ap.parse_args()
    # A probe is stopped with SIGTERM by its experiment; exit quietly then.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.cmd == "bulk-source":
        serve_bulk(args.port)
        return
    handler = {"probe-echo": probe_echo, "probe-first-byte": probe_first_byte,
               "probe-throughput": probe_throughput}[args.cmd]
    print(json.dumps(handler(args)))


def run_probe(ns, subcommand, argv, stderr, timeout, **options):
    """Runs a probe in namespace `ns` and returns its JSON answer."""
    extra = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            extra.append(flag)
        elif value is not False and value is not None:
            extra += [flag, value]
    cmd = probe_argv(ns, subcommand, "--argv", json.dumps(argv), "--stderr", stderr, *extra)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"probe timed out after {timeout} s"}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"probe failed (exit {r.returncode}): {r.stderr.strip()[-300:]}"}


if __name__ == "__main__":
    main()
