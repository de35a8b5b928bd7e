#!/usr/bin/env python3
"""Loopback benchmark: sshq against OpenSSH, in one interleaved run.

Measures, for each client/server pair, the whole-process time of
`client host true` (connect, key exchange, authentication, exec, exit) and
the wall time of a bulk transfer `head -c SIZE /dev/zero | client host 'cat >/dev/null'`.
Repetitions are interleaved so that machine noise hits every pair alike;
medians and ratios against OpenSSH's ssh -> sshd are reported.

Writes interop/results/bench-loopback/{results.json,summary.md}.
Run as root to measure through a dedicated user with an empty shell rc
(root's rc on these machines is slow and would swamp connect times).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "interop"))
from lab import SSHQ, SSHQD, bench_user, keygen  # noqa: E402  (shared with the lossy-link experiments)


def free_port():
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            u.close()
            return port
        except OSError:
            u.close()


def wait_tcp(port, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: nothing listens on port {port}")


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connects", type=int, default=15, help="connect+exec repetitions per pair")
    ap.add_argument("--bulks", type=int, default=3, help="bulk repetitions per pair")
    ap.add_argument("--size", default="1G", help="bulk size for head -c (default 1G)")
    ap.add_argument("--out", default=str(ROOT / "interop/results/bench-loopback"))
    args = ap.parse_args()

    for tool in (SSHQ, SSHQD):
        if not tool.exists():
            raise SystemExit(f"bench: {tool} missing; run cargo build --release first")
    user = bench_user()
    tmp = Path(tempfile.mkdtemp(prefix="sshq-bench."))
    os.chmod(tmp, 0o755)
    procs = []
    try:
        sshd_port, sshqd_port = start_loopback_servers(tmp, procs)

        opts = ["-i", str(tmp / "user"), "-o", f"UserKnownHostsFile={tmp}/known_hosts",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"]
        target = f"{user}@127.0.0.1"
        sshq = [str(SSHQ), *opts]
        pairs = {
            "ssh -> sshd": ["ssh", *opts, "-p", str(sshd_port), target],
            "sshq(tcp) -> sshd": [*sshq, "-o", "Transport=tcp", "-p", str(sshd_port), target],
            "ssh -> sshqd(tcp)": ["ssh", *opts, "-p", str(sshqd_port), target],
            "sshq(tcp) -> sshqd(tcp)": [*sshq, "-o", "Transport=tcp", "-p", str(sshqd_port), target],
            "sshq(quic) -> sshqd(quic)": [*sshq, "-o", "Transport=quic", "-p", str(sshqd_port), target],
            # The same, with plain X25519 instead of the hybrid group: the
            # cost of the post-quantum half of the key exchange.
            "sshq(quic,x25519) -> sshqd(quic)": [*sshq, "-o", "Transport=quic", "-o", "KexAlgorithms=x25519",
                                                 "-p", str(sshqd_port), target],
        }
        bulk_pairs = [name for name in pairs if "x25519" not in name]
        for name, cmd in pairs.items():  # warm-up, and fail early if a pair does not work
            r = subprocess.run(cmd + ["true"], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise SystemExit(f"bench: {name} cannot run a command: {r.stderr.strip()}")

        connect = {name: [] for name in pairs}
        for _ in range(args.connects):
            for name, cmd in pairs.items():
                t = time.perf_counter()
                subprocess.run(cmd + ["true"], capture_output=True, timeout=60, check=True)
                connect[name].append((time.perf_counter() - t) * 1000)
        size_bytes = parse_size(args.size)
        bulk = {name: [] for name in bulk_pairs}
        for _ in range(args.bulks):
            for name in bulk_pairs:
                cmd = pairs[name]
                src = subprocess.Popen(["head", "-c", args.size, "/dev/zero"], stdout=subprocess.PIPE)
                t = time.perf_counter()
                subprocess.run(cmd + ["cat >/dev/null"], stdin=src.stdout, capture_output=True, timeout=600, check=True)
                bulk[name].append(size_bytes / (time.perf_counter() - t) / 1e6)
                src.wait()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    base = "ssh -> sshd"
    rows = []
    for name in pairs:
        c = statistics.median(connect[name])
        b = statistics.median(bulk[name]) if name in bulk else None
        rows.append({
            "pair": name,
            "connect_exec_ms_median": round(c, 1),
            "connect_ratio_vs_openssh": round(c / statistics.median(connect[base]), 3),
            "bulk_MBps_median": round(b, 1) if b else None,
            "bulk_ratio_vs_openssh": round(b / statistics.median(bulk[base]), 3) if b else None,
            "connect_samples_ms": [round(x, 1) for x in connect[name]],
            "bulk_samples_MBps": [round(x, 1) for x in bulk.get(name, [])],
        })
    hybrid = statistics.median(connect["sshq(quic) -> sshqd(quic)"])
    classic = statistics.median(connect["sshq(quic,x25519) -> sshqd(quic)"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "user": user, "connects": args.connects,
            "bulks": args.bulks, "size": args.size, "openssh": subprocess.run(
                ["ssh", "-V"], capture_output=True, text=True).stderr.strip()}
    meta["hybrid_vs_x25519_connect_ratio"] = round(hybrid / classic, 3)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# Loopback benchmark ({meta['date']})", "",
             f"{meta['openssh']}; user `{user}`; {args.connects} connects and {args.bulks} bulk transfers "
             f"of {args.size} per pair, interleaved. Ratios are against `ssh -> sshd` in the same run "
             "(connect: lower is better; bulk: higher is better).", "",
             "| pair | connect+exec median ms | ratio | bulk median MB/s | ratio |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['pair']} | {r['connect_exec_ms_median']} | {r['connect_ratio_vs_openssh']} | "
                     f"{r['bulk_MBps_median'] or '-'} | {r['bulk_ratio_vs_openssh'] or '-'} |")
    lines += ["", f"Whole-process connect+exec over QUIC with the hybrid X25519+sntrup761 group vs plain X25519: "
              f"{meta['hybrid_vs_x25519_connect_ratio']}x (median {hybrid:.1f} ms vs {classic:.1f} ms)."]
    lines += ["", "Rerun: `interop/run bench-loopback` (options: `--connects N --bulks N --size 1G`)."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def parse_size(text):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


if __name__ == "__main__":
    sys.exit(main())
