"""The matrix's outputs: matrix.json (SCHEMA.md), matrix.md (a table per transport) and matrix.html
(a static page: a coloured grid per transport, CSS-only filters by peer and case, per-peer summaries,
and what changed since the previous committed run)."""

import json
import subprocess

from . import html
from .cases import CASES, REFUSAL_CASES
from .clients import CLIENTS, SERVERS, TRANSPORTS, transport_not_applicable
from .peers import ROOT

MARK = {"pass": "✓", "fail": "✗", "n/a": "n/a"}
SCHEMA_VERSION = 2
COMMITTED = "interop/results/matrix/matrix.json"


def key(cell):
    return (cell["client"], cell["server"], cell["transport"], cell["case"])


def previous_run():
    """The matrix.json of the last commit (git HEAD), or None when there is none."""
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:{COMMITTED}"], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def compare(previous, records):
    """What started or stopped passing since `previous` (a matrix.json document), cell by cell."""
    if previous is None:
        return None
    before = {key(c): c for c in previous.get("cells", [])}
    now = {key(c): c for c in records}
    started = [dict(zip(("client", "server", "transport", "case"), k), before=before[k]["result"])
               for k, c in now.items() if c["result"] == "pass" and k in before and before[k]["result"] != "pass"]
    stopped = [dict(zip(("client", "server", "transport", "case"), k), now=c["result"], detail=c["detail"])
               for k, c in now.items() if c["result"] != "pass" and k in before and before[k]["result"] == "pass"]
    meta = previous.get("meta", {})
    return {"baseline": {"commit": meta.get("commit"), "date": meta.get("date"), "quick": meta.get("quick")},
            "started_passing": started, "stopped_passing": stopped,
            "new_cells": sum(1 for k in now if k not in before), "gone_cells": sum(1 for k in before if k not in now),
            "new_passing": sum(1 for k, c in now.items() if k not in before and c["result"] == "pass")}


def write(out, meta, records, peers):
    meta = dict(meta, schema_version=SCHEMA_VERSION)
    changes = compare(previous_run(), records)
    document = {"meta": meta, "peers": peers, "changes": changes, "cells": records}
    (out / "matrix.json").write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    (out / "matrix.md").write_text(markdown(meta, records, peers, changes))
    (out / "matrix.html").write_text(html.page(meta, records, peers, changes))


def counts(cells):
    return {r: sum(1 for c in cells if c["result"] == r) for r in ("pass", "fail", "n/a")}


def peer_summary(peer, records):
    """One line per role: passed/failed/n-a of the cells where `peer` is that role."""
    parts = []
    for role in ("client", "server"):
        mine = [c for c in records if c[role] == peer]
        if mine:
            n = counts(mine)
            parts.append(f"as {role}: {n['pass']} passed, {n['fail']} failed, {n['n/a']} n/a")
    return "; ".join(parts)


def markdown(meta, records, peers, changes):
    n = counts(records)
    lines = [
        f"# Interop matrix ({'quick' if meta['quick'] else 'full'})", "",
        f"Run {meta['date']} on commit `{meta['commit']}`; {len(records)} cells: "
        f"{n['pass']} passed, {n['fail']} failed, {n['n/a']} not applicable "
        f"({meta['seconds']:.0f} s, {meta['workers']} workers). The same run as a page: `matrix.html`; "
        "as data: `matrix.json` (schema in `interop/matrix/SCHEMA.md`).", "",
        "Peers, as they reported themselves in this run, with their roles and results:", "",
    ]
    for name, info in peers.items():
        summary = peer_summary(name, records)
        lines.append(f"- **{name}** ({', '.join(info['roles'])}): `{info['version']}`" +
                     (f" — {summary}" if summary else ""))
    lines += ["", *change_lines(changes), ""]
    lines += [
        "Legend: ✓ ran and was checked; "
        "✗ ran and failed (log in `logs/<client>-<server>-<transport>-<case>.log`, with its triage below the table); "
        "n/a cannot apply (reason below the table). "
        f"{', '.join(sorted(REFUSAL_CASES))} pass only when the client refused with the expected message "
        "and the remote command did not run (cert-refused: with exit 255). cert-login logs in with a user "
        "certificate made in the run and trusted through TrustedUserCAKeys (its key alone is authorized nowhere); "
        "cert-refused offers the same key with an expired certificate; host-cert trusts the server (one presenting "
        "a HostCertificate for 127.0.0.1) only through a known_hosts `@cert-authority *` line, with "
        "StrictHostKeyChecking=yes. The kex column shows the negotiated key exchange "
        "(for quic-tunnel: the end-to-end SSH one). Transports: tcp is SSH over TCP; quic is sshq to sshqd over "
        "QUIC; quic-tunnel is the client's SSH stream carried by `sshq proxy` over QUIC to an sshqd whose "
        "`QuicRelay` passes it to the server's TCP port. The added peers (PuTTY, TinySSH, libssh, Go, AsyncSSH, "
        "Paramiko, ssh2) meet sshq/sshqd and the reference implementations (OpenSSH, Dropbear), not each other; "
        "their sftp and scp cells run OpenSSH's sftp/scp over the peer's session channel (`-S`), "
        "except PuTTY's, which use psftp and pscp.", "",
    ]
    by_key = {key(c): c for c in records}
    for transport in TRANSPORTS:
        cases = [case for case in CASES if any(k[2] == transport and k[3] == case for k in by_key)]
        pairs = [(cl, sv) for cl in CLIENTS for sv in SERVERS
                 if any((cl, sv, transport, case) in by_key for case in cases)]
        if not pairs:
            continue
        lines += [f"## {transport}", "", "| client → server | " + " | ".join(cases) + " |",
                  "|---|" + "---|" * len(cases)]
        reasons, failures, absent = {}, [], {}
        for client, server in pairs:
            cells = [by_key.get((client, server, transport, case)) for case in cases]
            present = [cell for cell in cells if cell]
            why = transport_not_applicable(client, server, transport)
            if why:  # the pair cannot meet over this transport at all: listed below, not as a row of n/a
                absent.setdefault(why, []).append(f"{client} → {server}")
                continue
            row = []
            for cell in cells:
                if cell is None:
                    row.append("")
                    continue
                mark = MARK[cell["result"]]
                if cell["case"] == "kex" and cell["result"] == "pass":
                    mark += " " + cell["detail"]
                if cell["result"] == "n/a":
                    mark += f" [{reasons.setdefault(cell['detail'], len(reasons) + 1)}]"
                row.append(mark)
            failures += [cell for cell in present if cell["result"] == "fail"]
            lines.append(f"| {client} → {server} | " + " | ".join(row) + " |")
        lines.append("")
        if reasons:
            lines += [f"{n}. n/a: {text}" for text, n in reasons.items()] + [""]
        if absent:
            lines.append("Pairs not in this table (every cell n/a):")
            lines += [f"- {', '.join(names)}: {why}" for why, names in absent.items()] + [""]
        if failures:
            lines.append("Failures, each with its triage:")
            for c in failures:
                triage = c.get("triage") or {}
                lines.append(f"- {c['client']} → {c['server']}, {c['case']}: {c['detail']}"
                             + (f" — **{triage['verdict']}**: {triage['explanation']}" if triage else ""))
            lines.append("")
    lines += ["Rerun: `interop/run matrix` (all cells) or `interop/run matrix --quick` (the CI subset).", ""]
    return "\n".join(lines)


def change_lines(changes):
    if changes is None:
        return ["No previous committed run to compare with."]
    base = changes["baseline"]
    lines = [f"Since the previous committed run ({base['date']}, commit `{base['commit']}`): "
             f"{len(changes['started_passing'])} cells started passing, {len(changes['stopped_passing'])} "
             f"stopped passing; {changes['new_cells']} cells are new ({changes['new_passing']} of them pass), "
             f"{changes['gone_cells']} are gone."]
    for c in changes["stopped_passing"]:
        lines.append(f"- stopped passing: {c['client']} → {c['server']} over {c['transport']}, {c['case']} "
                     f"({c['now']}: {c['detail']})")
    for c in changes["started_passing"]:
        lines.append(f"- started passing: {c['client']} → {c['server']} over {c['transport']}, {c['case']} "
                     f"(was {c['before']})")
    return lines
