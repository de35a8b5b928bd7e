"""Interop matrix: clients x servers x transports x cases, with real peers.

Reference clients {sshq, OpenSSH 9.2 ssh, OpenSSH 10.0 ssh, Dropbear dbclient}
and servers {sshqd, OpenSSH 9.2 sshd, OpenSSH 10.0 sshd, Dropbear}, and the
added peers (more_peers: PuTTY, TinySSH, libssh, Go x/crypto/ssh, AsyncSSH,
Paramiko, Node ssh2), each meeting sshq/sshqd and the references, over
{tcp, quic, quic-tunnel}, including OpenSSH certificates (user certificates
through TrustedUserCAKeys, host certificates through @cert-authority). Writes
interop/results/matrix/{matrix.md,matrix.html,matrix.json} (SCHEMA.md) and
logs/ (a log per failing cell, one per pair for passing cells); every failing
cell carries a triage (triage.py); exits 1 when any cell failed.

Run through `interop/run matrix [--quick]` (which builds sshq first).
"""

import argparse
import os
import pwd
import re
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import socketserver
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sshqlab.gitinfo import git_commit

from . import peers, report
from .cases import CASES, RUNNERS, Cell, case_not_applicable, server_instance, sha256
from . import more_peers
from .clients import CLIENTS, SERVERS, TRANSPORTS, pair_in_plan, transport_not_applicable
from .triage import triage

# The CI subset: every client, server and transport, and the cases that
# matter most for interoperability (including the negotiated key exchange and
# OpenSSH certificates: user certificate accepted and expired one refused,
# host certificate trusted through @cert-authority).
QUICK_CASES = ["exec", "blob-16MiB", "hostkey-changed", "userkey-wrong", "cert-login", "cert-refused",
               "host-cert", "kex"]
# In the CI subset each added peer (more_peers) meets only sshq or sshqd, in these cases: enough to catch
# a break in interoperability while keeping the subset under three minutes on two cores.
QUICK_PEER_CASES = ["exec", "blob-16MiB", "userkey-wrong", "kex"]


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(30)
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def plan(quick, servers, relays):
    """Every cell of the run: (client, server, transport, case, endpoint, reason it cannot run or None).

    The endpoint is the server process the client connects to (for quic-tunnel: the relay to it),
    None for a cell that cannot run."""
    cells = []
    for transport in TRANSPORTS:
        for client in CLIENTS:
            for server in SERVERS:
                if not pair_in_plan(client, server):
                    continue
                cases = CASES
                if quick:
                    added = client in more_peers.CLIENTS or server in more_peers.SERVERS
                    if added and client != "sshq" and server != "sshqd":
                        continue
                    cases = QUICK_PEER_CASES if added else QUICK_CASES
                for case in cases:
                    why = transport_not_applicable(client, server, transport) or \
                        case_not_applicable(client, server, case, transport)
                    instance = server_instance(server, case)
                    endpoint = None if why else relays[instance] if transport == "quic-tunnel" else servers[instance]
                    cells.append((client, server, transport, case, endpoint, why))
    return cells


def run_cell(spec, rundir, ctx, logs, keep_logs):
    client, server, transport, case, endpoint, why = spec
    record = {"client": client, "server": server, "transport": transport, "case": case}
    if why:
        return dict(record, result="n/a", detail=why, seconds=0)
    cell = Cell(client, server, transport, case, endpoint.port, rundir, ctx)
    started = time.time()
    if endpoint.error:
        ok, detail = False, endpoint.error
    elif client in more_peers.UNAVAILABLE:
        ok, detail = False, f"{client} unavailable: {more_peers.UNAVAILABLE[client]}"
    else:
        try:
            ok, detail = RUNNERS[case](cell)
        except Exception as e:  # a harness fault in one cell must not hide the others
            ok, detail = False, f"harness error: {type(e).__name__}: {e}"
    if not ok and cell.first_error:
        detail += f" ({cell.first_error[:160]})"
    record.update(result="pass" if ok else "fail", detail=detail, seconds=round(time.time() - started, 2))
    log = logs / f"{cell.name}.log"
    if ok and not keep_logs:
        # A passing cell's transcript goes, shortened, into its pair's log (logs/passed/), written after the run.
        record["log"] = f"logs/passed/{client}-{server}-{transport}.log"
        record["_transcript"] = f"== {case}: {detail}\n" + "\n".join(shorten(entry) for entry in cell.log) + "\n"
    else:
        record["log"] = f"logs/{cell.name}.log"
        # The servers' own view of the failure: the relay's (quic-tunnel) and the server's.
        target = ctx["servers"][server_instance(server, case)]
        involved = [endpoint] + ([target] if endpoint is not target else [])
        tails = [f"--- {s.log.name} (last lines) ---\n{s.log_tail(25).replace(' | ', chr(10))}" for s in involved]
        log.write_text(f"{cell.name}: {detail}\n\n" + "\n".join(cell.log) + "\n\n" + "\n".join(tails) + "\n")
    shutil.rmtree(cell.dir, ignore_errors=True)
    return record


def shorten(entry, limit=400):
    """A transcript entry cut to its start and end (passing cells' logs stay small)."""
    if len(entry) <= limit:
        return entry
    return entry[:limit // 2] + f" [... {len(entry) - limit} bytes ...] " + entry[-limit // 2:]


def write_passed_logs(logs, records):
    """One log per client/server/transport pair holding the transcripts of its passing cells."""
    by_log = {}
    for r in records:
        text = r.pop("_transcript", None)
        if text is not None:
            by_log.setdefault(r["log"], []).append(text)
    (logs / "passed").mkdir(exist_ok=True)
    for path, texts in by_log.items():
        (logs.parent / path).write_text("\n".join(texts))


def peer_roles():
    """Every peer of the run: its roles and the version it reported."""
    versions = peers.versions()
    names = list(dict.fromkeys([*CLIENTS, *SERVERS]))
    info = {}
    for name in names:
        roles = (["client"] if name in CLIENTS else []) + (["server"] if name in SERVERS else [])
        info[name] = {"roles": roles, "version": versions.get(name, "unknown")}
    return info


def start_agent(rundir):
    sock = rundir / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.05)
    env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
    added = subprocess.run(["ssh-add", str(peers.KEYS / "user")], env=env, capture_output=True, text=True, timeout=30)
    if added.returncode != 0:
        raise peers.SetupError(f"ssh-add could not load the matrix user key: {added.stderr.strip()}")
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(peers.KEYS / "user.pub")],
                                 capture_output=True, text=True).stdout.split()[1]
    return agent, str(sock), fingerprint


def main():
    ap = argparse.ArgumentParser(prog="interop/run matrix", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"only the cases {', '.join(QUICK_CASES)} (CI)")
    ap.add_argument("--workers", type=int, default=4, help="cells run in parallel (default 4)")
    ap.add_argument("--only", metavar="REGEX", help="only cells whose name <client>-<server>-<transport>-<case> "
                    "matches (e.g. 'openssh-10.0-.*-kex'); the report then covers only those")
    ap.add_argument("--keep-logs", action="store_true", help="keep the logs of passing cells too")
    ap.add_argument("--out", default=str(peers.ROOT / "interop/results/matrix"),
                    help="where matrix.md, matrix.json and logs/ go (default interop/results/matrix)")
    args = ap.parse_args()
    if not 1 <= args.workers <= 16:
        ap.error("--workers must be between 1 and 16")
    if args.only:
        try:
            re.compile(args.only)
        except re.error as e:
            ap.error(f"--only: not a regular expression: {e}")
    for binary in (peers.SSHQ, peers.SSHQD):
        if not binary.exists():
            sys.exit(f"matrix: {binary} is missing; run cargo build --release (interop/run matrix does it)")
    try:
        peers.require_root()
        peers.ensure_debian_packages()
        peers.ensure_openssh10()
        peers.ensure_keys()
        peers.ensure_user()
        more_peers.ensure_installed()
    except (peers.SetupError, subprocess.TimeoutExpired) as e:
        sys.exit(f"matrix: {e}")

    # A TERM (e.g. from timeout(1)) must still stop the servers, which run in
    # sessions of their own: turn it into an exit that runs the cleanup below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = Path(args.out)
    logs = out / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir(parents=True)
    rundir = Path(tempfile.mkdtemp(prefix="sshq-matrix."))
    os.chmod(rundir, 0o755)
    started = time.time()
    servers, relays, agent, echo = {}, {}, None, None
    try:
        blob, small = rundir / "blob", rundir / "small"
        blob.write_bytes(os.urandom(16 << 20))
        small.write_bytes(os.urandom(1 << 20))
        echo = EchoServer(("127.0.0.1", 0), EchoHandler)
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        agent, agent_sock, fingerprint = start_agent(rundir)
        certs = peers.make_certificates(rundir)
        servers, relays = peers.start_servers(rundir, certs)
        home = Path(pwd.getpwnam(peers.MATRIX_USER).pw_dir)
        ctx = {"blob": blob, "blob_sha256": sha256(blob), "small": str(small), "small_sha256": sha256(small),
               "echo_port": echo.server_address[1], "agent_sock": agent_sock, "user_fingerprint": fingerprint,
               "user_home": home, "leftovers": [], "servers": servers, "certs": certs}
        cells = plan(args.quick, servers, relays)
        if args.only:
            cells = [c for c in cells if re.search(args.only, "-".join(c[:4]))]
        print(f"matrix: {len(cells)} cells ({'quick' if args.quick else 'full'}), {args.workers} workers", flush=True)
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            records = list(pool.map(lambda spec: run_cell(spec, rundir, ctx, logs, args.keep_logs), cells))
        for name in ctx["leftovers"]:
            (home / name).unlink(missing_ok=True)
    except peers.SetupError as e:
        sys.exit(f"matrix: {e}")
    finally:
        for server in list(servers.values()) + list(relays.values()):
            server.stop()
        if agent:
            agent.kill()
            agent.wait()
        if echo:
            echo.shutdown()
        shutil.rmtree(rundir, ignore_errors=True)

    write_passed_logs(logs, records)
    triage(records)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "commit": git_commit(),
            "quick": args.quick, "only": args.only, "workers": args.workers,
            "seconds": round(time.time() - started, 1)}
    report.write(out, meta, records, peer_roles())
    failed = [r for r in records if r["result"] == "fail"]
    for r in failed:
        print(f"matrix: FAILED {r['client']} -> {r['server']} over {r['transport']}, {r['case']}: {r['detail']}")
    print(f"matrix: report in {out / 'matrix.md'}; {sum(r['result'] == 'n/a' for r in records)} cells "
          "cannot apply (n/a), each with its reason there")
    print(f"matrix: {sum(r['result'] == 'pass' for r in records)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
