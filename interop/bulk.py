#!/usr/bin/env python3
"""Bulk throughput versus loss and RTT, per transport.

Each run starts `client host 'cat /dev/zero'` in the client namespace and
counts what arrives on its stdout during a fixed window after the first
byte (a fixed window, not a fixed size, keeps lossy long-RTT cells
bounded). The data flows server to client, so the server side's congestion
controller is the one that matters; it is recorded per run.

Writes interop/results/bulk/: samples.csv, summary.csv, summary.json,
bulk.png and summary.md.
"""

import argparse
import json
import statistics

from sshqlab import experiment
from sshqlab.link import congestion_for, link_description
from sshqlab.probes import run_probe
from sshqlab.results import pyplot, results_dir, write_csv
from sshqlab.servers import TRANSPORT_LABELS

FULL_LOSSES = [0, 0.5, 1, 2, 5]
# A transport at this share of the bottleneck's rate or more fills the link.
CAPACITY_SHARE = 0.9
FULL_RTTS = [20, 50, 100, 200]
QUICK_CELLS = [(0, 50), (1, 50)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="0%% and 1%% loss at 50 ms, 2 runs of 5 s")
    ap.add_argument("--losses", default=None)
    ap.add_argument("--rtts", default=None)
    ap.add_argument("--runs", type=int, default=None, help="runs per transport and cell (default 3)")
    ap.add_argument("--seconds", type=float, default=None, help="measuring window per run (default 10)")
    experiment.add_common_arguments(ap)
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild bulk.png and summary.md from the summary.json already in --out")
    args = ap.parse_args()
    if args.report_only:
        report_again(results_dir("bulk", args.out))
        return
    if args.quick:
        cells = QUICK_CELLS
    else:
        losses = [float(x) for x in args.losses.split(",")] if args.losses else FULL_LOSSES
        rtts = [float(x) for x in args.rtts.split(",")] if args.rtts else FULL_RTTS
        cells = [(lo, r) for r in rtts for lo in losses]
    runs = args.runs or (2 if args.quick else 3)
    seconds = args.seconds or (5 if args.quick else 10)
    transports = experiment.parse_transports(args.transports, "bulk")
    samples = []
    with experiment.Run("bulk", args) as lab_run:
        workdir, link, servers = lab_run.workdir, lab_run.link, lab_run.servers
        for loss, rtt in cells:
            link.set_path(rtt, loss)
            for run in range(runs):
                for t in transports:
                    argv = servers.client_argv(t) + ["cat /dev/zero"]
                    r = run_probe(link.client_ns, "probe-throughput", argv, str(workdir / "clients.log"),
                                  timeout=seconds + 60, seconds=seconds)
                    mbit = r["bytes"] * 8 / r["seconds"] / 1e6 if r.get("seconds") else None
                    samples.append({"transport": t, "loss_pct": loss, "rtt_ms": rtt, "run": run,
                                    "mbit_s": round(mbit, 2) if mbit else None,
                                    "congestion": congestion_for(t, args.tcp_cc, args.quic_cc),
                                    "error": r.get("error") or ""})
                    lab_run.log(f"{loss}% {rtt} ms {t:20} {samples[-1]['mbit_s']} Mbit/s {r.get('error') or ''}")
    rows = []
    for loss, rtt in cells:
        for t in transports:
            xs = [s["mbit_s"] for s in samples if (s["transport"], s["loss_pct"], s["rtt_ms"]) == (t, loss, rtt)
                  and s["mbit_s"] is not None]
            rows.append({"transport": t, "loss_pct": loss, "rtt_ms": rtt,
                         "mbit_s_median": round(statistics.median(xs), 2) if xs else None,
                         "runs": len(xs), "congestion": congestion_for(t, args.tcp_cc, args.quic_cc)})
    out, command = lab_run.out, lab_run.command
    meta = lab_run.metadata(runs=runs, seconds_per_run=seconds, tcp_congestion=args.tcp_cc,
                            quic_congestion=args.quic_cc, link=link_description(args), rate_mbit=args.rate_mbit)
    write_csv(out / "samples.csv", samples, list(samples[0]))
    write_csv(out / "summary.csv", rows, list(rows[0]))
    (out / "summary.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")

    report(rows, cells, transports, meta, out, command)


def report(rows, cells, transports, meta, out, command):
    """bulk.png and summary.md from the per-cell medians."""
    tcp_cc, quic_cc = meta["tcp_congestion"], meta["quic_congestion"]
    plt = pyplot()
    rtts = sorted({r for _, r in cells})
    fig, axes = plt.subplots(1, len(rtts), figsize=(5 * len(rtts), 4.2), squeeze=False, sharey=True)
    for ax, rtt in zip(axes[0], rtts):
        for t in transports:
            pts = sorted((r["loss_pct"], r["mbit_s_median"]) for r in rows if r["transport"] == t
                         and r["rtt_ms"] == rtt and r["mbit_s_median"])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=TRANSPORT_LABELS[t])
        ax.set_title(f"RTT {rtt:g} ms")
        ax.set_xlabel("random loss each way (%)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("throughput (Mbit/s, median)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"Bulk throughput, server to client (TCP {tcp_cc}, QUIC {quic_cc})")
    fig.tight_layout()
    fig.savefig(out / "bulk.png", dpi=110)
    plt.close(fig)

    median = {(r["transport"], r["loss_pct"], r["rtt_ms"]): r["mbit_s_median"] for r in rows}
    lines = [f"# Bulk throughput versus loss and RTT ({meta['date']})", "",
             f"Commit {meta['commit']}, {meta['openssh']}. `client host 'cat /dev/zero'`, bytes read in the "
             f"{meta['seconds_per_run']:g} s after the first byte, {meta['runs']} interleaved runs per transport "
             f"and cell, medians. The data flows from the server, whose congestion controller is the one that "
             f"counts." + (f" {meta['link']}." if meta.get("link") else ""), "",
             "| loss % | RTT ms | " + " | ".join(TRANSPORT_LABELS[t] for t in transports) + " |",
             "|---:|---:|" + "---:|" * len(transports)]
    for loss, rtt in cells:
        vals = [median.get((t, loss, rtt)) for t in transports]
        lines.append(f"| {loss:g} | {rtt:g} | " + " | ".join(str(v) for v in vals) + " |")
    lines += ["", "Mbit/s. Plot: `bulk.png`.", ""]
    if {"sshq-quic", "openssh"} <= set(transports):
        rate = meta.get("rate_mbit")
        lines += [f"## Target: sshq over QUIC at least OpenSSH's throughput, same controller ({quic_cc})", "",
                  "| loss % | RTT ms | sshq over QUIC / OpenSSH | verdict |", "|---:|---:|---:|---|"]
        met = 0
        for loss, rtt in cells:
            q, o = median.get(("sshq-quic", loss, rtt)), median.get(("openssh", loss, rtt))
            if q is None or o is None:
                lines.append(f"| {loss:g} | {rtt:g} | - | no figures |")
                continue
            ok = q >= o
            met += ok
            verdict = "met" if ok else "MISSED"
            if not ok and rate and min(q, o) >= CAPACITY_SHARE * rate:
                # Both fill the bottleneck; what is left is per-packet overhead.
                verdict += " (both at the link's capacity)"
            lines.append(f"| {loss:g} | {rtt:g} | {q / o:.2f} | {verdict} |")
        lines += ["", f"Met in {met} of {len(cells)} cells. Where both fill the bottleneck, the difference is "
                  "what each puts around its data in every packet (QUIC's header, AEAD tag and frame headers "
                  "against TCP's options and SSH's packet framing).", ""]
    lines += [f"Rerun: `{command}`."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def report_again(out):
    """Rebuilds bulk.png and summary.md from summary.json."""
    saved = json.loads((out / "summary.json").read_text())
    rows, meta = saved["rows"], saved["meta"]
    cells = list(dict.fromkeys((r["loss_pct"], r["rtt_ms"]) for r in rows))
    transports = list(dict.fromkeys(r["transport"] for r in rows))
    report(rows, cells, transports, meta, out, meta["command"])


if __name__ == "__main__":
    main()
