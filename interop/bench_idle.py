#!/usr/bin/env python3
"""Memory per idle session (`interop/run bench-idle`): sshqd over QUIC, sshqd
over TCP and OpenSSH's sshd, in one run on loopback.

For each transport, a fresh server (sshqd, or sshd, each with its own
config: sshqlab.servers.start_loopback_servers), then:
1. `fresh`: the server's memory once it listens;
2. `warm`: after a warm-up batch of sessions was opened and closed (so the
   one-off costs of a first connection -- runtime threads, crypto tables,
   allocator arenas -- are not charged to the measured sessions);
3. `loaded`: while `sshq-load idle` (interop/load) holds N idle sessions,
   each an authenticated connection with one pty shell whose prompt arrived;
4. `closed`: after the client let them all go (what the server keeps).

Memory is read from /proc (sshqlab.memory): the server's own processes
(sshqd: its one process; sshd: the listener and the per-connection
privilege-separation processes, all named sshd) apart from the sessions'
processes (the login shells). Per session = (loaded - warm) / N, in RSS and
in PSS; the shells' cost = their summed PSS / N; the client's = the RSS of
the one sshq-load process holding all N / N. A benchmark: nothing asserted.

Bounded: one transport at a time, logins at most --parallel at once, the
file-descriptor limit and (as root) the kernel's pty and pid limits raised
as needed and restored, and the client stopped -- closing every session --
as soon as MemAvailable falls below --min-free-mib. Every process of the
server's tree is stopped at the end, even on failure.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sshqlab import memory
from sshqlab.gitinfo import run_metadata
from sshqlab.keys import bench_user
from sshqlab.paths import ROOT
from sshqlab.procs import stop
from sshqlab.results import results_dir, write_csv
from sshqlab.servers import TRANSPORT_LABELS, start_loopback_servers
from sshqlab.stats import ratio

LOAD = ROOT / "target" / "release" / "sshq-load"
TRANSPORTS = ("sshq-quic", "sshq-tcp", "openssh")
TARGET_KIB = 64  # issue 12 item 5: sshqd over QUIC, per idle session
PHASES = ("fresh", "warm", "loaded", "closed")
CSV_FIELDS = ["transport", "phase", "sessions", "server_procs", "server_rss_kib", "server_pss_kib",
              "server_threads", "session_procs", "session_rss_kib", "session_pss_kib",
              "client_rss_kib", "client_pss_kib", "mem_available_kib"]


def log(text):
    print(f"bench-idle: {text}", flush=True)


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class KernelLimits:
    """Raises /proc/sys limits that N sessions need (as root) and puts them
    back on exit."""

    def __init__(self):
        self.saved = {}

    def at_least(self, path, want):
        path = Path(path)
        try:
            now = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        if now >= want:
            return now
        if os.geteuid() != 0:
            raise SystemExit(f"bench-idle: {path} is {now}, {want} needed: run as root or with fewer --sessions")
        try:
            path.write_text(str(want))
        except OSError as e:
            raise SystemExit(f"bench-idle: cannot raise {path} from {now} to {want}: {e}")
        self.saved.setdefault(path, now)
        return want

    def restore(self):
        for path, value in self.saved.items():
            try:
                path.write_text(str(value))
            except OSError as e:
                log(f"could not restore {path} to {value}: {e}")


class MemoryGuard(threading.Thread):
    """Stops `proc` (the client: its sessions close with it) if MemAvailable
    falls below `floor_kib`."""

    def __init__(self, proc, floor_kib):
        super().__init__(daemon=True)
        self.proc, self.floor, self.tripped, self.done = proc, floor_kib, None, threading.Event()

    def run(self):
        while not self.done.wait(0.5):
            free = memory.mem_available_kib()
            if free is not None and free < self.floor and self.proc.poll() is None:
                self.tripped = free
                self.proc.kill()
                return


def snapshot(root, comm, client=None, sessions=0):
    mem = memory.server_memory(root, comm)
    client_mem = memory.rollup_kib(client.pid) if client is not None and client.poll() is None else None
    return {"sessions": sessions, "server": mem["server"], "session_procs": mem["sessions"],
            "server_threads": mem["root_threads"], "client": client_mem,
            "mem_available_kib": memory.mem_available_kib()}


def start_client(transport, port, count, user, key, parallel):
    argv = [str(LOAD), "idle", "--transport", "quic" if transport == "sshq-quic" else "tcp",
            "--port", str(port), "--count", str(count), "--user", user, "--key", str(key),
            "--parallel", str(parallel)]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def read_json_line(proc):
    line = proc.stdout.readline()
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return {"error": (line.strip() or f"client exited with {proc.poll()}")[:300]}


def finish_client(proc):
    """Closes the client's stdin (it lets its sessions go) and returns its last line."""
    try:
        # communicate closes stdin, then reads the rest of stdout.
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    lines = out.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        return {"error": lines[-1][:300]}


def kill_tree(pids, table):
    """SIGKILL each of `pids` still running under the same command name (a
    process whose server went away has a new parent, not a new name)."""
    for pid in pids:
        if memory.command_name(pid) == table.get(pid, (0, None))[1]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def run_transport(transport, args, user, work):
    tmp = work / transport
    tmp.mkdir()
    os.chmod(tmp, 0o755)
    procs = []
    root = None
    client = None
    row = {"transport": transport, "attempted": args.sessions, "phases": {}}
    try:
        sshd_port, sshqd_port = start_loopback_servers(tmp, procs)
        sshd, sshqd = procs
        if transport == "openssh":
            root, comm, port = sshd.pid, "sshd", sshd_port
            stop(sshqd)
        else:
            root, comm, port = sshqd.pid, "sshqd", sshqd_port
            stop(sshd)
        time.sleep(1.0)  # sshqd's QUIC endpoint, and the readiness probes' sessions gone
        row["phases"]["fresh"] = snapshot(root, comm)
        if args.warmup:
            warm = start_client(transport, port, args.warmup, user, tmp / "user", args.parallel)
            row["warmup"] = read_json_line(warm)
            finish_client(warm)
            time.sleep(args.settle)
        row["phases"]["warm"] = snapshot(root, comm)
        log(f"{transport}: opening {args.sessions} idle sessions")
        client = start_client(transport, port, args.sessions, user, tmp / "user", args.parallel)
        guard = MemoryGuard(client, args.min_free_mib * 1024)
        guard.start()
        up = read_json_line(client)
        row["up"] = up
        established = up.get("established") or 0
        time.sleep(args.settle)
        row["phases"]["loaded"] = snapshot(root, comm, client, established)
        guard.done.set()
        row["memory_guard_tripped_at_kib"] = guard.tripped
        row["end"] = finish_client(client)
        client = None
        time.sleep(args.settle)
        # Thousands of sessions take the server a while to end; wait (up
        # to a minute) until their processes are gone, then once more for
        # the server to give memory back.
        waited = time.monotonic()
        while time.monotonic() - waited < 60:
            _, left = memory.split_tree(root, memory.process_table(), comm)
            if not left:
                break
            time.sleep(1.0)
        time.sleep(args.settle)
        row["phases"]["closed"] = snapshot(root, comm)
        row["server_alive_after"] = procs[0 if transport == "openssh" else 1].poll() is None
        row["established"] = established
        log(f"{transport}: {established}/{args.sessions} established in {up.get('setup_s', 0):.1f} s"
            + (f", failures {up.get('failures')}" if up.get("failures") else "")
            + (f"; stopped by the memory guard at {guard.tripped} KiB free" if guard.tripped else ""))
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        table = memory.process_table()
        leftovers = [p for p in memory.tree(root, table) if p != root] if root else []
        for proc in procs:
            stop(proc)
        kill_tree(leftovers, table)
    return row


def per_session_figures(row):
    """The per-session figures of one transport's row (KiB)."""
    phases, n = row["phases"], row.get("established") or 0
    warm, loaded, fresh = phases.get("warm"), phases.get("loaded"), phases.get("fresh")
    if not (warm and loaded and n):
        return {}
    client = loaded.get("client") or {}
    return {
        "server_rss_kib": memory.per_session_kib(warm["server"]["rss_kib"], loaded["server"]["rss_kib"], n),
        "server_pss_kib": memory.per_session_kib(warm["server"]["pss_kib"], loaded["server"]["pss_kib"], n),
        "server_rss_from_fresh_kib": memory.per_session_kib(fresh["server"]["rss_kib"],
                                                            loaded["server"]["rss_kib"], n),
        "session_pss_kib": memory.per_session_kib(0, loaded["session_procs"]["pss_kib"], n),
        "session_rss_kib": memory.per_session_kib(0, loaded["session_procs"]["rss_kib"], n),
        "session_procs_per_session": loaded["session_procs"]["procs"] / n,
        "server_procs_per_session": memory.per_session_kib(warm["server"]["procs"],
                                                           loaded["server"]["procs"], n),
        "client_rss_kib": memory.per_session_kib(0, client.get("rss"), n),
        "client_pss_kib": memory.per_session_kib(0, client.get("pss"), n),
    }


def csv_rows(rows):
    for row in rows:
        for phase in PHASES:
            snap = row["phases"].get(phase)
            if not snap:
                continue
            client = snap.get("client") or {}
            yield {"transport": row["transport"], "phase": phase, "sessions": snap["sessions"],
                   "server_procs": snap["server"]["procs"], "server_rss_kib": snap["server"]["rss_kib"],
                   "server_pss_kib": snap["server"]["pss_kib"], "server_threads": snap["server_threads"],
                   "session_procs": snap["session_procs"]["procs"],
                   "session_rss_kib": snap["session_procs"]["rss_kib"],
                   "session_pss_kib": snap["session_procs"]["pss_kib"],
                   "client_rss_kib": client.get("rss", ""), "client_pss_kib": client.get("pss", ""),
                   "mem_available_kib": snap["mem_available_kib"]}


def fmt(value, digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}"


def reading(rows):
    """Plain facts of the run, in sentences."""
    lines = []
    for r in rows:
        f, n = r.get("per_session", {}), r.get("established") or 0
        closed, warm = r["phases"].get("closed"), r["phases"].get("warm")
        if not (f and closed and warm):
            continue
        kept = memory.per_session_kib(warm["server"]["rss_kib"], closed["server"]["rss_kib"], n)
        lines.append(
            f"- {TRANSPORT_LABELS.get(r['transport'], r['transport'])}: {n} sessions; "
            f"{fmt(f.get('session_procs_per_session'), 2)} session processes and "
            f"{fmt(f.get('server_procs_per_session'), 2)} server processes per session; after all closed "
            f"the server kept {fmt(kept)} KiB RSS per session above warm "
            f"({closed['session_procs']['procs']} session processes left).")
    return lines


def summary_md(meta, rows, command):
    by = {r["transport"]: r for r in rows}
    ossh = by.get("openssh", {}).get("per_session", {})
    lines = [
        "# Memory per idle session: sshqd (QUIC, TCP) against OpenSSH's sshd",
        "",
        f"Run {meta['date']} on {meta['cpus']} CPUs, Linux {meta['kernel']}, commit {meta['commit']}, "
        f"{meta['openssh']}; loopback; N = {meta['sessions']} sessions per transport "
        f"(warm-up {meta['warmup']}, at most {meta['parallel']} logins at once). Rerun: `{command}`.",
        "",
        "Each session is an authenticated connection with one session channel, a pty and the login "
        "shell (`/bin/sh`, dash, of a user without rc files), counted once the shell's prompt arrived; "
        "one `sshq-load idle` process holds all N (russh over TCP, sshq-quic over QUIC). Server = "
        "sshqd's one process, or sshd's listener plus its per-connection privilege-separation "
        "processes; per session = (loaded - warm) / N, where warm is after a warm-up batch was "
        "opened and closed. PSS shares each shared page among its processes (the fair sum over "
        "sshd's forks); RSS counts shared pages in every process. Shells = the sessions' own "
        "processes (summed PSS / N).",
        "",
        "| transport | sessions | server KiB/session (PSS / RSS) | server processes/session "
        "| shells KiB/session (PSS / RSS) | client KiB/session (RSS) | server vs OpenSSH (PSS) "
        "| server + shells vs OpenSSH (PSS) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for transport in TRANSPORTS:
        r = by.get(transport)
        if not r:
            continue
        f = r.get("per_session", {})
        total = (f.get("server_pss_kib") or 0) + (f.get("session_pss_kib") or 0) if f else None
        ossh_total = ((ossh.get("server_pss_kib") or 0) + (ossh.get("session_pss_kib") or 0)) if ossh else None
        versus = ratio(f.get("server_pss_kib"), ossh.get("server_pss_kib")) if ossh else None
        versus_total = ratio(total, ossh_total) if ossh else None
        lines.append(
            f"| {TRANSPORT_LABELS.get(transport, transport)} | {r.get('established', 0)}/{r['attempted']} "
            f"| {fmt(f.get('server_pss_kib'))} / {fmt(f.get('server_rss_kib'))} "
            f"| {fmt(f.get('server_procs_per_session'), 2)} "
            f"| {fmt(f.get('session_pss_kib'))} / {fmt(f.get('session_rss_kib'))} "
            f"| {fmt(f.get('client_rss_kib'))} | {fmt(versus, 3)}x | {fmt(versus_total, 3)}x |")
    lines += ["", "## The target", ""]
    quic = by.get("sshq-quic", {}).get("per_session", {})
    cost = max((v for v in (quic.get("server_rss_kib"), quic.get("server_pss_kib")) if v is not None),
               default=None)
    if cost is None:
        lines.append(f"sshqd over QUIC was not measured in this run: target ({TARGET_KIB} KiB) not assessed.")
    else:
        verdict = "met" if cost <= TARGET_KIB else "missed"
        lines.append(
            f"sshqd over QUIC: {fmt(cost)} KiB per idle session beyond the session's own processes "
            f"(the larger of its RSS and PSS growth per session); target <= {TARGET_KIB} KiB: **{verdict}**.")
    if meta.get("profile"):
        lines.append("Where sshqd's memory per session goes (a heap profile), what was cut and what is left: "
                     "[profile.md](profile.md).")
    lines.append("")
    lines += meta.get("reading", [])
    lines.append("")
    lines += ["", "## Phases (KiB; raw.csv has every figure)", "",
              "| transport | phase | sessions | server PSS | server RSS | server threads | session processes "
              "| sessions' PSS | client RSS |", "|---|---|---|---|---|---|---|---|---|"]
    for row in csv_rows(rows):
        lines.append(f"| {row['transport']} | {row['phase']} | {row['sessions']} | {row['server_pss_kib']} "
                     f"| {row['server_rss_kib']} | {row['server_threads']} | {row['session_procs']} "
                     f"| {row['session_pss_kib']} | {row['client_rss_kib']} |")
    for r in rows:
        notes = []
        if r.get("up", {}).get("failures"):
            notes.append(f"failures {r['up']['failures']}")
        if r.get("memory_guard_tripped_at_kib"):
            notes.append(f"stopped by the memory guard at {r['memory_guard_tripped_at_kib']} KiB available")
        if r.get("error"):
            notes.append(f"error: {r['error']}")
        if notes:
            lines.append(f"\n{r['transport']}: " + "; ".join(notes))
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1000, help="idle sessions per transport (default 1000)")
    parser.add_argument("--transports", default=",".join(TRANSPORTS),
                        help=f"comma-separated, from {', '.join(TRANSPORTS)} (default: all)")
    parser.add_argument("--warmup", type=int, default=20, help="sessions opened and closed before 'warm'")
    parser.add_argument("--parallel", type=int, default=4,
                        help="logins in flight at once (sshqd's default PerSourceMaxStartups is 5)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between a change and a reading")
    parser.add_argument("--min-free-mib", type=int, default=1024,
                        help="stop the client (closing its sessions) below this much MemAvailable")
    parser.add_argument("--out", default=None, help="results directory (default interop/results/bench-idle)")
    args = parser.parse_args()
    transports = [t for t in args.transports.split(",") if t]
    for t in transports:
        if t not in TRANSPORTS:
            raise SystemExit(f"bench-idle: unknown transport {t!r}; choose from {', '.join(TRANSPORTS)}")
    if args.sessions < 1 or args.parallel < 1 or args.warmup < 0:
        raise SystemExit("bench-idle: --sessions and --parallel want a positive number, --warmup >= 0")
    if not LOAD.exists():
        raise SystemExit(f"bench-idle: {LOAD} is missing: cargo build --release -p sshq-load")
    command = " ".join(["interop/run", "bench-idle", *sys.argv[1:]])
    total = args.sessions + args.warmup
    # Per session: a socket and a pty at the server, a socket at the client,
    # a few pipes; one process per transport at a time.
    fds = raise_fd_limit(max(65536, 8 * total + 1024))
    # The servers inherit this limit and hold ~3 descriptors per QUIC session
    # and ~4 per TCP session (socket, pty, pipes); sshd's are spread over its
    # per-connection processes. Where the hard limit cannot be raised (no
    # CAP_SYS_RESOURCE), sessions beyond it fail at sshqd.
    if fds < 4 * total + 1024:
        log(f"warning: the file-descriptor limit is {fds} and cannot be raised here; sshqd will run out of "
            f"descriptors after about {max(0, fds - 64) // 4} TCP or {max(0, fds - 64) // 3} QUIC sessions")
    limits = KernelLimits()
    work = Path(tempfile.mkdtemp(prefix="sshq-idle."))
    os.chmod(work, 0o755)
    rows = []
    try:
        nr = int(Path("/proc/sys/kernel/pty/nr").read_text())
        limits.at_least("/proc/sys/kernel/pty/max", nr + total + 256)
        # OpenSSH: two sshd processes and a shell per session.
        limits.at_least("/proc/sys/kernel/pid_max", len(memory.process_table()) + 4 * total + 4096)
        user = bench_user()
        for transport in transports:
            try:
                row = run_transport(transport, args, user, work)
            except Exception as e:  # one transport failing still reports the others
                row = {"transport": transport, "attempted": args.sessions, "phases": {}, "error": repr(e)[:300]}
                log(f"{transport}: failed: {e!r}")
            row["per_session"] = per_session_figures(row)
            rows.append(row)
    finally:
        limits.restore()
        shutil.rmtree(work, ignore_errors=True)
    meta = dict(run_metadata())
    meta.update(sessions=args.sessions, warmup=args.warmup, parallel=args.parallel, settle_s=args.settle,
                fd_limit=fds, user=user, command=command)
    out = results_dir("bench-idle", args.out)
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    write_csv(out / "raw.csv", csv_rows(rows), CSV_FIELDS)
    meta["reading"] = reading(rows)
    # The heap profile's notes, written by hand (see profile.md), sit beside the figures.
    meta["profile"] = (out / "profile.md").exists()
    (out / "summary.md").write_text(summary_md(meta, rows, command))
    for row in rows:
        f = row.get("per_session", {})
        log(f"{row['transport']}: server {fmt(f.get('server_pss_kib'))} KiB PSS / "
            f"{fmt(f.get('server_rss_kib'))} KiB RSS per session, shells {fmt(f.get('session_pss_kib'))} KiB PSS")
    log(f"wrote {out}/summary.md, summary.json, raw.csv")


if __name__ == "__main__":
    main()
