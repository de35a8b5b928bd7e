"""The emulated link: `sshq-linkem` (interop/linkem) makes two network
namespaces, NAME-c (the client, 10.77.0.1) and NAME-s (the server,
10.77.1.1), joined by TUN devices and a userspace process that applies
delay and loss; the experiments change delay and loss between cells through
its control socket, so every transport of a cell is measured on the same link.
"""

import re
import socket
import subprocess
import threading
from pathlib import Path

from .paths import LINKEM
from .procs import in_ns, stop

CLIENT_ADDR = "10.77.0.1"
SERVER_ADDR = "10.77.1.1"

# The congestion controllers the experiments use unless told otherwise:
# CUBIC on both, as quinn's default is CUBIC (sshq's `CongestionControl`).
DEFAULT_CONGESTION = "cubic"
CONGESTION_CHOICES = ("cubic", "bbr")

# The server's ports inside NAME-s (its own namespace: nothing else there).
SSHD_PORT, SSHQD_PORT, RELAY_PORT, BULK_PORT = 2201, 2202, 2203, 2204
# The sshqd that runs the one-stream baseline (OneStreamBaseline, QUIC only).
ONE_STREAM_PORT = 2205
# The transports whose bulk sender is a QUIC connection.
QUIC_TRANSPORTS = ("sshq-quic", "openssh-quic-tunnel", "sshq-one-stream", "sshq-auto")
# The client's -L port for the bulk channel, inside NAME-c.
BULK_LOCAL_PORT = 2299


# The bottleneck of the emulated link. Without one, a flow that loss does
# not hold back (CUBIC at 0 % loss, BBR at any loss) runs at what this
# 2-CPU machine can forward (~1 Gbit/s) and the measurement becomes one of
# CPU contention. 50 Mbit/s is a plausible access link; the 100-packet
# drop-tail queue holds 24 ms at that rate.
DEFAULT_RATE_MBIT = 50
DEFAULT_QUEUE_PACKETS = 100


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


def congestion_for(transport, tcp_cc, quic_cc):
    """The congestion controller configured for `transport`'s bulk sender
    (the server side)."""
    return quic_cc if transport in QUIC_TRANSPORTS else tcp_cc



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
