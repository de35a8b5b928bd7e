"""Where results go and how they are written."""

import csv
from pathlib import Path

from .paths import ROOT


def results_dir(name, override=None):
    out = Path(override) if override else ROOT / "interop/results" / name
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_csv(path, rows, fields):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow(row)


def pyplot():
    """matplotlib's pyplot without a display (interop/run installs Debian's
    python3-matplotlib and runs the experiments with /usr/bin/python3)."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("lab: matplotlib is missing: apt-get install python3-matplotlib, "
                         "and run the experiments through interop/run (it uses /usr/bin/python3)")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
