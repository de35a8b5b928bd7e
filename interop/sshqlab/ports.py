"""Free loopback ports, and waiting for a listener."""

import socket
import time


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1 (sshqd uses one number
    for both). Another process may still take it before it is used."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1 after 1000 tries")


def wait_tcp(port, timeout=10):
    """Returns once something accepts TCP connections on 127.0.0.1:`port`;
    raises TimeoutError after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1 port {port} after {timeout} s")
