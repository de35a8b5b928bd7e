"""Probes: run inside the client namespace as `python3 -m sshqlab.probes
SUBCOMMAND` (a probe started with `ip netns exec NAME-c` sees the client
namespace's network, which the experiment's own process does not).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from .link import BULK_LOCAL_PORT, linkem_control
from .paths import INTEROP
from .procs import in_ns, stop


def probe_argv(ns, subcommand, *args):
    """This module run as a probe inside namespace `ns` (with this
    interpreter, and the package on its path)."""
    return in_ns(ns, ["env", f"PYTHONPATH={INTEROP}", sys.executable, "-m", "sshqlab.probes",
                      subcommand, *map(str, args)])


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
        # `stty raw` makes the pty pass and echo every byte at once; the
        # echo is then the only output (cat's own output goes nowhere).
        self._start(argv + ["stty raw; exec cat >/dev/null"], stderr_path)

    def _start(self, argv, stderr_path, env=None):
        self.stderr = open(stderr_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, bufsize=0, env=env)
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
                self._arrived(now, data)
                self.lock.notify_all()

    def _arrived(self, now, data):
        """Output `data` came at `now` (called with the lock held)."""
        self.arrivals.extend((now, b) for b in data)

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

    def freeze_targets(self):
        """The processes `client stop` stops: the client."""
        return [self.proc.pid]

    def close(self):
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        stop(self.proc, grace=2)
        self.stderr.close()
        return self.proc.returncode


class ScreenCounterClient(EchoClient):
    """For a client that shows the remote screen rather than relaying its
    bytes (mosh): it may skip intermediate screens by design, so echoed
    bytes cannot be matched one by one. The remote program counts the
    keystrokes it read and shows the count alone on a row below the first
    (where mosh's notification bar goes); the local screen is
    emulated (pyte), and each new count stands for the keystrokes it covers,
    at the time it appeared. Lost keystrokes show as a count that stops
    short; duplicates cannot happen; `mismatched` stays 0 by construction.

    The client runs under `ptyrun` (mosh-client refuses pipes), so freezing
    it means freezing the wrapper and its child, the client proper."""

    PROGRAM = ("stty raw -echo; printf '\\r\\n\\r\\n'; n=0; "
               "while IFS= read -r -n1 -d '' c; do n=$((n+1)); printf '\\r%d\\033[K' \"$n\"; done")

    def __init__(self, argv, stderr_path, cols=80, rows=24):
        import pyte  # Debian's python3-pyte; only this client needs it

        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.shown = 0  # the count on screen
        self.base = None  # the count when warm-up ended
        wrapped = [sys.executable, "-m", "sshqlab.ptyrun", "--cols", str(cols), "--rows", str(rows), "--",
                   *argv, "bash", "-c", self.PROGRAM]
        self._start(wrapped, stderr_path, env={**os.environ, "PYTHONPATH": str(INTEROP), "LANG": "C.UTF-8"})

    def _arrived(self, now, data):
        self.stream.feed(data)
        counts = [int(row) for row in map(str.strip, self.screen.display) if row.isdigit()]
        count = max(counts, default=self.shown)
        for k in range(self.shown + 1, count + 1):
            if self.base is None or k <= self.base:
                byte = self.WARM_UP
            else:
                byte = self.ALPHABET[(k - self.base - 1) % len(self.ALPHABET)]
            self.arrivals.append((now, byte))
        self.shown = max(self.shown, count)

    def warm_up(self, timeout):
        if not super().warm_up(timeout):
            return False
        with self.lock:
            self.base = self.shown
        return True

    def freeze_targets(self):
        children = []
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                children = [int(p) for p in f.read().split()]
        except OSError:
            pass
        return [self.proc.pid, *children]


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


def client_event(client, command):
    """`client stop` / `client cont`: the client process frozen (SIGSTOP, as
    a laptop lid closes) and woken (SIGCONT). None for link commands."""
    signals = {"client stop": signal.SIGSTOP, "client cont": signal.SIGCONT}
    if command not in signals:
        return None
    try:
        for pid in client.freeze_targets():
            os.kill(pid, signals[command])
        return "ok"
    except OSError as e:
        return f"error: {e}"


def probe_echo(args):
    """Keystrokes every `interval` ms, each echo timed; optionally with a bulk
    channel on the same connection, and control commands at given times."""
    argv = json.loads(args.argv)
    result = {"latencies_ms": [], "censored_ms": [], "unanswered": 0, "mismatched": 0, "bulk_bytes": 0,
              "bulk_seconds": 0.0, "events": [], "max_gap_ms": None, "exit": None, "error": None}
    client = ScreenCounterClient(argv, args.stderr) if args.screen_counter else EchoClient(argv, args.stderr)
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
                answer = client_event(client, command) or linkem_control(args.control, command)
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
        # Events the loop did not reach (the client died early) still run,
        # at once: a link left dark or without UDP would spoil every later
        # run of the experiment.
        for seconds, command in events:
            answer = client_event(client, command) or linkem_control(args.control, command)
            result["events"].append({"at_s": seconds, "command": command, "answer": answer,
                                     "late": True})
        events = []
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
    e.add_argument("--screen-counter", action="store_true",
                   help="the client shows a screen (mosh): count keystrokes on it (ScreenCounterClient)")
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
