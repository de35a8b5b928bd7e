"""Keys made by the real ssh-keygen, and the benchmarks' login user."""

import os
import subprocess

BENCH_USER = "sshqbench"


def bench_user():
    """A user with /bin/sh and no rc files, created when missing (as root)."""
    if os.geteuid() != 0:
        return subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    if subprocess.run(["id", BENCH_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", BENCH_USER], check=True)
    subprocess.run(["usermod", "-p", "*", BENCH_USER], check=True)  # key login only
    return BENCH_USER


def keygen(path, comment=None):
    """A fresh Ed25519 key without passphrase at `path` (and `path`.pub);
    raises RuntimeError with ssh-keygen's message when it fails."""
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
    if comment is not None:
        argv += ["-C", comment]
    r = subprocess.run([*argv, "-f", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ssh-keygen failed for {path}: {r.stderr.strip()}")
