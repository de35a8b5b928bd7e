#!/usr/bin/env python3
"""Forwarding benchmark: throughput through -L, sshq against OpenSSH, in one interleaved run.

Three forwarders run side by side for the whole benchmark, each a
`client -N -L port:127.0.0.1:SINK` on loopback:

  ssh -> sshd                 OpenSSH both ends (the baseline)
  sshq(tcp) -> sshqd(tcp)     sshq over SSH/TCP
  sshq(quic) -> sshqd(quic)   sshq over QUIC (the forwarded connection is its own stream)

Each repetition sends SIZE bytes (default 1 GiB) into every forward in
turn; the sink, a separate process behind the forwards, answers with the
byte count once it has read everything, so a run is timed from connect to
the last byte arriving. Runs are interleaved so machine noise hits every
forwarder alike; medians and ratios against OpenSSH's are reported.

Writes interop/results/bench-forward/{results.json,summary.md}.
Run as root to log in as the dedicated user `sshqbench`.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sshqlab.experiment import parse_size
from sshqlab.keys import bench_user
from sshqlab.paths import ROOT, SSHQ, SSHQD
from sshqlab.ports import free_port
from sshqlab.servers import start_loopback_servers

# The sink: reads each connection to its end, then answers with the count
# (8 bytes, big-endian) and closes. A process of its own, so that it does
# not share an interpreter lock with the sender.
SINK = r"""
import socket, struct, sys, threading
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(64)
print(listener.getsockname()[1], flush=True)
def drain(conn):
    buf = bytearray(4 << 20)
    total = 0
    while True:
        n = conn.recv_into(buf)
        if n == 0:
            break
        total += n
    conn.sendall(struct.pack(">Q", total))
    conn.close()
while True:
    conn, _ = listener.accept()
    threading.Thread(target=drain, args=(conn,), daemon=True).start()
"""

CHUNK = bytes(4 << 20)


def transfer(port, size, timeout):
    """Sends `size` bytes through the forward on `port`; MB/s, from connect
    to the sink's acknowledgement of the last byte."""
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        view = memoryview(CHUNK)
        left = size
        while left:
            n = min(left, len(CHUNK))
            s.sendall(view[:n])
            left -= n
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while len(answer) < 8:
            more = s.recv(8 - len(answer))
            if not more:
                raise RuntimeError(f"the forward on port {port} closed before the sink answered")
            answer += more
    elapsed = time.perf_counter() - start
    (received,) = struct.unpack(">Q", answer)
    if received != size:
        raise RuntimeError(f"the sink got {received} bytes of {size} through port {port}")
    return size / elapsed / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="transfers per forwarder (default 5)")
    ap.add_argument("--size", default="1G", help="bytes per transfer, e.g. 256M or 1G (default 1G)")
    ap.add_argument("--out", default=str(ROOT / "interop/results/bench-forward"))
    args = ap.parse_args()
    size = parse_size(args.size)

    for tool in (SSHQ, SSHQD):
        if not tool.exists():
            raise SystemExit(f"bench-forward: {tool} missing; run cargo build --release first")
    user = bench_user()
    tmp = Path(tempfile.mkdtemp(prefix="sshq-bench-forward."))
    os.chmod(tmp, 0o755)
    procs = []
    try:
        sshd_port, sshqd_port = start_loopback_servers(tmp, procs, sshd_extra="AllowTcpForwarding yes\n")
        sink = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
        procs.append(sink)
        sink_port = int(sink.stdout.readline())

        opts = ["-i", str(tmp / "user"), "-o", f"UserKnownHostsFile={tmp}/known_hosts",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "ExitOnForwardFailure=yes"]
        target = f"{user}@127.0.0.1"
        clients = {
            "ssh -> sshd": ["ssh", *opts, "-p", str(sshd_port)],
            "sshq(tcp) -> sshqd(tcp)": [str(SSHQ), *opts, "-o", "Transport=tcp", "-p", str(sshqd_port)],
            "sshq(quic) -> sshqd(quic)": [str(SSHQ), *opts, "-o", "Transport=quic", "-p", str(sshqd_port)],
        }
        ports = {}
        log = open(tmp / "clients.log", "w")
        for name, cmd in clients.items():
            port = free_port()
            procs.append(subprocess.Popen(cmd + ["-N", "-L", f"{port}:127.0.0.1:{sink_port}", target],
                                          stdin=subprocess.DEVNULL, stderr=log))
            ports[name] = port
        for name, port in ports.items():  # up, and carrying data, before timing anything
            deadline = time.time() + 30
            while True:
                try:
                    transfer(port, 1 << 20, timeout=30)
                    break
                except (OSError, RuntimeError) as e:
                    if time.time() > deadline:
                        raise SystemExit(f"bench-forward: the {name} forward does not work: {e}")
                    time.sleep(0.2)

        samples = {name: [] for name in clients}
        for _ in range(args.runs):
            for name, port in ports.items():
                samples[name].append(transfer(port, size, timeout=600))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    base = statistics.median(samples["ssh -> sshd"])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append({
            "pair": name,
            "MBps_median": round(median, 1),
            "ratio_vs_openssh": round(median / base, 3),
            "samples_MBps": [round(v, 1) for v in values],
        })
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "user": user, "runs": args.runs, "size": args.size,
            "direction": "client side -> forward -> server side (upload through -L)",
            "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip(),
            "cpus": os.cpu_count()}
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Forwarding benchmark ({meta['date']})", "",
             f"{meta['openssh']}; {meta['cpus']} CPUs; user `{user}`; {args.runs} transfers of {args.size} "
             "per forwarder through `-N -L port:127.0.0.1:sink` on loopback, interleaved, timed from connect "
             "to the sink's acknowledgement of the last byte. Ratios are against `ssh -> sshd` in the same run "
             "(higher is better).", "",
             "| forwarder | median MB/s | ratio | samples MB/s |",
             "|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['pair']} | {r['MBps_median']} | {r['ratio_vs_openssh']} | "
                     f"{', '.join(str(v) for v in r['samples_MBps'])} |")
    lines += ["", "Rerun: `interop/run bench-forward` (options: `--runs N --size 1G`)."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
