"""The cases of the interop matrix: what one cell runs and how it is checked.

Each case function takes a Cell and returns (passed, detail). A case only
passes when it ran and its output was checked; "refused" cases (changed host
key, wrong user key, expired certificate) pass when the client refused with
the expected message and the remote command did not run.

The certificate cases use certificates made in the run (peers.make_certificates):
cert-login logs in with a user certificate the server trusts through
TrustedUserCAKeys (its key alone is authorized nowhere), cert-refused offers
the same key with an expired certificate, and host-cert trusts the server
only through a known_hosts `@cert-authority` line, with
StrictHostKeyChecking=yes, against servers that present a HostCertificate.
"""

import fcntl
import hashlib
import os
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import time
import uuid

from sshqlab.ports import free_port

from . import more_peers
from .clients import HELPER_CLIENTS, Invocation, write_cert_authority, write_known_hosts
from .peers import ENV_NAME, HOST_CERT_SUFFIX, KEYS

CASES = ["exec", "blob-16MiB", "stderr", "pty", "env", "forward-L", "forward-R", "forward-D",
         "agent", "sftp", "scp", "hostkey-changed", "userkey-wrong", "cert-login", "cert-refused", "host-cert",
         "kex"]
# Cases whose pass is a refusal.
REFUSAL_CASES = {"hostkey-changed", "userkey-wrong", "cert-refused"}
# Cases about OpenSSH certificates, and those of them run against servers
# presenting a host certificate (the "-hostcert" twins of peers.start_servers).
CERT_CASES = {"cert-login", "cert-refused", "host-cert"}
HOST_CERT_CASES = {"host-cert"}
CLIENT_TIMEOUT = 60  # seconds any one client command may take


def case_not_applicable(client, server, case, transport=None):
    """Why a case cannot apply to this client and server (a peer lacks the feature), or None."""
    why = more_peers.not_applicable(client, server, case, transport)
    if why:
        return why
    if client == "dropbear":
        if case == "forward-D":
            return "dbclient has no -D (dynamic SOCKS forwarding)"
        if case == "env":
            return "dbclient has no SendEnv/SetEnv: it sends no env requests"
        if case == "kex":
            return "dbclient 2022.83 has no -v: it does not report the negotiated key exchange"
    if server == "dropbear" and case == "env":
        return "Dropbear's server ignores env requests (it has no AcceptEnv)"
    if case in CERT_CASES:
        if client == "dropbear":
            return "dbclient 2022.83 has no OpenSSH certificates: it offers none and reads no @cert-authority"
        if server == "dropbear":
            return "Dropbear's server 2022.83 has no OpenSSH certificates (no TrustedUserCAKeys, no HostCertificate)"
    return None


def server_instance(server, case):
    """The name, in peers.start_servers, of the server process `server` that a case's cells connect to."""
    return server + HOST_CERT_SUFFIX if case in HOST_CERT_CASES else server


class Cell:
    """One client x server x transport x case, with its own directory and log."""

    def __init__(self, client, server, transport, case, port, rundir, ctx):
        self.client, self.server, self.transport, self.case = client, server, transport, case
        self.port, self.ctx = port, ctx
        self.name = f"{client}-{server}-{transport}-{case}"
        self.dir = rundir / "cells" / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = []
        self.first_error = None  # the first telling stderr line of a failed command, for the report

    def note(self, text):
        self.log.append(text)

    def invocation(self, **kw):
        inv = Invocation(self, **kw)
        if self.client == "dropbear" or self.client == "putty" or self.client in HELPER_CLIENTS:
            # dbclient has no accept-new: without -y it asks on a terminal about
            # an unknown host, and with -y it accepts without saving the key.
            # So its known_hosts trusts the servers' real key up front; so do PuTTY (whose
            # -hostkey pins the key found there) and our helpers (which check strictly).
            write_known_hosts(self, KEYS / "host.pub")
        return inv

    def run(self, inv, argv, stdin=None, timeout=CLIENT_TIMEOUT, stdout_path=None):
        """Run argv to completion (bounded by timeout) and log it; returns (rc, stdout, stderr)."""
        self.note("$ " + " ".join(argv))
        out = open(stdout_path, "wb") if stdout_path else subprocess.PIPE
        proc = subprocess.Popen(argv, stdin=stdin if stdin is not None else subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.PIPE, env=inv.env, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
            rc, stdout = proc.returncode, stdout or b""
        except subprocess.TimeoutExpired:
            end_group(proc)
            stdout, stderr = proc.communicate()
            rc, stdout = None, stdout or b""
            stderr = (stderr or b"") + f"\n[timed out after {timeout}s]".encode()
        finally:
            # Whatever the client left behind in its process group (a ProxyCommand that
            # its client did not stop, a helper of scp's) ends with the cell.
            end_group(proc)
            if stdout_path:
                out.close()
        stdout, stderr = stdout.decode(errors="replace"), stderr.decode(errors="replace")
        self.note(f"exit: {rc}\nstdout: {stdout[:2000]}\nstderr: {stderr[-4000:]}")
        if rc != 0 and self.first_error is None:
            noise = ("debug", "Warning: Permanently added", "OpenSSH_", "Authenticated to", "DEBUG", "Transferred")
            lines = [line.strip() for line in stderr.splitlines()]
            self.first_error = next((line for line in lines if line and not line.startswith(noise)), None)
        return rc, stdout, stderr


def end_group(proc):
    """Kill the process group that `proc` leads (it was started in a session of its own)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def case_exec(cell):
    token = uuid.uuid4().hex[:8]
    inv = cell.invocation()
    rc, out, err = cell.run(inv, inv.ssh(f"echo out-{token}; exit 42"))
    ok = rc == 42 and out == f"out-{token}\n"
    return ok, "exit 42 and stdout as sent" if ok else f"exit {rc}, stdout {out[:80]!r}"


def case_blob(cell):
    inv = cell.invocation()
    got = cell.dir / "blob.out"
    with open(cell.ctx["blob"], "rb") as src:
        rc, _, _ = cell.run(inv, inv.ssh("cat"), stdin=src, timeout=120, stdout_path=got)
    digest = sha256(got)
    got.unlink(missing_ok=True)
    ok = rc == 0 and digest == cell.ctx["blob_sha256"]
    return ok, "16 MiB echoed back, SHA-256 equal" if ok else f"exit {rc}, SHA-256 {digest[:16]} differs"


def case_stderr(cell):
    inv = cell.invocation()
    rc, out, err = cell.run(inv, inv.ssh("echo to-stdout; echo to-stderr >&2; exit 3"))
    ok = rc == 3 and out == "to-stdout\n" and "to-stderr" in err
    return ok, "stdout and stderr kept apart, exit 3" if ok else f"exit {rc}, stdout {out[:60]!r}"


def case_env(cell):
    value = f"v-{uuid.uuid4().hex[:8]}"
    inv = cell.invocation()
    rc, out, _ = cell.run(inv, inv.ssh(f'echo "[${ENV_NAME}]"', ["-o", f"SetEnv={ENV_NAME}={value}"]))
    ok = rc == 0 and out.strip() == f"[{value}]"
    return ok, f"{ENV_NAME} arrived (SetEnv/AcceptEnv)" if ok else f"exit {rc}, remote saw {out.strip()[:60]!r}"


def case_pty(cell):
    """A pty with the local window size, then a window change (SIGWINCH) seen remotely."""
    inv = cell.invocation()
    argv = inv.ssh("tty; stty size; read line; stty size", ["-t"])
    cell.note("$ " + " ".join(argv) + "   (in a 33x101 pty, resized to 41x123)")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    # setsid -c: a new session whose controlling terminal is the pty (our
    # stdin), as an interactive ssh has; the client is not a process group
    # leader here, so setsid execs it in place (no fork) and kill reaches it.
    proc = subprocess.Popen(["setsid", "-c", *argv], stdin=slave, stdout=slave, stderr=slave, env=inv.env)
    os.close(slave)
    seen = b""
    try:
        seen = read_until(master, rb"33 101", seen, 20)
        if b"33 101" in seen:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 41, 123, 0, 0))
            time.sleep(0.5)  # the client hears SIGWINCH and sends window-change before the line below
            os.write(master, b"go\r")
            seen = read_until(master, rb"41 123", seen, 20)
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    finally:
        end_group(proc)
        proc.wait()
        os.close(master)
    text = seen.decode(errors="replace")
    cell.note(f"exit: {proc.returncode}\nterminal: {text[-3000:]}")
    ok = "/dev/pts/" in text and "33 101" in text and "41 123" in text
    return ok, "remote tty, 33x101 then 41x123 after SIGWINCH" if ok else "size or tty missing remotely"


def read_until(fd, pattern, seen, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline and not re.search(pattern, seen):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the client closed the pty
                break
            if not chunk:
                break
            seen += chunk
    return seen


def echo_through(port, socks_target=None, seconds=20, client=None):
    """Connect to a forwarded port (retrying until it listens, while `client` runs) and check an echo
    through it."""
    token = uuid.uuid4().hex.encode()
    deadline = time.time() + seconds
    last = "never listened"
    while time.time() < deadline:
        if client is not None and client.poll() is not None:
            return False, f"the client exited ({client.returncode}) before the forwarded port answered: {last}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.settimeout(10)
                if socks_target is not None:
                    socks5_connect(s, socks_target)
                s.sendall(token)
                got = b""
                while len(got) < len(token):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
                if got == token:
                    return True, "echo through the forwarded port"
                last = f"echo came back as {got[:40]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.3)
    return False, f"no echo through port {port}: {last}"


def socks5_connect(s, target_port):
    """SOCKS5 CONNECT (no authentication) to 127.0.0.1:target_port through the proxy on socket s."""
    s.sendall(b"\x05\x01\x00")
    if s.recv(2) != b"\x05\x00":
        raise OSError("SOCKS5 greeting refused")
    s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", target_port))
    reply = s.recv(10)
    if len(reply) < 2 or reply[1] != 0:
        raise OSError(f"SOCKS5 CONNECT refused: {reply!r}")


def forward(cell, kind):
    """-L, -R or -D with -N; the harness's echo server answers through the forwarded port."""
    inv = cell.invocation()
    port, echo = free_port(), cell.ctx["echo_port"]
    flag = {"L": ["-L", f"127.0.0.1:{port}:127.0.0.1:{echo}"], "R": ["-R", f"127.0.0.1:{port}:127.0.0.1:{echo}"],
            "D": ["-D", f"127.0.0.1:{port}"]}[kind]
    argv = inv.ssh(None, ["-N", *flag])
    cell.note("$ " + " ".join(argv))
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=inv.env, start_new_session=True)
    try:
        ok, detail = echo_through(port, socks_target=echo if kind == "D" else None, client=proc)
    finally:
        end_group(proc)
        out, err = proc.communicate(timeout=10)
        err = err.decode(errors="replace")
        cell.note(f"exit: {proc.returncode}\nstderr: {err[-3000:]}")
        if not ok:
            cell.first_error = next((line for line in err.splitlines() if line.strip()), None)
    return ok, detail


def case_agent(cell):
    inv = cell.invocation()
    inv.env["SSH_AUTH_SOCK"] = cell.ctx["agent_sock"]
    rc, out, _ = cell.run(inv, inv.ssh("ssh-add -l", ["-A"]))
    ok = rc == 0 and cell.ctx["user_fingerprint"] in out
    return ok, "remote ssh-add -l lists the forwarded key" if ok else f"exit {rc}, remote saw {out.strip()[:80]!r}"


def case_sftp(cell):
    inv = cell.invocation()
    remote = f"matrix-sftp-{uuid.uuid4().hex[:8]}"
    back = cell.dir / "sftp.back"
    batch = cell.dir / "batch"
    batch.write_text(f"put {cell.ctx['small']} {remote}\nget {remote} {back}\nrm {remote}\n")
    rc, _, _ = cell.run(inv, inv.file_tool("sftp", ["-b", str(batch), "sshqmatrix@127.0.0.1"]))
    ok = rc == 0 and back.exists() and sha256(back) == cell.ctx["small_sha256"]
    return ok, "put, get and rm of 1 MiB, SHA-256 equal" if ok else f"exit {rc}, file did not come back intact"


def case_scp(cell):
    inv = cell.invocation()
    remote = f"matrix-scp-{uuid.uuid4().hex[:8]}"
    back = cell.dir / "scp.back"
    rc, _, _ = cell.run(inv, inv.file_tool("scp", [cell.ctx["small"], f"sshqmatrix@127.0.0.1:{remote}"]))
    if rc == 0:
        rc, _, _ = cell.run(inv, inv.file_tool("scp", [f"sshqmatrix@127.0.0.1:{remote}", str(back)]))
    cell.ctx["leftovers"].append(remote)
    ok = rc == 0 and back.exists() and sha256(back) == cell.ctx["small_sha256"]
    return ok, "1 MiB there and back, SHA-256 equal" if ok else f"exit {rc}, file did not come back intact"


# What each client says when it refuses (its own words; the helpers print their library's error).
REFUSED_HOSTKEY = {"dropbear": "host key mismatch", "putty": "Host key not in manually configured list",
                   "asyncssh": "Host key is not trusted", "paramiko": "BadHostKeyException",
                   "go-xcrypto": "knownhosts: key mismatch", "node-ssh2": "host key mismatch",
                   "libssh": "host key for server changed", None: "REMOTE HOST IDENTIFICATION HAS CHANGED"}
REFUSED_USERKEY = {"dropbear": "No auth methods could be used",
                   "putty": "No supported authentication methods available",
                   "asyncssh": "PermissionDenied", "paramiko": "AuthenticationException",
                   "go-xcrypto": "unable to authenticate", "node-ssh2": "All configured authentication methods failed",
                   "libssh": "authentication refused", None: "Permission denied"}


def refused(cell, inv, messages, want_rc=None):
    """A refusal: the client exits non-zero (exactly want_rc when given) with the expected message,
    and the remote command did not run."""
    marker = f"matrix-marker-{uuid.uuid4().hex[:8]}"
    rc, out, err = cell.run(inv, inv.ssh(f"touch {marker}; echo ran"))
    message = messages.get(cell.client, messages[None])
    ran = "ran" in out or (cell.ctx["user_home"] / marker).exists()
    rc_ok = rc == want_rc if want_rc is not None else rc not in (0, None)
    ok = rc_ok and message in err and not ran
    if ok:
        return True, f"refused (exit {rc}): {message}"
    seen = "seen" if message in err else "missing"
    return False, f"exit {rc}; command ran: {ran}; expected message '{message}' {seen}"


def case_hostkey_changed(cell):
    inv = cell.invocation()
    write_known_hosts(cell, KEYS / "other_host.pub")  # the key we "remember" is not the server's
    return refused(cell, inv, REFUSED_HOSTKEY)


def case_userkey_wrong(cell):
    return refused(cell, cell.invocation(key="stranger"), REFUSED_USERKEY)


def case_cert_login(cell):
    """Login with `-i valid/id` (valid/id-cert.pub beside it): only the certificate can let it in."""
    token = uuid.uuid4().hex[:8]
    inv = cell.invocation(key=cell.ctx["certs"] / "valid/id")
    rc, out, _ = cell.run(inv, inv.ssh(f"echo cert-{token}"))
    ok = rc == 0 and out == f"cert-{token}\n"
    return ok, "logged in with the user certificate (TrustedUserCAKeys)" if ok else f"exit {rc}, stdout {out[:80]!r}"


def case_cert_refused(cell):
    """The same key with a certificate that expired in 2020: refused, exit 255, nothing run."""
    return refused(cell, cell.invocation(key=cell.ctx["certs"] / "expired/id"), REFUSED_USERKEY, want_rc=255)


def case_host_cert(cell):
    """known_hosts holds only `@cert-authority * <host CA>` and StrictHostKeyChecking=yes: login works only
    when the client checks the server's host certificate (there is no plain key to fall back to)."""
    token = uuid.uuid4().hex[:8]
    inv = cell.invocation(host_check="yes")
    write_cert_authority(cell, cell.ctx["certs"] / "host_ca.pub")
    rc, out, _ = cell.run(inv, inv.ssh(f"echo host-cert-{token}"))
    ok = rc == 0 and out == f"host-cert-{token}\n"
    return ok, "host certificate trusted through @cert-authority" if ok else f"exit {rc}, stdout {out[:80]!r}"


# Who speaks which post-quantum SSH key exchange (sshq and sshqd through
# the patched russh, third_party/russh/PATCHES.md). Every one of these puts
# ML-KEM first when it has it, so a pair where both have ML-KEM uses it and
# any other pair of them uses sntrup761.
MLKEM_PEERS = {"sshq", "sshqd", "openssh-10.0"}
SNTRUP_PEERS = MLKEM_PEERS | {"openssh-9.2"}


def expected_kex(cell):
    """The key exchange a pair must negotiate, where both ends' preferences are known."""
    if cell.transport == "quic":
        return "x25519-sntrup761"  # sshq's default hybrid TLS group
    if {cell.client, cell.server} <= MLKEM_PEERS:
        return "mlkem768x25519-sha256"
    if {cell.client, cell.server} <= SNTRUP_PEERS:
        return "sntrup761x25519-sha512"
    return None


def case_kex(cell):
    inv = cell.invocation(verbose=True)
    rc, _, err = cell.run(inv, inv.ssh("true"))
    # OpenSSH -v: "kex: algorithm: X"; sshq -v (and sshq proxy -v, for the
    # QUIC hop of the tunnel): "Connected to ... over tcp|quic; key exchange X".
    # Through the tunnel sshq's own line says "over tcp" (SSH inside the
    # tunnel); the proxy's says "over quic" (the QUIC hop).
    end_to_end = r"over tcp; key exchange ([^\s;]+)" if cell.transport == "quic-tunnel" else r"; key exchange ([^\s;]+)"
    found = re.search(r"kex: algorithm: ([^\s;]+)", err) or re.search(end_to_end, err) or putty_kex(err)
    if rc != 0 or not found:
        return False, f"exit {rc}; no negotiated key exchange in -v output"
    kex = found.group(1).removesuffix("@openssh.com")
    detail = kex
    hop = re.search(r"over quic; key exchange ([^\s;]+)", err) if cell.transport == "quic-tunnel" else None
    if hop:
        detail += f" (QUIC hop: {hop.group(1)})"
    want = expected_kex(cell)
    if want and kex != want:
        return False, f"negotiated {kex}, expected {want}"
    return True, detail


# plink -v names the key exchange in words; the SSH names of those it offers.
PUTTY_KEX = {"NTRU Prime / Curve25519 hybrid key exchange, using hash SHA-512": "sntrup761x25519-sha512",
             "ECDH key exchange with curve Curve25519, using hash SHA-256": "curve25519-sha256"}


def putty_kex(err):
    """A match-like object for plink's "Doing <words>" line (its SSH name when known, else the words)."""
    found = re.search(r"^Doing (.+?)(?: \(unaccelerated\))?\r?$", err, re.M)
    if not found:
        return None
    name = PUTTY_KEX.get(found.group(1), found.group(1).replace(" ", "_"))
    return re.match(r"(.*)", name)


def sha256(path):
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return "missing"
    return h.hexdigest()


RUNNERS = {
    "exec": case_exec, "blob-16MiB": case_blob, "stderr": case_stderr, "pty": case_pty, "env": case_env,
    "forward-L": lambda c: forward(c, "L"), "forward-R": lambda c: forward(c, "R"),
    "forward-D": lambda c: forward(c, "D"), "agent": case_agent, "sftp": case_sftp, "scp": case_scp,
    "hostkey-changed": case_hostkey_changed, "userkey-wrong": case_userkey_wrong,
    "cert-login": case_cert_login, "cert-refused": case_cert_refused, "host-cert": case_host_cert,
    "kex": case_kex,
}
