"""The scaffolding every lossy-link experiment (hol, setup, bulk, roam)
shares: its common arguments, the checks before it starts, the link and the
servers it runs on, its log and its metadata.

    args = experiment.parse(ap)            # after the experiment's own arguments
    with experiment.Run("hol", args) as run:
        run.link.set_path(50, 1)
        ... run.servers.client_argv(t) ... run.log("...")
    meta = run.metadata(reps=args.reps)
"""

import sys
import tempfile
import time
from pathlib import Path

from . import gitinfo, results
from .link import Link, add_link_arguments
from .servers import DEFAULT_TRANSPORTS, TRANSPORTS, Servers, require_root_and_tools


def add_common_arguments(parser, seed=False, transports=DEFAULT_TRANSPORTS):
    """--transports (default `transports`), the link's arguments
    (--rate-mbit, --queue-packets, --tcp-cc, --quic-cc), --out and, with
    `seed`, --seed."""
    parser.add_argument("--transports", default=",".join(transports),
                        help=f"comma-separated, from {', '.join(TRANSPORTS)} (default: {','.join(transports)})")
    add_link_arguments(parser)
    if seed:
        parser.add_argument("--seed", type=int, default=1, help="the link emulator's random seed")
    parser.add_argument("--out", default=None, help="results directory (default interop/results/NAME)")


def parse_transports(text, name):
    """The transports of a --transports value, checked."""
    chosen = [t for t in text.split(",") if t]
    for t in chosen:
        if t not in TRANSPORTS:
            raise SystemExit(f"{name}: unknown transport {t!r}; choose from {', '.join(TRANSPORTS)}")
    return chosen


def parse_size(text):
    """A byte count with an optional K, M or G suffix (powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if not text:
        raise ValueError("empty size")
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


class Run:
    """One experiment run: checks root and the tools, makes the results
    directory and a work directory, starts the link (namespace NAME prefixed
    with "sshq") with the TCP congestion controller set and the servers on
    it; stops them all on exit."""

    def __init__(self, name, args, seed=1):
        self.name, self.args, self.seed = name, args, seed
        self.command = " ".join(["interop/run", name, *sys.argv[1:]])
        self.out = results.results_dir(name, args.out)
        self.started = time.time()
        self.link = self.servers = self.workdir = None
        self._tmp = None

    def log(self, message):
        """A progress line with the seconds since the start."""
        print(f"[{time.time() - self.started:6.0f} s] {message}", flush=True)

    def __enter__(self):
        require_root_and_tools()
        self._tmp = tempfile.TemporaryDirectory(prefix=f"sshq-{self.name}.")
        self.workdir = Path(self._tmp.name)
        try:
            self.link = Link(f"sshq{self.name}", self.workdir, self.args.rate_mbit, self.args.queue_packets,
                             seed=self.seed).__enter__()
            self.link.set_tcp_congestion(self.args.tcp_cc)
            self.servers = Servers(self.link, self.workdir, self.args.quic_cc).__enter__()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.servers is not None:
            self.servers.__exit__(*exc)
        if self.link is not None:
            self.link.__exit__(*exc)
        if self._tmp is not None:
            self._tmp.cleanup()

    def client_log_tail(self, chars=3000):
        """The end of the clients' log, while the work directory exists."""
        path = self.workdir / "clients.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def metadata(self, **extra):
        """The machine, the commit, the command and how long it took, with `extra`."""
        meta = gitinfo.run_metadata()
        meta.update({"command": self.command, "seconds": round(time.time() - self.started), **extra})
        return meta
