#!/usr/bin/env python3
"""Loopback benchmark: sshq against OpenSSH, in one interleaved run.

Measures, for each client/server pair, the whole-process time of
`client host true` (connect, key exchange, authentication, exec, exit) and
the wall time of a bulk transfer `head -c SIZE /dev/zero | client host 'cat >/dev/null'`,
with the CPU time the client and the server spent on it (per GiB: a figure
that machine noise moves far less than throughput does).
Repetitions are interleaved so that machine noise hits every pair alike;
medians and ratios against OpenSSH's ssh -> sshd are reported.

Writes interop/results/bench-loopback/{results.json,summary.md}.
Run as root to measure through a dedicated user with an empty shell rc
(root's rc on these machines is slow and would swamp connect times).
"""

import argparse
import json
import os
import resource
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
    servers = {}
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
        cpu = {name: {"client": [], "server": []} for name in bulk_pairs}
        servers.update(sshd=CpuGroup("sshd", procs[0].pid), sshqd=CpuGroup("sshqd", procs[1].pid))
        gib = size_bytes / (1 << 30)
        for _ in range(args.bulks):
            for name in bulk_pairs:
                cmd = pairs[name]
                server = servers["sshqd" if "sshqd" in name else "sshd"]
                src = subprocess.Popen(["head", "-c", args.size, "/dev/zero"], stdout=subprocess.PIPE)
                server_before, client_before = server.seconds(), children_cpu()
                t = time.perf_counter()
                subprocess.run(cmd + ["cat >/dev/null"], stdin=src.stdout, capture_output=True, timeout=600, check=True)
                bulk[name].append(size_bytes / (time.perf_counter() - t) / 1e6)
                cpu[name]["client"].append((children_cpu() - client_before) / gib)
                src.wait()
                # The server's session processes finish a moment later.
                time.sleep(0.5)
                if server_before is not None:
                    cpu[name]["server"].append((server.seconds() - server_before) / gib)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        for group in servers.values():
            group.remove()
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
            "client_cpu_s_per_gib_median": median_or_none(cpu.get(name, {}).get("client")),
            "server_cpu_s_per_gib_median": median_or_none(cpu.get(name, {}).get("server")),
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
             "| pair | connect+exec median ms | ratio | bulk median MB/s | ratio | client CPU s/GiB | "
             "server CPU s/GiB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['pair']} | {r['connect_exec_ms_median']} | {r['connect_ratio_vs_openssh']} | "
                     f"{r['bulk_MBps_median'] or '-'} | {r['bulk_ratio_vs_openssh'] or '-'} | "
                     f"{r['client_cpu_s_per_gib_median'] or '-'} | {r['server_cpu_s_per_gib_median'] or '-'} |")
    lines += ["", f"Whole-process connect+exec over QUIC with the hybrid X25519+sntrup761 group vs plain X25519: "
              f"{meta['hybrid_vs_x25519_connect_ratio']}x (median {hybrid:.1f} ms vs {classic:.1f} ms)."]
    lines += ["", "CPU per GiB: user plus system time of the client process, and of the server with every "
              "process of the session (the remote `cat` included, for every pair alike), per GiB moved; medians."]
    lines += ["", "Rerun: `interop/run bench-loopback` (options: `--connects N --bulks N --size 1G`)."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def children_cpu():
    """CPU seconds of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuGroup:
    """A cgroup holding one server and every process it starts (sessions,
    shells), for their CPU time; None of that where no cgroup can be made
    (then the server column stays empty)."""

    # cgroup v1's cpuacct, else cgroup v2 (its cpu.stat counts usage).
    ROOTS = (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))

    def __init__(self, name, pid):
        self.dir, self.made = None, []
        for root in self.ROOTS:
            if not (root / "cgroup.procs").exists():
                continue
            path = root / f"sshq-bench-{os.getpid()}-{name}"
            try:
                path.mkdir(exist_ok=True)
                self.made.append(path)
                (path / "cgroup.procs").write_text(f"{pid}\n")
            except OSError:
                continue
            self.dir = path
            if self.seconds() is not None:
                return
        self.dir = None

    def seconds(self):
        """CPU seconds used in the group so far, or None."""
        if self.dir is None:
            return None
        usage = self.dir / "cpuacct.usage"
        if usage.exists():
            return int(usage.read_text()) / 1e9
        stat = self.dir / "cpu.stat"
        if stat.exists():
            fields = dict(line.split() for line in stat.read_text().splitlines() if line.strip())
            return int(fields["usage_usec"]) / 1e6
        return None

    def remove(self):
        """Removes every group made (they are empty once the server is gone)."""
        for path in self.made:
            try:
                path.rmdir()
            except OSError:
                pass


def median_or_none(samples):
    return round(statistics.median(samples), 2) if samples else None


if __name__ == "__main__":
    sys.exit(main())
