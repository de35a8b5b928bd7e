"""The lab's small helpers: free ports, waiting for a listener, keys,
sizes and transport names."""

import socket
import subprocess
import threading

import pytest

from sshqlab.experiment import parse_size, parse_transports
from sshqlab.gitinfo import git_commit
from sshqlab.keys import keygen
from sshqlab.ports import free_port, wait_tcp
from sshqlab.servers import TRANSPORTS


def test_free_port_is_free_for_tcp_and_udp():
    port = free_port()
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", port))
        udp.bind(("127.0.0.1", port))


def test_wait_tcp_returns_once_something_listens():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        accepting = threading.Thread(target=lambda: listener.accept()[0].close(), daemon=True)
        accepting.start()
        wait_tcp(port, timeout=5)
        accepting.join(timeout=5)


def test_wait_tcp_times_out_when_nothing_listens():
    port = free_port()
    with pytest.raises(TimeoutError, match=str(port)):
        wait_tcp(port, timeout=0.3)


def test_keygen_makes_an_ed25519_key_pair_with_its_comment(tmp_path):
    keygen(tmp_path / "k", "lab-test")
    public = (tmp_path / "k.pub").read_text().split()
    assert public[0] == "ssh-ed25519"
    assert public[2] == "lab-test"
    check = subprocess.run(["ssh-keygen", "-y", "-f", str(tmp_path / "k")], capture_output=True, text=True)
    assert check.returncode == 0
    assert check.stdout.split()[:2] == public[:2]


def test_keygen_failure_says_why(tmp_path):
    with pytest.raises(RuntimeError, match="ssh-keygen failed"):
        keygen(tmp_path / "no-such-dir" / "k")


@pytest.mark.parametrize("text,size", [("0", 0), ("512", 512), ("4K", 4096), ("3M", 3 << 20), ("1G", 1 << 30)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "K", "1T", "x"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_transports_keeps_order_and_refuses_unknown_names():
    assert parse_transports("sshq-quic,openssh,", "t") == ["sshq-quic", "openssh"]
    assert parse_transports(",".join(TRANSPORTS), "t") == list(TRANSPORTS)
    with pytest.raises(SystemExit, match="unknown transport 'telnet'"):
        parse_transports("sshq-tcp,telnet", "t")


def test_git_commit_names_a_commit():
    commit = git_commit()
    assert commit != "unknown"
    assert all(c in "0123456789abcdef" for c in commit.split()[0])
