"""The pty wrapper and the screen-reading probe client that the roaming lab
uses for Mosh, run against a local bash (no Mosh needed)."""

import subprocess
import sys
import time

from sshqlab.paths import INTEROP
from sshqlab.probes import EchoClient, ScreenCounterClient


def test_ptyrun_gives_a_terminal_of_the_asked_size_and_passes_the_exit_status():
    out = subprocess.run(
        [sys.executable, "-m", "sshqlab.ptyrun", "--cols", "90", "--rows", "30", "--",
         "sh", "-c", "test -t 0 && stty size; exit 3"],
        cwd=INTEROP, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    assert out.stdout.replace(b"\r", b"").strip() == b"30 90"
    assert out.returncode == 3


def test_ptyrun_relays_input_to_the_command():
    out = subprocess.run(
        [sys.executable, "-m", "sshqlab.ptyrun", "--", "sh", "-c", "stty -echo; read line; echo got:$line"],
        cwd=INTEROP, input=b"hello\n", capture_output=True, timeout=20)
    assert b"got:hello" in out.stdout
    assert out.returncode == 0


def test_the_screen_counter_turns_each_new_count_into_the_keystrokes_it_covers(tmp_path):
    # No client command: the counting program runs in a local bash.
    client = ScreenCounterClient([], str(tmp_path / "stderr"))
    try:
        assert client.warm_up(15), (tmp_path / "stderr").read_text()
        for byte in EchoClient.ALPHABET[:8]:
            client.send(byte)
            time.sleep(0.01)
        assert client.wait_arrivals(8, time.perf_counter() + 15)
        time.sleep(0.3)
        with client.lock:
            shown = bytes(b for _, b in client.arrivals if b is not None)
        # Every keystroke once, in order, as the probe sent them.
        assert shown == EchoClient.ALPHABET[:8]
        # Freezing the client stops the wrapper and what runs under it.
        assert len(client.freeze_targets()) == 2
    finally:
        client.close()
