#!/usr/bin/env python3
"""Head-of-line blocking: keystroke echo latency beside a bulk channel.

On one connection, an interactive session (a pty in raw mode, echoing) gets
a keystroke every 50 ms and each echo is timed, while a second channel (a
-L forward to a bulk source in the server namespace) carries data from the
server as fast as the path allows, in the same direction as the echoes.
Over TCP a lost bulk segment holds back every echo behind it until it is
retransmitted; with one QUIC stream per channel it should not.

Compared on the same emulated link, in the same run, repetitions
interleaved: sshq over TCP, OpenSSH, OpenSSH carried in one QUIC stream
(`ssh -o ProxyCommand='sshq proxy ..'` to sshqd's QuicRelay), and sshq over
QUIC. Each is measured with and without the bulk channel, over a grid of
random loss (each direction) and RTT.

Writes interop/results/hol/: samples.csv (every keystroke), summary.csv and
summary.json (one record per transport, loss, RTT and bulk), p99.png,
cdf.png and summary.md.
"""

import argparse
import csv
import json
import sys
import threading

from sshqlab import experiment, stats
from sshqlab.link import QUIC_TRANSPORTS, congestion_for, link_description, tcp_congestion_in_use
from sshqlab.probes import run_probe
from sshqlab.results import pyplot, results_dir, write_csv
from sshqlab.servers import TRANSPORTS, TRANSPORT_LABELS
from sshqlab.stats import latency_summary, percentile

FULL_LOSSES = [0, 0.5, 1, 2, 5]
FULL_RTTS = [20, 50, 100, 200]
# --quick: the cell the study's claim is about (1 % / 50 ms), with 300
# keystrokes per run (600 per transport: a p99 is then the 6th worst), and
# its loss-free baseline with fewer.
QUICK_CELLS = [(0, 50), (1, 50)]
QUICK_KEYSTROKES = {(0, 50): 150, (1, 50): 300}
# Keystrokes per run of the full grid (30 s each): with one run per
# transport and cell, a p99 is the 6th worst of 600, not a single outlier.
DEFAULT_KEYSTROKES = 600
# The QUIC target (issue 12): p99 with bulk within this factor of p99
# without, in every cell up to TARGET_MAX_LOSS.
QUIC_TARGET_RATIO = 1.25
TARGET_MAX_LOSS = 2
# The cell whose ratio the study must explain.
KEY_CELL = (1, 50)


class CongestionSampler:
    """Notes the TCP congestion controller `ss` shows for a transport's
    server-side sockets while a probe runs (the server sends the bulk)."""

    def __init__(self, servers, transport):
        self.servers, self.transport, self.seen = servers, transport, set()
        self.done = threading.Event()

    def __enter__(self):
        if self.servers.server_port(self.transport):
            threading.Thread(target=self._poll, daemon=True).start()
        return self

    def _poll(self):
        while not self.done.wait(1.0):
            self.seen |= tcp_congestion_in_use(self.servers.link.server_ns,
                                                    self.servers.server_port(self.transport))

    def __exit__(self, *exc):
        self.done.set()

    def controller(self, tcp_cc, quic_cc):
        """What `ss` showed for TCP (configured value if nothing was seen);
        the configured controller for QUIC."""
        configured = congestion_for(self.transport, tcp_cc, quic_cc)
        if self.transport in QUIC_TRANSPORTS:
            return configured
        return "+".join(sorted(self.seen)) or configured


def measure_cell(servers, link, loss, rtt, keystrokes, args, workdir, log):
    """All transports, with and without bulk, `args.reps` interleaved rounds."""
    link.set_path(rtt, loss)
    runs = {}
    for rep in range(args.reps):
        for transport in args.transports:
            # Alternate which of the pair goes first, so neither always
            # follows the other's leftovers.
            for bulk in ((False, True) if rep % 2 == 0 else (True, False)):
                argv = servers.client_argv(transport, tty=True, forward_bulk=bulk)
                budget = 60 + keystrokes * args.interval_ms / 1000 + args.drain_timeout
                with CongestionSampler(servers, transport) as cc:
                    r = run_probe(link.client_ns, "probe-echo", argv, str(workdir / "clients.log"),
                                      timeout=budget, count=keystrokes, interval_ms=args.interval_ms,
                                      bulk=bulk, connect_timeout=30, drain_timeout=args.drain_timeout)
                key = (transport, bulk)
                run = runs.setdefault(key, {"latencies": [], "unanswered": 0, "mismatched": 0, "errors": [],
                                            "bulk_bytes": 0, "bulk_seconds": 0.0, "congestion": set()})
                run["latencies"] += r.get("latencies_ms", []) + r.get("censored_ms", [])
                run["unanswered"] += r.get("unanswered", 0)
                run["mismatched"] += r.get("mismatched", 0)
                run["bulk_bytes"] += r.get("bulk_bytes", 0)
                run["bulk_seconds"] += r.get("bulk_seconds", 0.0)
                run["congestion"].add(cc.controller(args.tcp_cc, args.quic_cc))
                if r.get("error"):
                    run["errors"].append(r["error"])
                lat = r.get("latencies_ms") or [0]
                log(f"  {loss}% {rtt} ms rep {rep + 1}/{args.reps} {transport:20} bulk={str(bulk):5} "
                    f"n={len(r.get('latencies_ms', []))} p50={percentile(lat, 50):.1f} "
                    f"max={max(lat):.1f} ms" + (f"  ERROR {r['error']}" if r.get("error") else ""))
    rows, samples = [], []
    for (transport, bulk), run in runs.items():
        row = {"transport": transport, "loss_pct": loss, "rtt_ms": rtt, "bulk": bulk,
               **latency_summary(run["latencies"]), "keystrokes_per_run": keystrokes,
               "unanswered": run["unanswered"], "mismatched": run["mismatched"],
               "bulk_mbit": round(run["bulk_bytes"] * 8 / run["bulk_seconds"] / 1e6, 2)
               if run["bulk_seconds"] else None,
               "congestion": "+".join(sorted(run["congestion"])),
               "errors": "; ".join(sorted(set(run["errors"])))}
        rows.append(row)
        samples += [{"transport": transport, "loss_pct": loss, "rtt_ms": rtt, "bulk": bulk, "latency_ms": x}
                    for x in run["latencies"]]
    return rows, samples


def ratio(rows, transport, loss, rtt):
    """p99 with bulk / p99 without, for one transport and cell (None if missing)."""
    p99 = {r["bulk"]: r["p99_ms"] for r in rows
           if r["transport"] == transport and r["loss_pct"] == loss and r["rtt_ms"] == rtt}
    return stats.ratio(p99.get(True), p99.get(False))


def plot(rows, samples, cells, out):
    plt = pyplot()
    rtts = sorted({rtt for _, rtt in cells})
    fig, axes = plt.subplots(1, len(rtts), figsize=(max(8, 5 * len(rtts)), 5), squeeze=False, sharey=True)
    colors = dict(zip(TRANSPORTS, ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:red"]))
    for ax, rtt in zip(axes[0], rtts):
        for transport in TRANSPORTS:
            for bulk, style in ((True, "-"), (False, ":")):
                pts = sorted((r["loss_pct"], r["p99_ms"]) for r in rows if r["transport"] == transport
                             and r["rtt_ms"] == rtt and r["bulk"] == bulk and r["p99_ms"] is not None)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", color=colors[transport],
                            label=f"{TRANSPORT_LABELS[transport]}{' + bulk' if bulk else ''}")
        ax.set_title(f"RTT {rtt} ms")
        ax.set_xlabel("random loss each way (%)")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("keystroke echo p99 (ms)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=4)
    fig.suptitle("Keystroke echo p99: solid with a concurrent bulk channel, dotted without")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(out / "p99.png", dpi=110)
    plt.close(fig)

    loss, rtt = KEY_CELL
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for transport in TRANSPORTS:
        for bulk, style in ((True, "-"), (False, ":")):
            xs = sorted(s["latency_ms"] for s in samples if s["transport"] == transport and s["loss_pct"] == loss
                        and s["rtt_ms"] == rtt and s["bulk"] == bulk)
            if xs:
                ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], style, color=colors[transport],
                        label=f"{TRANSPORT_LABELS[transport]}{' + bulk' if bulk else ''}")
    ax.set_xscale("log")
    ax.set_xlabel("keystroke echo latency (ms)")
    ax.set_ylabel("fraction of keystrokes")
    ax.set_title(f"Echo latency CDF at {loss}% loss, {rtt} ms RTT")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "cdf.png", dpi=110)
    plt.close(fig)


def write_summary(rows, cells, args, meta, out, command):
    lines = [f"# Head-of-line blocking: keystroke echo latency ({meta['date']})", "",
             f"Commit {meta['commit']}, {meta['openssh']}, kernel {meta['kernel']}, {meta['cpus']} CPUs. "
             f"{link_description(args)}. A keystroke every {args.interval_ms:g} ms, {args.reps} interleaved "
             f"runs per transport and cell (a fresh connection each; keystrokes per run in summary.csv). "
             f"Latency: a keystroke written to the client's stdin until its echo (remote pty, raw mode) is read "
             f"from the client's stdout. The bulk channel is a -L forward on the same connection reading from "
             f"a server that sends as fast as it can (server to client, like the echoes). Percentiles are "
             f"nearest-rank; a p99 from fewer than 100 samples is marked `*`. The congestion column is what "
             f"`ss` showed for the TCP server's sockets, and the configured controller for QUIC.", ""]
    loss, rtt = KEY_CELL
    if KEY_CELL in cells:
        lines.append(f"## At {loss}% loss and {rtt} ms RTT")
        lines.append("")
        for t in args.transports:
            r = ratio(rows, t, loss, rtt)
            lines.append(f"- {TRANSPORT_LABELS[t]}: p99 with bulk / without = "
                         + (f"**{r:.2f}**" if r else "n/a"))
        q, tcp = ratio(rows, "sshq-quic", loss, rtt), ratio(rows, "sshq-tcp", loss, rtt)
        p99q = next((r["p99_ms"] for r in rows if r["transport"] == "sshq-quic" and r["bulk"]
                     and (r["loss_pct"], r["rtt_ms"]) == KEY_CELL), None)
        p99t = next((r["p99_ms"] for r in rows if r["transport"] == "sshq-tcp" and r["bulk"]
                     and (r["loss_pct"], r["rtt_ms"]) == KEY_CELL), None)
        if q is not None:
            lines.append("")
            lines.append(f"Target: sshq over QUIC within 1.25x of its own p99 without bulk: "
                         f"{'met' if q <= 1.25 else 'NOT met'} ({q:.2f}x)"
                         + (f"; with bulk its p99 is {p99q} ms against {p99t} ms for sshq over TCP."
                            if p99q and p99t else "."))
            del tcp
        lines.append("")
    lines += target_lines(rows, cells, args)
    lines += baseline_lines(rows, cells, args)
    losses = sorted({lo for lo, _ in cells})
    rtts = sorted({r for _, r in cells})
    if len(cells) > 2:
        lines += ["## p99 with bulk / p99 without, per transport", "",
                  "| transport | RTT ms | " + " | ".join(f"{lo:g} % loss" for lo in losses) + " |",
                  "|---|---:|" + "---:|" * len(losses)]
        for t in args.transports:
            for rtt in rtts:
                vals = [ratio(rows, t, lo, rtt) for lo in losses]
                lines.append(f"| {t} | {rtt:g} | " + " | ".join(f"{v:.2f}" if v else "-" for v in vals) + " |")
        lines.append("")
    lines += ["## All cells", "",
              "| loss % | RTT ms | transport | bulk | p50 | p95 | p99 | max | samples | p99 ratio | "
              "bulk Mbit/s | congestion | notes |",
              "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for loss, rtt in cells:
        for t in args.transports:
            for bulk in (False, True):
                r = next((x for x in rows if (x["transport"], x["loss_pct"], x["rtt_ms"], x["bulk"])
                          == (t, loss, rtt, bulk)), None)
                if r is None:
                    continue
                star = "*" if r["p99_from_few_samples"] else ""
                rt = ratio(rows, t, loss, rtt) if bulk else None
                notes = []
                if r["unanswered"]:
                    notes.append(f"{r['unanswered']} unanswered after {args.drain_timeout:g} s: "
                                 "percentiles are lower bounds")
                if r["mismatched"]:
                    notes.append(f"{r['mismatched']} mismatched")
                if r["errors"]:
                    notes.append(r["errors"])
                lines.append(f"| {loss} | {rtt} | {t} | {'yes' if bulk else 'no'} | {r['p50_ms']} | {r['p95_ms']} | "
                             f"{r['p99_ms']}{star} | {r['max_ms']} | {r['samples']} | "
                             f"{f'{rt:.2f}' if rt else ''} | {r['bulk_mbit'] if bulk else ''} | {r['congestion']} | "
                             f"{'; '.join(notes)} |")
    lines += ["", "Plots: `p99.png` (p99 versus loss, one panel per RTT), `cdf.png` (the 1 % / 50 ms cell).",
              "", f"Rerun: `{command}`."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    return lines


def p99_of(rows, transport, loss, rtt, bulk):
    return next((r["p99_ms"] for r in rows if (r["transport"], r["loss_pct"], r["rtt_ms"], r["bulk"])
                 == (transport, loss, rtt, bulk)), None)


def quic_miss_reason(rows, loss, rtt, args):
    """Why sshq over QUIC missed its target in a cell, as far as the figures
    tell: the echo's extra wait against what the bottleneck queue holds."""
    quiet, busy = p99_of(rows, "sshq-quic", loss, rtt, False), p99_of(rows, "sshq-quic", loss, rtt, True)
    if quiet is None or busy is None:
        return "no figures"
    extra = busy - quiet
    queue_ms = (args.queue_packets * 1500 * 8 / (args.rate_mbit * 1e3)) if args.rate_mbit else 0
    if queue_ms and extra <= 1.5 * queue_ms:
        return (f"the echo waited {extra:.0f} ms more, about what the bottleneck's drop-tail queue holds "
                f"({args.queue_packets} packets = {queue_ms:.0f} ms at {args.rate_mbit:g} Mbit/s): the bulk "
                f"flow's loss-based controller keeps that queue full, and an echo waits in it whatever the "
                f"sender's stream priorities (a delay-based controller, `--quic-cc bbr`, keeps it short)")
    return (f"the echo waited {extra:.0f} ms more than without bulk, beyond what the bottleneck queue "
            f"explains: see the cell's samples")


def target_lines(rows, cells, args):
    """Every cell's verdict on the two latency targets of issue 12."""
    checked = [(lo, r) for lo, r in cells if lo <= TARGET_MAX_LOSS]
    transports = set(args.transports)
    if not checked or not ({"sshq-tcp", "openssh"} <= transports or "sshq-quic" in transports):
        return []
    lines = ["## Targets, cell by cell", "",
             f"sshq over TCP: p99 with bulk no worse than OpenSSH's. sshq over QUIC: p99 with bulk within "
             f"{QUIC_TARGET_RATIO}x of its own p99 without (up to {TARGET_MAX_LOSS}% loss).", "",
             "| loss % | RTT ms | sshq-tcp vs openssh p99 (with bulk) | sshq-quic ratio | why a QUIC miss |",
             "|---:|---:|---|---|---|"]
    for loss, rtt in checked:
        tcp, ossh = p99_of(rows, "sshq-tcp", loss, rtt, True), p99_of(rows, "openssh", loss, rtt, True)
        tcp_cell = (f"{tcp} vs {ossh} ms: {'met' if tcp <= ossh else 'MISSED'}"
                    if tcp is not None and ossh is not None else "-")
        q = ratio(rows, "sshq-quic", loss, rtt)
        quic_cell = f"{q:.2f}: {'met' if q <= QUIC_TARGET_RATIO else 'MISSED'}" if q else "-"
        why = quic_miss_reason(rows, loss, rtt, args) if q and q > QUIC_TARGET_RATIO else ""
        lines.append(f"| {loss} | {rtt} | {tcp_cell} | {quic_cell} | {why} |")
    return lines + [""]


def baseline_lines(rows, cells, args):
    """Head-of-line blocking alone: sshq over QUIC against the same stack
    with every channel on one stream (draft-notes, Appendix C.2.1)."""
    if not {"sshq-quic", "sshq-one-stream"} <= set(args.transports):
        return []
    lines = ["## Head-of-line blocking alone", "",
             "`sshq-one-stream` differs from `sshq-quic` only in carrying every channel on one QUIC "
             "stream (same quinn connection, controller, windows and channel layer; a terminal's frames "
             "still go first and bulk data is held to the congestion window plus 16 KiB, as sshq over "
             "TCP holds it). What separates their p99 with bulk is head-of-line blocking: a lost packet "
             "of the bulk channel delays the echo behind it. `openssh-quic-tunnel` (OpenSSH in one QUIC "
             "stream) adds OpenSSH's own buffering on top.", "",
             "| loss % | RTT ms | p99 with bulk, one stream | p99 with bulk, stream per channel | one / per-channel |",
             "|---:|---:|---:|---:|---:|"]
    for loss, rtt in cells:
        one = p99_of(rows, "sshq-one-stream", loss, rtt, True)
        per = p99_of(rows, "sshq-quic", loss, rtt, True)
        quotient = f"{one / per:.2f}" if one and per else "-"
        lines.append(f"| {loss} | {rtt} | {one if one is not None else '-'} | "
                     f"{per if per is not None else '-'} | {quotient} |")
    return lines + [""]


def report_again(out):
    """Rebuilds the plots and summary.md from summary.json, samples.csv and
    meta.json (e.g. after changing how they are drawn)."""
    rows = json.loads((out / "summary.json").read_text())
    meta = json.loads((out / "meta.json").read_text())
    with open(out / "samples.csv") as f:
        samples = [{**r, "loss_pct": number(r["loss_pct"]), "rtt_ms": number(r["rtt_ms"]),
                    "bulk": r["bulk"] == "True", "latency_ms": float(r["latency_ms"])} for r in csv.DictReader(f)]
    cells = list(dict.fromkeys((r["loss_pct"], r["rtt_ms"]) for r in rows))
    args = argparse.Namespace(**meta["args"])
    plot(rows, samples, cells, out)
    print("\n".join(write_summary(rows, cells, args, meta, out, meta["command"])))


def number(text):
    value = float(text)
    return int(value) if value.is_integer() else value


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only 0%% and 1%% loss at 50 ms RTT")
    ap.add_argument("--losses", default=None, help="comma-separated loss percentages (default: the full grid)")
    ap.add_argument("--rtts", default=None, help="comma-separated RTTs in ms (default: the full grid)")
    ap.add_argument("--keystrokes", type=int, default=None,
                    help=f"keystrokes per run (default {DEFAULT_KEYSTROKES}; quick: 150, and 300 at 1%%/50 ms)")
    ap.add_argument("--reps", type=int, default=None,
                    help="interleaved runs per transport and cell (default 1, quick 2)")
    ap.add_argument("--interval-ms", type=float, default=50)
    ap.add_argument("--drain-timeout", type=float, default=5,
                    help="how long to wait for outstanding echoes after the last keystroke (s); "
                    "keystrokes still unanswered count with their wait so far (a lower bound)")
    experiment.add_common_arguments(ap, seed=True, transports=TRANSPORTS)
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild the plots and summary.md from the results already in --out")
    args = ap.parse_args()
    if args.quick:
        cells = QUICK_CELLS
    else:
        losses = [float(x) for x in args.losses.split(",")] if args.losses else FULL_LOSSES
        rtts = [float(x) for x in args.rtts.split(",")] if args.rtts else FULL_RTTS
        cells = [(lo, r) for r in rtts for lo in losses]
    cells = [(int(lo) if float(lo).is_integer() else lo, int(r) if float(r).is_integer() else r) for lo, r in cells]
    args.reps = args.reps or (2 if args.quick else 1)
    args.transports = experiment.parse_transports(args.transports, "hol")
    if args.report_only:
        report_again(results_dir("hol", args.out))
        return

    rows, samples = [], []
    with experiment.Run("hol", args, seed=args.seed) as run:
        for loss, rtt in cells:
            run.log(f"cell: {loss}% loss, {rtt} ms RTT")
            keystrokes = args.keystrokes or (QUICK_KEYSTROKES[(loss, rtt)] if args.quick
                                             else DEFAULT_KEYSTROKES)
            r, s = measure_cell(run.servers, run.link, loss, rtt, keystrokes, args, run.workdir, run.log)
            rows += r
            samples += s
        linkem_stats = run.link.control("stats")
        client_log = run.client_log_tail()
    out, command = run.out, run.command
    meta = run.metadata(
        rate_mbit=args.rate_mbit, queue_packets=args.queue_packets, reps=args.reps, interval_ms=args.interval_ms,
        tcp_congestion=args.tcp_cc, quic_congestion=args.quic_cc, linkem_stats=linkem_stats,
        args={k: getattr(args, k) for k in ("rate_mbit", "queue_packets", "tcp_cc", "quic_cc",
                                            "interval_ms", "reps", "transports", "drain_timeout")})
    fields = ["transport", "loss_pct", "rtt_ms", "bulk", "p50_ms", "p95_ms", "p99_ms", "max_ms", "samples",
              "keystrokes_per_run",
              "p99_from_few_samples", "unanswered", "mismatched", "bulk_mbit", "congestion", "errors"]
    write_csv(out / "summary.csv", rows, fields)
    write_csv(out / "samples.csv", samples, ["transport", "loss_pct", "rtt_ms", "bulk", "latency_ms"])
    (out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    plot(rows, samples, cells, out)
    print("\n".join(write_summary(rows, cells, args, meta, out, command)))
    if any(r["errors"] for r in rows):
        print(f"hol: some runs failed; the clients' last log lines:\n{client_log}", file=sys.stderr)


if __name__ == "__main__":
    main()
