"""The commit a result was measured at, and the facts of the machine."""

import os
import subprocess
import time

from .paths import ROOT


def git_commit():
    """The short commit hash, marked when tracked files other than results
    (which the experiments themselves rewrite) have uncommitted changes."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no",
                            "--", ".", ":(exclude)interop/results"],
                           capture_output=True, text=True).stdout.strip()
    return head + (" with uncommitted changes" if dirty else "")


def run_metadata():
    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": git_commit(), "openssh": ssh_v,
            "kernel": os.uname().release, "cpus": os.cpu_count()}
