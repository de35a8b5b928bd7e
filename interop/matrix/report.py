"""The matrix's outputs: matrix.json (one record per cell) and matrix.md (a table per transport)."""

import json

from .cases import CASES, REFUSAL_CASES
from .clients import CLIENTS, SERVERS, TRANSPORTS, transport_not_applicable

MARK = {"pass": "✓", "fail": "✗", "n/a": "n/a"}


def write(out, meta, records):
    (out / "matrix.json").write_text(json.dumps({"meta": meta, "cells": records}, indent=2, ensure_ascii=False) + "\n")
    (out / "matrix.md").write_text(markdown(meta, records))


def markdown(meta, records):
    counts = {r: sum(1 for c in records if c["result"] == r) for r in ("pass", "fail", "n/a")}
    lines = [
        f"# Interop matrix ({'quick' if meta['quick'] else 'full'})", "",
        f"Run {meta['date']} on commit `{meta['commit']}`; {len(records)} cells: "
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['n/a']} not applicable "
        f"({meta['seconds']:.0f} s, {meta['workers']} workers).", "",
        "Peers, as they reported themselves in this run:", "",
    ]
    lines += [f"- {name}: `{version}`" for name, version in meta["versions"].items()]
    lines += [
        "", "Legend: ✓ ran and was checked; "
        "✗ ran and failed (log in `logs/<client>-<server>-<transport>-<case>.log`); "
        "n/a cannot apply (reason below the table). "
        f"{', '.join(sorted(REFUSAL_CASES))} pass only when the client refused with the expected message "
        "and the remote command did not run (cert-refused: with exit 255). cert-login logs in with a user "
        "certificate made in the run and trusted through TrustedUserCAKeys (its key alone is authorized nowhere); "
        "cert-refused offers the same key with an expired certificate; host-cert trusts the server (one presenting "
        "a HostCertificate for 127.0.0.1) only through a known_hosts `@cert-authority *` line, with "
        "StrictHostKeyChecking=yes. The kex column shows the negotiated key exchange "
        "(for quic-tunnel: the end-to-end SSH one). Transports: tcp is SSH over TCP; quic is sshq to sshqd over "
        "QUIC; quic-tunnel is the client's SSH stream carried by `sshq proxy` over QUIC to an sshqd whose "
        "`QuicRelay` passes it to the server's TCP port.", "",
    ]
    by_key = {(c["client"], c["server"], c["transport"], c["case"]): c for c in records}
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
            lines.append("Failures:")
            lines += [f"- {c['client']} → {c['server']}, {c['case']}: {c['detail']}" for c in failures]
            lines.append("")
    lines += ["Rerun: `interop/run matrix` (all cells) or `interop/run matrix --quick` (the CI subset).", ""]
    return "\n".join(lines)
