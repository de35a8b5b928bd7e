#!/usr/bin/env python3
"""Load benchmark (`interop/run load`): sshqd against OpenSSH's sshd on loopback.

1. Concurrent logins: `sshq-load logins` starts COUNT logins at once against
   a fresh server (sshqd over TCP, sshqd over QUIC, OpenSSH's sshd over TCP)
   and keeps them open until all have finished: time for the batch, failures
   and why, and the server's peak memory (sshqd: VmHWM of its one process;
   sshd: the peak, sampled every 200 ms, of PSS summed over the listener and
   all its children -- PSS shares each shared page among the processes that
   map it, so the sum over a thousand forks is not inflated the way a sum of
   RSS is; the RSS sum is recorded too).
2. Login latency under a pre-auth flood: a legitimate client (sshq, or
   OpenSSH's ssh for sshd) from 127.0.0.1 runs `true` LOGINS times without a
   flood, then again while `sshq-load flood` holds FLOOD silent
   unauthenticated connections from 127.0.0.2 (TCP: connected, nothing sent;
   QUIC: handshake done, nothing sent). Median and p90, failures, and the
   ratio flood/baseline, per server, all in one run.

A benchmark, not a test: nothing here asserts timings. Writes
interop/results/load/{results.json,summary.md}. Run as root to log in as a
dedicated user with an empty shell rc (as bench_loopback.py does) and to
raise the file-descriptor limit for 1,000 connections.
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from sshqlab.gitinfo import git_commit, run_metadata
from sshqlab.keys import bench_user, keygen
from sshqlab.paths import INTEROP, ROOT, SSHQ, SSHQD
from sshqlab.ports import free_port, wait_tcp
from sshqlab.stats import percentile

LOAD = ROOT / "target" / "release" / "sshq-load"
OUT = INTEROP / "results" / "load"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def proc_status(pid, field):
    """A field of /proc/PID/status in KiB (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid):
    """pid and every process below it."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def proc_pss(pid):
    """Proportional set size of a process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """Samples a server's process tree every 200 ms: the peaks of its PSS sum,
    of its VmRSS sum, and of its size."""

    def __init__(self, pid):
        self.pid, self.peak_pss, self.peak_rss, self.peak_procs = pid, 0, 0, 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_flag.is_set():
            tree = descendants(self.pid)
            self.peak_pss = max(self.peak_pss, sum(proc_pss(p) for p in tree))
            self.peak_rss = max(self.peak_rss, sum(proc_status(p, "VmRSS") for p in tree))
            self.peak_procs = max(self.peak_procs, len(tree))
            time.sleep(0.2)

    def stop(self):
        self.stop_flag.set()
        self.thread.join()
        return {"peak_pss_sum_kib": self.peak_pss, "peak_rss_sum_kib": self.peak_rss,
                "peak_processes": self.peak_procs,
                "vmhwm_kib": proc_status(self.pid, "VmHWM")}


# What --capacity adds to each server's configuration (sshd 9.2 has no
# PerSource* keywords; its per-source limits are off by default anyway).
CAPACITY_LIMITS = {
    "sshd": "MaxStartups 2000\n",
    "sshqd": "MaxStartups 2000\nPerSourceMaxStartups none\nPerSourcePenalties no\n",
}


class Servers:
    """Fresh servers with the bench user's key; each started on demand."""

    def __init__(self, tmp, user, capacity=False):
        self.tmp, self.user, self.procs = tmp, user, []
        # --capacity: limits raised on both servers, to measure how many
        # handshakes they complete rather than how many their defaults admit.
        self.extra = CAPACITY_LIMITS if capacity else {"sshd": "", "sshqd": ""}
        keygen(tmp / "host")
        keygen(tmp / "user")
        self.key = tmp / "user"
        pub = (tmp / "user.pub").read_text()
        if os.geteuid() == 0:
            # The user's own ~/.ssh, with modes StrictModes accepts, so the
            # servers' defaults (StrictModes yes) apply unchanged.
            home = Path(os.path.expanduser(f"~{user}"))
            ssh_dir = home / ".ssh"
            ssh_dir.mkdir(mode=0o700, exist_ok=True)
            keys = ssh_dir / "authorized_keys"
            old = keys.read_text() if keys.exists() else ""
            if pub not in old:
                keys.write_text(old + pub)
            shutil.chown(ssh_dir, user, None)
            shutil.chown(keys, user, None)
            os.chmod(ssh_dir, 0o700)
            os.chmod(keys, 0o600)
            self.authorized = ""
            os.makedirs("/run/sshd", exist_ok=True)
        else:
            shutil.copy(tmp / "user.pub", tmp / "authorized_keys")
            self.authorized = f"AuthorizedKeysFile {tmp}/authorized_keys\nStrictModes no\n"

    def start(self, kind):
        """kind: 'sshqd' or 'sshd'; returns (port, Popen) once it listens."""
        port = free_port()
        conf = self.tmp / f"{kind}_{port}.conf"
        common = f"Port {port}\nListenAddress 127.0.0.1\nHostKey {self.tmp}/host\n{self.authorized}"
        if kind == "sshd":
            conf.write_text(common + "UsePAM no\nPidFile none\nPasswordAuthentication no\n"
                            "KbdInteractiveAuthentication no\n" + self.extra["sshd"])
            argv = ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)]
        else:
            conf.write_text(common + "Transports quic,tcp\n" + self.extra["sshqd"])
            argv = [str(SSHQD), "-D", "-e", "-f", str(conf)]
        log = open(self.tmp / f"{kind}_{port}.log", "w")
        proc = subprocess.Popen(argv, stderr=log, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_tcp(port)
        time.sleep(0.3)  # QUIC endpoint too
        return port, proc

    def stop(self, proc):
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                self.stop(proc)


# The three server/transport pairs, in the order they are measured.
TARGETS = [("sshqd", "tcp"), ("sshqd", "quic"), ("sshd", "tcp")]


def label(server, transport):
    return "OpenSSH sshd (TCP)" if server == "sshd" else f"sshqd ({transport.upper()})"


def concurrent_logins(servers, count):
    rows = []
    for server, transport in TARGETS:
        port, proc = servers.start(server)
        sampler = MemorySampler(proc.pid)
        argv = [str(LOAD), "logins", "--transport", transport, "--port", str(port),
                "--count", str(count), "--user", servers.user, "--key", str(servers.key)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        memory = sampler.stop()
        alive = proc.poll() is None
        servers.stop(proc)
        try:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            result = {"error": done.stderr.strip()[-500:]}
        result.update(server=server, transport=transport, memory=memory, server_alive_after=alive)
        print(f"load: {count} logins at once, {label(server, transport)}: "
              f"{result.get('succeeded')} ok, {result.get('failed')} failed {result.get('failures')}, "
              f"{result.get('total_s', 0):.2f} s, peak PSS {memory['peak_pss_sum_kib'] / 1024:.1f} MiB", flush=True)
        rows.append(result)
    return rows


def client_argv(server, transport, port, servers):
    opts = ["-i", str(servers.key), "-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=20", "-p", str(port)]
    if server == "sshd":
        return ["ssh", *opts, f"{servers.user}@127.0.0.1", "true"]
    return [str(SSHQ), "-o", f"Transport={transport}", *opts, f"{servers.user}@127.0.0.1", "true"]


def timed_logins(argv, n):
    """n logins one after another: latencies (ms) of those that worked, and
    the failures' last stderr lines."""
    times, failures = [], []
    for _ in range(n):
        started = time.monotonic()
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=40)
            ok, why = done.returncode == 0, (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        except subprocess.TimeoutExpired:
            ok, why = False, "no answer within 40 s"
        elapsed = (time.monotonic() - started) * 1000
        if ok:
            times.append(elapsed)
        else:
            failures.append(why[:160])
    return times, failures


def latency_stats(times, failures):
    times = sorted(times)
    return {"n_ok": len(times), "n_failed": len(failures),
            "median_ms": statistics.median(times) if times else None,
            "p90_ms": percentile(times, 90) if times else None,
            "failures": sorted(set(failures))}


def latency_under_flood(servers, flood, logins):
    rows = []
    for server, transport in TARGETS:
        port, proc = servers.start(server)
        argv = client_argv(server, transport, port, servers)
        subprocess.run(argv, capture_output=True, timeout=40)  # warm up (page cache, host key)
        baseline = latency_stats(*timed_logins(argv, logins))
        flooder = subprocess.Popen(
            [str(LOAD), "flood", "--transport", transport, "--port", str(port), "--count", str(flood),
             "--source", "127.0.0.2", "--seconds", "600"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            up = json.loads(flooder.stdout.readline() or "{}")
        except json.JSONDecodeError:
            up = {}
        time.sleep(1.0)  # let the server see them all
        flooded = latency_stats(*timed_logins(argv, logins))
        flooder.stdin.close()
        try:
            end = json.loads((flooder.stdout.read() or "{}").strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            end = {}
        flooder.wait(timeout=30)
        alive = proc.poll() is None
        servers.stop(proc)
        ratio = (flooded["median_ms"] / baseline["median_ms"]
                 if flooded["median_ms"] and baseline["median_ms"] else None)
        row = {"server": server, "transport": transport, "flood_connections": flood,
               "flood_established": up.get("established"), "flood_failures": up.get("failures"),
               "flood_still_open_at_end": end.get("still_open_at_end"),
               "baseline": baseline, "under_flood": flooded, "median_ratio": ratio,
               "server_alive_after": alive}
        print(f"load: {label(server, transport)}: login {baseline['median_ms'] or 0:.1f} ms -> "
              f"{flooded['median_ms'] or 0:.1f} ms under a flood of {up.get('established')} "
              f"({flooded['n_failed']}/{logins} failed)", flush=True)
        rows.append(row)
    return rows


def fmt(value, digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary(meta, logins_rows, flood_rows, args):
    lines = [
        "# Load: concurrent logins and login latency under a pre-auth flood",
        "",
        f"Run {meta.get('date', '')} on {meta.get('cpus', '?')} CPUs, Linux {meta.get('kernel', '')} "
        f"(commit {meta.get('commit', '')}), loopback, "
        f"by `interop/run load{' --capacity' if args.capacity else ''}`. "
        + ("Both servers with their limits raised (sshqd: `MaxStartups 2000`, `PerSourceMaxStartups none`, "
           "`PerSourcePenalties no`; sshd: `MaxStartups 2000`), to measure handshake capacity; "
           f"OpenSSH is {meta.get('openssh', '')}, "
           if args.capacity else
           "sshqd with its defaults (`Transports quic,tcp`), OpenSSH's sshd "
           f"({meta.get('openssh', '')}) with its defaults (MaxStartups 10:30:100, no PerSourceMaxStartups), ")
        + 
        "both logging in the same user with the same key. A benchmark: no timing is asserted. "
        f"The machine's 1-minute load average at the start was {meta.get('loadavg_1min_at_start', 0):.1f} "
        "(the client, the flood and the servers share its CPUs, so figures move between runs).",
        "",
        f"## {args.count} logins at once",
        "",
        "Every login is started at once by `sshq-load` (russh over TCP, sshq-quic over QUIC) and held "
        "open until all have finished. Memory: sshqd's VmHWM (one process, /proc/PID/status); for OpenSSH, "
        "which forks per connection, the peak of PSS summed over sshd and all its children (sampled every "
        "200 ms; PSS divides shared pages among the processes that share them, so the sum is not inflated "
        "as an RSS sum is, which is also given).",
        "",
        "| server | ok | failed (why) | all done after | login p50 / p90 | peak memory |",
        "|---|---|---|---|---|---|",
    ]
    for r in logins_rows:
        mem = r["memory"]
        if r["server"] == "sshd":
            memory = (f"{mem['peak_pss_sum_kib'] / 1024:.1f} MiB PSS over up to {mem['peak_processes']} "
                      f"processes (RSS sum {mem['peak_rss_sum_kib'] / 1024:.1f} MiB)")
        else:
            memory = f"{mem['vmhwm_kib'] / 1024:.1f} MiB VmHWM"
        why = ", ".join(f"{n} {k}" for k, n in (r.get("failures") or {}).items()) or "-"
        ms = r.get("login_ms") or {}
        lines.append(f"| {label(r['server'], r['transport'])} | {r.get('succeeded')} | {r.get('failed')} ({why}) "
                     f"| {fmt(r.get('total_s'), 2)} s | {fmt(ms.get('p50'))} / {fmt(ms.get('p90'))} ms | {memory} |")
    lines += [
        "",
        f"## Login latency from 127.0.0.1 while 127.0.0.2 holds {args.flood} silent connections",
        "",
        f"{args.logins} logins (`true`) one after another by a real client (sshq for sshqd, OpenSSH's ssh for "
        "sshd), first without a flood, then while `sshq-load flood` holds its unauthenticated connections "
        "(TCP: connected, nothing sent; QUIC: handshake done, no stream).",
        "",
        "| server | flood up | baseline median / p90 | under flood median / p90 | ratio | failed under flood |",
        "|---|---|---|---|---|---|",
    ]
    for r in flood_rows:
        b, f = r["baseline"], r["under_flood"]
        why = "; ".join(f["failures"])[:200]
        lines.append(
            f"| {label(r['server'], r['transport'])} | {r['flood_established']} | {fmt(b['median_ms'])} / "
            f"{fmt(b['p90_ms'])} ms | {fmt(f['median_ms'])} / {fmt(f['p90_ms'])} ms | "
            f"{fmt(r['median_ratio'], 2)}x | {f['n_failed']}/{args.logins}{(' (' + why + ')') if why else ''} |")
    lines += ["", "## Reading it", ""]
    by = {(r["server"], r["transport"]): r for r in flood_rows}
    ossh = by.get(("sshd", "tcp"))
    if ossh:
        lines.append(
            f"- OpenSSH's sshd: {ossh['under_flood']['n_failed']} of {args.logins} logins from another "
            "address failed during the flood "
            + ("(MaxStartups raised to 2000 for this run), median ratio " if args.capacity else
               "(its default MaxStartups 10:30:100 counts every source together, and "
               "PerSourceMaxStartups is off by default), median ratio ")
            + f"{fmt(ossh['median_ratio'], 2)}x.")
    for key in (("sshqd", "tcp"), ("sshqd", "quic")):
        r = by.get(key)
        if r:
            lines.append(
                f"- {label(*key)}: {r['under_flood']['n_failed']} of {args.logins} failed during the flood, "
                f"median ratio {fmt(r['median_ratio'], 2)}x; {r['flood_still_open_at_end']} of the flood's "
                "connections were still open at the end.")
    lines += ["", "Raw figures: `results.json`."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="concurrent logins per server")
    parser.add_argument("--flood", type=int, default=400, help="silent pre-auth connections of the flood")
    parser.add_argument("--logins", type=int, default=30, help="timed logins, with and without flood")
    parser.add_argument("--capacity", action="store_true",
                        help="raise both servers' pre-auth limits (report goes to results/load-capacity)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.out is None:
        args.out = OUT.parent / "load-capacity" if args.capacity else OUT
    if not LOAD.exists():
        raise SystemExit(f"load: {LOAD} is missing: cargo build --release -p sshq-load")
    fd_limit = raise_fd_limit()
    load_before = os.getloadavg()[0]
    user = bench_user()
    tmp = Path(tempfile.mkdtemp(prefix="sshq-load."))
    os.chmod(tmp, 0o755)
    servers = Servers(tmp, user, args.capacity)
    try:
        logins_rows = concurrent_logins(servers, args.count)
        flood_rows = latency_under_flood(servers, args.flood, args.logins)
    finally:
        servers.stop_all()
    ssh_version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    meta = dict(run_metadata())
    meta.update(commit=git_commit(), openssh=ssh_version, fd_limit=fd_limit, user=user,
                loadavg_1min_at_start=load_before,
                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"meta": meta, "concurrent_logins": logins_rows, "latency_under_flood": flood_rows}, indent=2) + "\n")
    (args.out / "summary.md").write_text(summary(meta, logins_rows, flood_rows, args))
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"load: wrote {args.out}/summary.md and results.json")


if __name__ == "__main__":
    main()
