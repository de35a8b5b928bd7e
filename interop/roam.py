#!/usr/bin/env python3
"""Roaming and blackouts: does an interactive session survive, and how long
does its output stall?

An interactive session (a pty echoing keystrokes sent every 50 ms, as in
`hol`) runs over a 50 ms RTT link without loss. At 5 s into it, either the
client's address changes (sshq-linkem `roam`: a new address is added and the
old one deleted, as when a laptop moves to another network), or the link
goes dark for 5 s (`blackout on`, then `blackout off`). The session
*survives* when every keystroke is echoed (in order) afterwards; the
*stall* is the longest gap between two consecutive echoes.

Over TCP a connection is tied to its addresses, so a roam ends it; QUIC
connections migrate to the new address.

Writes interop/results/roam/: results.csv, summary.json, roam.png and summary.md.
"""

import argparse
import json

from sshqlab import experiment
from sshqlab.link import congestion_for, link_description
from sshqlab.probes import run_probe
from sshqlab.results import pyplot, write_csv
from sshqlab.servers import TRANSPORT_LABELS

RTT_MS = 50
EVENT_AT_S = 5
BLACKOUT_S = 5
SCENARIOS = {
    "roam": [[EVENT_AT_S, "roam"]],
    "blackout": [[EVENT_AT_S, "blackout on"], [EVENT_AT_S + BLACKOUT_S, "blackout off"]],
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one run per transport and scenario")
    ap.add_argument("--runs", type=int, default=None, help="runs per transport and scenario (default 3, quick 1)")
    ap.add_argument("--seconds", type=float, default=15, help="length of each session's keystroke stream")
    experiment.add_common_arguments(ap)
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    transports = experiment.parse_transports(args.transports, "roam")
    interval_ms = 50
    count = int(args.seconds * 1000 / interval_ms)
    results = []
    with experiment.Run("roam", args) as lab_run:
        workdir, link, servers = lab_run.workdir, lab_run.link, lab_run.servers
        link.set_path(RTT_MS, 0)
        for run in range(runs):
            for scenario, events in SCENARIOS.items():
                for t in transports:
                    r = run_probe(link.client_ns, "probe-echo", servers.client_argv(t, tty=True),
                                  str(workdir / "clients.log"), timeout=args.seconds + 90,
                                  count=count, interval_ms=interval_ms, control=link.control_path,
                                  events=json.dumps(events), drain_timeout=25)
                    lat = r.get("latencies_ms") or []
                    survived = (not r.get("error") and r.get("unanswered", 1) == 0
                                and r.get("mismatched", 1) == 0 and len(lat) == count)
                    results.append({
                        "transport": t, "scenario": scenario, "run": run, "survived": survived,
                        "stall_ms": r.get("max_gap_ms"), "max_latency_ms": max(lat) if lat else None,
                        "echoed": len(lat), "sent": count,
                        "congestion": congestion_for(t, args.tcp_cc, args.quic_cc),
                        "events": "; ".join(f"{e['at_s']}s {e['command']} -> {e['answer']}"
                                            for e in r.get("events", [])),
                        "error": r.get("error") or ""})
                    lab_run.log(f"{scenario:8} {t:20} survived={survived} stall={r.get('max_gap_ms')} ms "
                                f"echoed {len(lat)}/{count} {r.get('error') or ''}")
    out, command = lab_run.out, lab_run.command
    meta = lab_run.metadata(rtt_ms=RTT_MS, event_at_s=EVENT_AT_S, blackout_s=BLACKOUT_S, runs=runs)
    write_csv(out / "results.csv", results, list(results[0]))
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=1) + "\n")

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), squeeze=False)
    for ax, scenario in zip(axes[0], SCENARIOS):
        labels, stalls, colors = [], [], []
        for t in transports:
            rs = [r for r in results if r["transport"] == t and r["scenario"] == scenario]
            ok = all(r["survived"] for r in rs)
            labels.append(TRANSPORT_LABELS[t].replace(" (", "\n("))
            stalls.append(max((r["stall_ms"] or 0) for r in rs) / 1000)
            colors.append("tab:green" if ok else "tab:red")
        ax.bar(range(len(labels)), stalls, color=colors)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylabel("longest output stall (s)")
        ax.set_title(f"{scenario} at {EVENT_AT_S} s" + (f" ({BLACKOUT_S} s)" if scenario == "blackout" else "")
                     + ": green survived, red died")
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "roam.png", dpi=110)
    plt.close(fig)

    lines = [f"# Roaming and blackouts ({meta['date']})", "",
             f"Commit {meta['commit']}, {meta['openssh']}. Keystrokes every {interval_ms} ms for {args.seconds:g} s "
             f"over a {RTT_MS} ms RTT link; at {EVENT_AT_S} s the client's address changes (roam), or the link "
             f"is dark for {BLACKOUT_S} s (blackout). Survived: every keystroke echoed, in order. Stall: the "
             f"longest gap between two echoes (50 ms when nothing happens; for a session that died, at least "
             f"until the end of the run). {runs} run(s) each. {link_description(args)}; no loss.", "",
             "| scenario | transport | survived | stall ms (worst) | echoed | notes |", "|---|---|---|---:|---:|---|"]
    for scenario in SCENARIOS:
        for t in transports:
            rs = [r for r in results if r["transport"] == t and r["scenario"] == scenario]
            ok = sum(r["survived"] for r in rs)
            worst = max((r["stall_ms"] or 0) for r in rs)
            notes = "; ".join(sorted({r["error"] for r in rs if r["error"]}))
            lines.append(f"| {scenario} | {TRANSPORT_LABELS[t]} | {ok}/{len(rs)} | {worst} | "
                         f"{min(r['echoed'] for r in rs)}/{count} | {notes} |")
    lines += ["", "Plot: `roam.png`.", "", f"Rerun: `{command}`."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
