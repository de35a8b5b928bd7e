#!/usr/bin/env python3
"""Forwarding throughput of sshq-linkem, measured with iperf3 through the link.

For each setting (unimpaired, 100 Mbit/s, 25 ms each way) it starts the
emulator, runs iperf3 TCP transfers client -> server, and records the
receiver's rate, TCP retransmissions, the congestion controller, the
emulator's CPU time and the packets the kernel dropped at the TUN devices
before the emulator read them. Writes results.json and summary.md.

    sudo interop/linkem/bench_throughput.py [--runs 3] [--seconds 5] [--out DIR]

Needs root (network namespaces) and iperf3; build first with
`cargo build --release -p sshq-linkem`.
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINKEM = Path(os.environ.get("SSHQ_LINKEM", ROOT / "target/release/sshq-linkem"))
SERVER = "10.77.1.1"
SETTINGS = [
    ("unimpaired", []),
    ("rate 100 Mbit/s", ["--rate-mbit", "100"]),
    ("25 ms each way", ["--delay-ms", "25"]),
]


def cpu_seconds(pid):
    """User plus system CPU time of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def tun_drops(ns):
    """Packets the kernel dropped at tun0 because the emulator had not read them."""
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "tun0"], capture_output=True,
                         text=True, check=True, timeout=10).stdout
    return json.loads(out)[0]["stats64"]["tx"]["dropped"]


def start_linkem(name, args):
    proc = subprocess.Popen([str(LINKEM), "--name", name, "--duration", "600", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    timer = threading.Timer(20, proc.kill)  # readline() cannot time out by itself
    timer.start()
    line = proc.stdout.readline().strip()
    timer.cancel()
    if line != "ready":
        proc.kill()
        sys.exit(f"bench: sshq-linkem did not become ready (said {line!r})")
    return proc


def iperf3(name, port, seconds):
    server = subprocess.Popen(["ip", "netns", "exec", f"{name}-s", "iperf3", "-s", "-1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        out = subprocess.run(["ip", "netns", "exec", f"{name}-c", "iperf3", "-J", "-c", SERVER, "-p", str(port),
                              "-t", str(seconds)], capture_output=True, text=True, timeout=seconds + 30).stdout
        end = json.loads(out)["end"]
        return {
            "mbit_per_s": round(end["sum_received"]["bits_per_second"] / 1e6, 1),
            "retransmits": end["sum_sent"].get("retransmits"),
            "congestion": end.get("sender_tcp_congestion"),
        }
    finally:
        server.wait(timeout=30)


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "interop/results/linkem-throughput")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root to create network namespaces; run it with sudo")
    if not LINKEM.exists():
        sys.exit(f"bench: {LINKEM} is missing; run `cargo build --release -p sshq-linkem` first")

    results = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": args.runs,
               "seconds": args.seconds, "cpus": os.cpu_count(), "settings": []}
    name = f"lkbench{os.getpid() % 10000}"
    port = 5201
    for label, link_args in SETTINGS:
        proc = start_linkem(name, link_args)
        try:
            cpu_before = cpu_seconds(proc.pid)
            started = time.monotonic()
            runs = []
            for _ in range(args.runs):
                port += 1
                runs.append(iperf3(name, port, args.seconds))
            wall = time.monotonic() - started
            cpu = cpu_seconds(proc.pid) - cpu_before
            drops = tun_drops(f"{name}-c") + tun_drops(f"{name}-s")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        entry = {"setting": label, "args": link_args, "runs": runs,
                 "median_mbit_per_s": median([r["mbit_per_s"] for r in runs]),
                 "emulator_cpu_share": round(cpu / wall, 2), "tun_queue_drops": drops,
                 "load_average_1m": os.getloadavg()[0]}
        results["settings"].append(entry)
        print(f"{label}: median {entry['median_mbit_per_s']} Mbit/s "
              f"({', '.join(str(r['mbit_per_s']) for r in runs)}), emulator CPU {entry['emulator_cpu_share']}")

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [f"# sshq-linkem forwarding throughput ({results['date']})", "",
             f"iperf3 TCP client -> server, {args.runs} runs of {args.seconds} s each, {results['cpus']} CPUs "
             "shared with everything else on the machine.", "",
             "| setting | median Mbit/s | runs | retransmits | congestion | emulator CPU | TUN queue drops |",
             "|---|---|---|---|---|---|---|"]
    for e in results["settings"]:
        lines.append(f"| {e['setting']} | {e['median_mbit_per_s']} | "
                     f"{', '.join(str(r['mbit_per_s']) for r in e['runs'])} | "
                     f"{', '.join(str(r['retransmits']) for r in e['runs'])} | {e['runs'][0]['congestion']} | "
                     f"{e['emulator_cpu_share']} | {e['tun_queue_drops']} |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}/results.json and summary.md")


if __name__ == "__main__":
    main()
