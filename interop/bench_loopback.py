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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sshqlab.experiment import parse_size
from sshqlab.keys import bench_user
from sshqlab.paths import ROOT, SSHQ, SSHQD
from sshqlab.servers import start_loopback_servers


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


if __name__ == "__main__":
    sys.exit(main())
