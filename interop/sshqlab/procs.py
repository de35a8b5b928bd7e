"""Processes: in a network namespace, and stopped politely."""

import subprocess


def in_ns(ns, argv):
    """`argv` run inside network namespace `ns`."""
    return ["ip", "netns", "exec", ns, *argv]


def stop(proc, grace=3.0):
    """SIGTERM, then SIGKILL after `grace` seconds; waits for the exit."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
