#!/usr/bin/env python3
"""Session setup: time to the first output byte of a command, versus RTT.

For each transport, `client host 'echo hi'` is started in the client
namespace and timed until its first byte of output; the link's RTT varies
and there is no loss. The cost in round trips is the slope of a straight
line fitted through the medians (first byte = CPU and process costs + k x
RTT), which removes the constant part (process start, key loading, the
key exchange's CPU time) that a simple time / RTT would count as round
trips; `(t(RTT) - t(0)) / RTT` per RTT is reported too.

Writes interop/results/setup/: samples.csv, summary.csv, summary.json,
setup.png and summary.md.
"""

import argparse
import json
import statistics

from sshqlab import experiment
from sshqlab.link import link_description
from sshqlab.probes import run_probe
from sshqlab.results import pyplot, write_csv
from sshqlab.servers import TRANSPORT_LABELS
from sshqlab.stats import slope

FULL_RTTS = [0, 20, 50, 100, 200]
QUICK_RTTS = [0, 50, 200]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"RTTs {QUICK_RTTS} ms, 3 runs each")
    ap.add_argument("--rtts", default=None, help="comma-separated RTTs in ms")
    ap.add_argument("--runs", type=int, default=None, help="runs per transport and RTT (default 7, quick 3)")
    experiment.add_common_arguments(ap)
    args = ap.parse_args()
    rtts = [float(x) for x in args.rtts.split(",")] if args.rtts else (QUICK_RTTS if args.quick else FULL_RTTS)
    runs = args.runs or (3 if args.quick else 7)
    transports = experiment.parse_transports(args.transports, "setup")
    samples = []
    with experiment.Run("setup", args) as lab_run:
        workdir, link, servers = lab_run.workdir, lab_run.link, lab_run.servers
        # Records the host key for every transport, so no run pays for it.
        for t in transports:
            run_probe(link.client_ns, "probe-first-byte", servers.client_argv(t) + ["echo hi"],
                      str(workdir / "clients.log"), timeout=60)
        for rtt in rtts:
            link.set_path(rtt, 0)
            for run in range(runs):
                for t in transports:  # interleaved: machine noise hits every transport alike
                    r = run_probe(link.client_ns, "probe-first-byte",
                                  servers.client_argv(t) + ["echo hi"], str(workdir / "clients.log"),
                                  timeout=60)
                    ok = r.get("exit") == 0 and r.get("first_byte_ms") is not None
                    samples.append({"transport": t, "rtt_ms": rtt, "run": run,
                                    "first_byte_ms": r.get("first_byte_ms"),
                                    "error": "" if ok else (r.get("error") or f"exit {r.get('exit')}")})
                    lab_run.log(f"rtt {rtt:g} ms {t:20} {r.get('first_byte_ms')} ms {'' if ok else 'FAILED'}")
    rows = []
    for t in transports:
        medians = {}
        for rtt in rtts:
            good = [s["first_byte_ms"] for s in samples if s["transport"] == t and s["rtt_ms"] == rtt
                    and not s["error"]]
            medians[rtt] = statistics.median(good) if good else None
        k = slope([(rtt, m) for rtt, m in medians.items() if m is not None])
        base = medians.get(0.0)
        for rtt in rtts:
            m = medians[rtt]
            rows.append({"transport": t, "rtt_ms": rtt, "first_byte_ms_median": round(m, 1) if m else None,
                         "round_trips_over_zero_rtt": round((m - base) / rtt, 2) if m and base and rtt else None,
                         "round_trips_fitted": round(k, 2) if k is not None else None,
                         "failures": sum(1 for s in samples if s["transport"] == t and s["rtt_ms"] == rtt
                                         and s["error"])})
    out, command = lab_run.out, lab_run.command
    meta = lab_run.metadata(runs=runs)
    write_csv(out / "samples.csv", samples, ["transport", "rtt_ms", "run", "first_byte_ms", "error"])
    write_csv(out / "summary.csv", rows, list(rows[0]))
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in transports:
        pts = [(r["rtt_ms"], r["first_byte_ms_median"]) for r in rows if r["transport"] == t
               and r["first_byte_ms_median"] is not None]
        k = next((r["round_trips_fitted"] for r in rows if r["transport"] == t), None)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                label=f"{TRANSPORT_LABELS[t]} ({k} round trips)" if k is not None else TRANSPORT_LABELS[t])
    ax.set_xlabel("RTT (ms)")
    ax.set_ylabel("first output byte (ms, median)")
    ax.set_title("Time to the first output byte of `echo hi`")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "setup.png", dpi=110)
    plt.close(fig)

    lines = [f"# Session setup versus RTT ({meta['date']})", "",
             f"Commit {meta['commit']}, {meta['openssh']}. Whole process `client host 'echo hi'` in the client "
             f"namespace, until its first output byte; no loss; {runs} interleaved runs per transport and RTT; "
             "medians. *Round trips* is the slope of a least-squares line through the medians "
             f"(the constant part, process start and key-exchange CPU, drops out). {link_description(args)}.",
             "",
             "| transport | " + " | ".join(f"{r:g} ms" for r in rtts) + " | round trips |",
             "|---|" + "---:|" * (len(rtts) + 1)]
    for t in transports:
        rr = [r for r in rows if r["transport"] == t]
        lines.append(f"| {TRANSPORT_LABELS[t]} | " + " | ".join(str(r["first_byte_ms_median"]) for r in rr)
                     + f" | {rr[0]['round_trips_fitted']} |")
    failures = sum(r["failures"] for r in rows)
    if failures:
        lines += ["", f"{failures} runs failed (see samples.csv)."]
    lines += ["", "Plot: `setup.png`.", "", f"Rerun: `{command}`."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
