#!/usr/bin/env python3
"""Roaming, sleep and blackouts: does an interactive session survive, and how
long does its output stall?

An interactive session (a pty echoing keystrokes sent every 50 ms, as in
`hol`) runs over a 50 ms RTT link without loss. At 5 s into it:
- roam: the client's address changes (sshq-linkem `roam`: a new address is
  added and the old one deleted, as when a laptop moves to another network);
- blackout: the link goes dark for 5 s; blackout120: for 2 minutes;
- sleep30: the client process is stopped (SIGSTOP, as a laptop lid closes)
  for 30 s, then continued; sleep-roam: the same, with a roam while asleep;
  sleep5m and sleep30m (full run only): stopped for 5 and 30 minutes;
- udp-blocked: the client moves to a network that passes only TCP (roam,
  and every UDP packet dropped): sshq with Transport=auto must come back
  over TCP.
Keystrokes typed meanwhile wait in the client's stdin, as a user's would.
The session *survives* when every keystroke is echoed, in order and once,
afterwards; the *stall* is the longest gap between two consecutive echoes
(for a sleep, it includes the sleep itself).

Over TCP a connection is tied to its addresses, so a roam ends it; QUIC
connections migrate to the new address; sshq's reattachable sessions come
back on a new connection after either.

Mosh (Debian's mosh, started over OpenSSH, without local echo prediction)
runs the same scenarios. It synchronises a screen rather than relaying
bytes, so its keystrokes are counted on its screen
(`probes.ScreenCounterClient`): a keystroke counts as echoed when the count
shown reaches it; Mosh may skip intermediate screens but cannot repeat or
reorder keystrokes, so "in order, once" holds by construction and only
lost keystrokes count against it.

Writes interop/results/roam/: results.csv, summary.json, roam.png and summary.md.
"""

import argparse
import json

from sshqlab import experiment
from sshqlab.link import congestion_for, link_description
from sshqlab.probes import run_probe
from sshqlab.results import pyplot, write_csv
from sshqlab.servers import DEFAULT_TRANSPORTS, SCREEN_TRANSPORTS, TRANSPORT_LABELS

RTT_MS = 50
EVENT_AT_S = 5
BLACKOUT_S = 5
# scenario: (events [[seconds, command]], seconds of keystrokes, full run only)
SCENARIOS = {
    "roam": ([[EVENT_AT_S, "roam"]], 15, False),
    "blackout": ([[EVENT_AT_S, "blackout on"], [EVENT_AT_S + BLACKOUT_S, "blackout off"]], 15, False),
    "sleep30": ([[EVENT_AT_S, "client stop"], [EVENT_AT_S + 30, "client cont"]], 50, False),
    "sleep-roam": ([[EVENT_AT_S, "client stop"], [EVENT_AT_S + 10, "roam"],
                    [EVENT_AT_S + 30, "client cont"]], 50, False),
    "blackout120": ([[EVENT_AT_S, "blackout on"], [EVENT_AT_S + 120, "blackout off"]], 145, False),
    "udp-blocked": ([[EVENT_AT_S, "udp-block on"], [EVENT_AT_S, "roam"], [89, "udp-block off"]], 90, False),
    "sleep5m": ([[EVENT_AT_S, "client stop"], [EVENT_AT_S + 300, "client cont"]], 320, True),
    "sleep30m": ([[EVENT_AT_S, "client stop"], [EVENT_AT_S + 1800, "client cont"]], 1820, True),
}


def plot(results, scenarios, transports, path):
    """One bar chart per scenario: each transport's longest stall, green
    where the session survived, red where it died."""
    plt = pyplot()
    columns = 2
    rows_of_plots = (len(scenarios) + columns - 1) // columns
    fig, axes = plt.subplots(rows_of_plots, columns, figsize=(11, 4.6 * rows_of_plots), squeeze=False)
    for ax in axes.flat[len(scenarios):]:
        ax.set_visible(False)
    for ax, scenario in zip(axes.flat, scenarios):
        labels, stalls, colors = [], [], []
        for t in transports:
            rs = [r for r in results if r["transport"] == t and r["scenario"] == scenario]
            if not rs:
                continue
            ok = all(r["survived"] for r in rs)
            labels.append(TRANSPORT_LABELS[t])
            stalls.append(max((r["stall_ms"] or 0) for r in rs) / 1000)
            colors.append("tab:green" if ok else "tab:red")
        ax.bar(range(len(labels)), stalls, color=colors)
        # Six long names side by side only fit slanted.
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=25, ha="right")
        ax.set_ylabel("longest output stall (s)")
        ax.set_title(f"{scenario} at {EVENT_AT_S} s: green survived, red died", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one run per transport and scenario")
    ap.add_argument("--runs", type=int, default=None, help="runs per transport and scenario (default 3, quick 1)")
    ap.add_argument("--scenarios", default="", help="comma-separated (default: all; quick: all but the long sleeps)")
    ap.add_argument("--require-survival", action="store_true",
                    help="exit 1 unless every sshq session survived (interop/run test uses this)")
    experiment.add_common_arguments(ap, transports=(*DEFAULT_TRANSPORTS, "sshq-auto", "mosh"))
    args = ap.parse_args()
    runs = args.runs or (1 if args.quick else 3)
    transports = experiment.parse_transports(args.transports, "roam")
    chosen = [c for c in args.scenarios.split(",") if c] or [
        name for name, (_, _, long) in SCENARIOS.items() if not (long and args.quick)]
    for name in chosen:
        if name not in SCENARIOS:
            raise SystemExit(f"roam: unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    scenarios = {name: SCENARIOS[name] for name in chosen}
    interval_ms = 50
    results = []
    with experiment.Run("roam", args) as lab_run:
        workdir, link, servers = lab_run.workdir, lab_run.link, lab_run.servers
        link.set_path(RTT_MS, 0)
        for run in range(runs):
            for scenario, (events, seconds, long) in scenarios.items():
                # The long sleeps once each: 30 minutes times five clients is enough.
                if long and run > 0:
                    continue
                count = int(seconds * 1000 / interval_ms)
                for t in transports:
                    r = run_probe(link.client_ns, "probe-echo", servers.client_argv(t, tty=True),
                                  str(workdir / "clients.log"), timeout=seconds + 150,
                                  count=count, interval_ms=interval_ms, control=link.control_path,
                                  events=json.dumps(events), drain_timeout=60,
                                  screen_counter=t in SCREEN_TRANSPORTS)
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
                    lab_run.log(f"{scenario:11} {t:20} survived={survived} stall={r.get('max_gap_ms')} ms "
                                f"echoed {len(lat)}/{count} {r.get('error') or ''}")
    out, command = lab_run.out, lab_run.command
    meta = lab_run.metadata(rtt_ms=RTT_MS, event_at_s=EVENT_AT_S, blackout_s=BLACKOUT_S, runs=runs,
                            scenarios={name: {"events": e, "seconds": sec} for name, (e, sec, _) in scenarios.items()})
    write_csv(out / "results.csv", results, list(results[0]))
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": results}, indent=1) + "\n")

    plot(results, scenarios, transports, out / "roam.png")

    lines = [f"# Roaming and blackouts ({meta['date']})", "",
             f"Commit {meta['commit']}, {meta['openssh']}. Keystrokes every {interval_ms} ms over a {RTT_MS} ms "
             f"RTT link (Mosh: keystrokes counted on its screen, see roam.py); at {EVENT_AT_S} s: the client's address changes (roam); the link is dark for "
             f"{BLACKOUT_S} s (blackout) or 120 s (blackout120); the client process is stopped for 30 s "
             f"(sleep30), also roaming while stopped (sleep-roam), or for 5 or 30 minutes (sleep5m, sleep30m, "
             f"full run only, once); the client moves to a network that drops UDP (udp-blocked). Survived: "
             f"every keystroke echoed, in order, once. Stall: the longest gap between two echoes (50 ms when "
             f"nothing happens; it includes a sleep; for a session that died, at least until the end of the "
             f"run). {runs} run(s) each. {link_description(args)}; no loss. sshq asks for reattachable "
             f"sessions (sshqd holds them 1 h); `sshq, Transport=auto` may come back over TCP.", "",
             "| scenario | transport | survived | stall ms (worst) | echoed | notes |", "|---|---|---|---:|---:|---|"]
    for scenario in scenarios:
        for t in transports:
            rs = [r for r in results if r["transport"] == t and r["scenario"] == scenario]
            ok = sum(r["survived"] for r in rs)
            worst = max((r["stall_ms"] or 0) for r in rs)
            notes = "; ".join(sorted({r["error"] for r in rs if r["error"]}))
            lines.append(f"| {scenario} | {TRANSPORT_LABELS[t]} | {ok}/{len(rs)} | {worst} | "
                         f"{min(r['echoed'] for r in rs)}/{rs[0]['sent']} | {notes} |")
    lines += ["", "Plot: `roam.png`.", "", f"Rerun: `{command}`."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.require_survival:
        died = [f"{r['scenario']} over {r['transport']} (run {r['run']}): {r['error'] or 'keystrokes lost'}"
                for r in results if r["transport"].startswith("sshq") and not r["survived"]]
        if died:
            raise SystemExit("roam: sshq sessions that did not survive:\n  " + "\n  ".join(died))


if __name__ == "__main__":
    main()
