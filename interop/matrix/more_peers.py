"""The peers beyond OpenSSH and Dropbear: PuTTY, TinySSH, libssh, Go's
x/crypto/ssh, AsyncSSH, Paramiko and Node's ssh2.

Everything comes from the registries this machine reaches: Debian's packages
(putty-tools, tinysshd, libssh-dev, gcc, golang-go, golang-golang-x-crypto-dev)
with apt-get, AsyncSSH and Paramiko from PyPI (`pip install --target`
interop/.peers/python), ssh2 from npm (interop/.peers/node). The small client
and server programs that drive the libraries are ours, in interop/peers/;
the C and Go ones are built here into interop/.peers/build (Go in GOPATH
mode against Debian's /usr/share/gocode: no module downloads).

A peer that cannot be installed or built does not stop the matrix: its
cells fail with the reason (UNAVAILABLE), so the report says what is missing.
"""

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from .peers import ENV_NAME, KEYS, MATRIX_USER, PEERS, ROOT, SetupError, run

HELPERS = ROOT / "interop/peers"
BUILD = PEERS / "build"
PYLIB = PEERS / "python"
NODE = PEERS / "node"
PIP_PACKAGES = ["asyncssh==2.24.1", "paramiko==5.1.0"]
NPM_PACKAGES = ["ssh2@1.17.0"]
APT_PACKAGES = {"putty-tools": "/usr/bin/plink", "tinysshd": "/usr/sbin/tinysshd",
                "libssh-dev": "/usr/include/libssh/libssh.h", "gcc": "/usr/bin/gcc", "golang-go": "/usr/bin/go",
                "golang-golang-x-crypto-dev": "/usr/share/gocode/src/golang.org/x/crypto/ssh/client.go"}

# Roles: the added clients and servers, in the order of the report.
CLIENTS = ["putty", "libssh", "go-xcrypto", "asyncssh", "paramiko", "node-ssh2"]
SERVERS = ["tinyssh", "libssh", "go-xcrypto", "asyncssh", "paramiko", "node-ssh2"]
# Our ssh-like helper clients: one executable each (OpenSSH's sftp and scp run it with -S).
HELPER_CLIENTS = {"libssh": BUILD / "libssh-ssh", "go-xcrypto": BUILD / "go-ssh",
                  "asyncssh": BUILD / "asyncssh-ssh", "paramiko": BUILD / "paramiko-ssh",
                  "node-ssh2": BUILD / "node-ssh2-ssh"}

# Peers that could not be set up in this run, with the reason.
UNAVAILABLE = {}

NO_CERTS_HELPER = "the matrix's {} helper server trusts authorized_keys only (no TrustedUserCAKeys, no HostCertificate)"

# Why a client cannot do a case (the peer lacks it, or our helper does not drive it).
CLIENT_NA = {
    "putty": {
        "env": "plink 0.78 has no command-line option to send environment variables",
        "cert-login": "plink 0.78 takes OpenSSH certificates only from saved sessions (no command-line option)",
        "cert-refused": "plink 0.78 takes OpenSSH certificates only from saved sessions (no command-line option)",
        "host-cert": "plink 0.78 trusts host CAs only from its saved configuration (no command-line option)",
    },
    "libssh": {
        "forward-R": "the matrix's libssh client drives exec, pty, env, -L and subsystems only",
        "forward-D": "libssh has no SOCKS (-D) forwarding",
        "agent": "the matrix's libssh client does not forward an agent",
        "cert-login": "the matrix's libssh client loads plain keys only",
        "cert-refused": "the matrix's libssh client loads plain keys only",
        "host-cert": "libssh 0.10 reads no @cert-authority lines in known_hosts",
    },
    "go-xcrypto": {
        "forward-D": "x/crypto/ssh has no SOCKS (-D) forwarding",
        "agent": "the matrix's Go client does not forward an agent",
        "kex": "x/crypto/ssh does not expose the negotiated key exchange",
    },
    "asyncssh": {},
    "paramiko": {
        "forward-D": "Paramiko has no SOCKS (-D) forwarding",
        "host-cert": "Paramiko does not check host certificates (@cert-authority)",
    },
    "node-ssh2": {
        "forward-D": "ssh2 has no SOCKS (-D) forwarding",
        "agent": "the matrix's ssh2 client does not forward an agent",
        "cert-login": "ssh2 1.17 has no OpenSSH user certificates",
        "cert-refused": "ssh2 1.17 has no OpenSSH user certificates",
        "host-cert": "ssh2 1.17 does not check host certificates (@cert-authority)",
    },
}
SERVER_NA = {
    "tinyssh": {
        "env": "tinysshd ignores env requests",
        "forward-L": "tinysshd has no port forwarding",
        "forward-R": "tinysshd has no port forwarding",
        "forward-D": "tinysshd has no port forwarding",
        "agent": "tinysshd has no agent forwarding",
        "cert-login": "tinysshd has no OpenSSH certificates",
        "cert-refused": "tinysshd has no OpenSSH certificates",
        "host-cert": "tinysshd has no OpenSSH certificates",
    },
    "libssh": {
        "pty": "the matrix's libssh server runs commands on pipes only (one session channel, blocking API)",
        "forward-L": "the matrix's libssh server serves one session channel per connection, no forwarding",
        "forward-R": "the matrix's libssh server serves one session channel per connection, no forwarding",
        "forward-D": "the matrix's libssh server serves one session channel per connection, no forwarding",
        "agent": "the matrix's libssh server does not forward an agent",
    },
    "go-xcrypto": {
        "agent": "the matrix's Go server does not forward an agent",
    },
    "asyncssh": {},
    "paramiko": {
        "agent": "the matrix's Paramiko server does not forward an agent",
    },
    "node-ssh2": {
        "pty": "Node has no pty without a native add-on (node-pty), which the ssh2 helper server does not build",
        "agent": "the matrix's ssh2 server does not forward an agent",
    },
}
for _peer in SERVERS:
    if _peer != "tinyssh":
        for _case in ("cert-login", "cert-refused", "host-cert"):
            SERVER_NA[_peer].setdefault(_case, NO_CERTS_HELPER.format(_peer))


# Cases a client cannot do over one transport only.
TRANSPORT_NA = {
    ("putty", "quic-tunnel", "forward-R"):
        "plink reaches the QUIC relay on localhost only through a saved session with ProxyLocalhost=1, and then "
        "sends -R's local connections through that proxy command as well (to the relay, not the echo server)",
}


def not_applicable(client, server, case, transport=None):
    return (CLIENT_NA.get(client, {}).get(case) or SERVER_NA.get(server, {}).get(case)
            or TRANSPORT_NA.get((client, transport, case)))


def ensure_installed():
    """Install and build every added peer; what fails is recorded in UNAVAILABLE, not raised."""
    PEERS.mkdir(parents=True, exist_ok=True)
    BUILD.mkdir(parents=True, exist_ok=True)
    steps = [(("putty", "tinyssh", "libssh", "go-xcrypto"), apt_packages), (("asyncssh", "paramiko"), pip_packages),
             (("node-ssh2",), npm_packages), (("libssh",), build_libssh), (("go-xcrypto",), build_go),
             (("tinyssh",), tinyssh_keydir), (("putty",), putty_keys), (tuple(HELPER_CLIENTS), wrappers)]
    for peers, step in steps:
        if all(p in UNAVAILABLE for p in peers):
            continue
        try:
            step()
        except (SetupError, OSError, subprocess.TimeoutExpired) as e:
            for p in peers:
                UNAVAILABLE.setdefault(p, f"setup failed: {e}")


def apt_packages():
    missing = [pkg for pkg, path in APT_PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    print(f"matrix: installing {' '.join(missing)} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = run(["apt-get", "install", "-y", "-qq", *missing], env=env, timeout=900)
    if r.returncode != 0:  # the package lists may be stale
        run(["apt-get", "update", "-qq"], env=env)
        r = run(["apt-get", "install", "-y", "-qq", *missing], env=env, timeout=900)
    if r.returncode != 0:
        raise SetupError(f"apt-get could not install {' '.join(missing)}: {r.stderr.strip()[-300:]}")


def pip_packages():
    wanted = {spec.split("==")[0]: spec.split("==")[1] for spec in PIP_PACKAGES}
    have = {name: next(PYLIB.glob(f"{name}-{version}.dist-info"), None) for name, version in wanted.items()} \
        if PYLIB.exists() else {}
    if have and all(have.values()):
        return
    print(f"matrix: installing {' '.join(PIP_PACKAGES)} from PyPI into {PYLIB}", flush=True)
    r = run([sys.executable, "-m", "pip", "install", "-q", "--upgrade", "--target", PYLIB, *PIP_PACKAGES],
            timeout=600)
    if r.returncode != 0:
        raise SetupError(f"pip install failed: {r.stderr.strip()[-300:]}")


def npm_packages():
    package = NODE / "node_modules/ssh2/package.json"
    want = NPM_PACKAGES[0].split("@")[1]
    if package.exists() and json.loads(package.read_text()).get("version") == want:
        return
    if run(["sh", "-c", "command -v node && command -v npm"]).returncode != 0:
        raise SetupError("node and npm are missing (apt-get install nodejs npm)")
    NODE.mkdir(parents=True, exist_ok=True)
    if not (NODE / "package.json").exists():
        (NODE / "package.json").write_text('{"name": "sshq-matrix-peers", "private": true}\n')
    print(f"matrix: installing {' '.join(NPM_PACKAGES)} from npm into {NODE}", flush=True)
    r = run(["npm", "install", "--no-audit", "--no-fund", "--prefix", NODE, *NPM_PACKAGES], timeout=600)
    if r.returncode != 0:
        raise SetupError(f"npm install failed: {r.stderr.strip()[-300:]}")


def stale(output, *sources):
    return not output.exists() or any(s.stat().st_mtime > output.stat().st_mtime for s in sources)


def build_libssh():
    for role, out in (("client", "libssh-ssh"), ("server", "libssh-server")):
        src = HELPERS / f"libssh/{role}.c"
        if stale(BUILD / out, src):
            # The server uses libssh's blocking message API, which 0.10 marks deprecated but keeps.
            r = run(["gcc", "-O2", "-Wall", "-Wno-deprecated-declarations", "-o", BUILD / out, src, "-lssh"],
                    timeout=300)
            if r.returncode != 0:
                raise SetupError(f"gcc could not build {src.name}: {r.stderr.strip()[-400:]}")


def go_env():
    return dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
                GOCACHE=str(PEERS / "gocache"), GOPROXY="off")


def build_go():
    for role, out in (("client", "go-ssh"), ("server", "go-server")):
        src = HELPERS / f"go/{role}/main.go"
        if stale(BUILD / out, src):
            r = run(["go", "build", "-o", BUILD / out, src], env=go_env(), timeout=600)
            if r.returncode != 0:
                raise SetupError(f"go build of {role} failed: {r.stderr.strip()[-400:]}")


def wrappers():
    """One executable per helper client (OpenSSH's sftp -S takes a program, not a command line)."""
    # PYTHONWARNINGS: cryptography's deprecation warnings would be the first stderr line of every cell.
    python = f'PYTHONPATH="{PYLIB}:{HELPERS}" PYTHONWARNINGS=ignore exec "{sys.executable}"'
    scripts = {"asyncssh-ssh": f'{python} "{HELPERS / "asyncssh_client.py"}" "$@"',
               "paramiko-ssh": f'{python} "{HELPERS / "paramiko_client.py"}" "$@"',
               "node-ssh2-ssh": f'NODE_PATH="{NODE / "node_modules"}" exec node "{HELPERS / "node/client.js"}" "$@"'}
    for name, line in scripts.items():
        path = BUILD / name
        path.write_text(f"#!/bin/sh\n{line}\n")
        path.chmod(0o755)


def openssh_ed25519_secret(path):
    """(public 32 bytes, secret 64 bytes) of an unencrypted OpenSSH Ed25519 private key file."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("-----")]
    blob = base64.b64decode("".join(lines))
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic):
        raise SetupError(f"{path} is not an OpenSSH private key")
    pos = len(magic)

    def string():
        nonlocal pos
        n = int.from_bytes(blob[pos:pos + 4], "big")
        pos += 4
        value = blob[pos:pos + n]
        pos += n
        return value
    cipher, _kdf, _kdfopts = string(), string(), string()
    if cipher != b"none":
        raise SetupError(f"{path} is encrypted")
    pos += 4  # number of keys (1)
    string()  # public key blob
    private = string()
    pos, blob = 8, private  # two check integers
    if string() != b"ssh-ed25519":
        raise SetupError(f"{path} is not an Ed25519 key")
    public, secret = string(), string()
    return public, secret


def tinyssh_keydir():
    """tinysshd's key directory holding the matrix host key, so every server presents the same key."""
    keydir = PEERS / "tinyssh-keys"
    keydir.mkdir(parents=True, exist_ok=True)
    public, secret = openssh_ed25519_secret(KEYS / "host")
    (keydir / "ed25519.pk").write_bytes(public)
    sk = keydir / ".ed25519.sk"
    sk.write_bytes(secret)
    sk.chmod(0o600)


def putty_keys():
    """PuTTY reads its own key format: .ppk copies of the matrix user keys, made by puttygen."""
    for name in ("user", "stranger"):
        ppk = KEYS / f"{name}.ppk"
        if not ppk.exists():
            r = run(["puttygen", KEYS / name, "-O", "private", "-o", ppk])
            if r.returncode != 0:
                raise SetupError(f"puttygen could not convert the {name} key: {r.stderr.strip()}")


def fingerprint(public_line):
    """OpenSSH's SHA256 fingerprint of a public key line ("type base64 ...")."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def server_argv(peer, port):
    """The command line of a peer's server on 127.0.0.1:port, with the matrix host key and user."""
    common = ["--port", str(port), "--host-key", str(KEYS / "host"), "--user", MATRIX_USER,
              "--accept-env", ENV_NAME]
    python = ["/usr/bin/env", f"PYTHONPATH={PYLIB}:{HELPERS}", "PYTHONWARNINGS=ignore", sys.executable]
    if peer == "tinyssh":
        return [*python, HELPERS / "inetd.py", "--port", str(port), "--", "/usr/sbin/tinysshd", "-v",
                "-x", "sftp=/usr/lib/openssh/sftp-server", PEERS / "tinyssh-keys"]
    if peer == "libssh":
        return [BUILD / "libssh-server", *common]
    if peer == "go-xcrypto":
        return [BUILD / "go-server", *common]
    if peer == "asyncssh":
        return [*python, HELPERS / "asyncssh_server.py", *common]
    if peer == "paramiko":
        return [*python, HELPERS / "paramiko_server.py", *common]
    if peer == "node-ssh2":
        return ["/usr/bin/env", f"NODE_PATH={NODE / 'node_modules'}", "node", HELPERS / "node/server.js", *common]
    raise ValueError(peer)


def versions():
    def out(argv, **kw):
        try:
            r = run(argv, timeout=20, **kw)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "unavailable"

    def deb(pkg):
        return out(["dpkg-query", "-W", "-f", "${Package} ${Version}", pkg])
    python = {"env": dict(os.environ, PYTHONPATH=str(PYLIB))}
    ssh2 = NODE / "node_modules/ssh2/package.json"
    return {
        "putty": out(["plink", "-V"]),
        "tinyssh": deb("tinysshd"),
        "libssh": deb("libssh-dev"),
        "go-xcrypto": f"{deb('golang-golang-x-crypto-dev')} (golang.org/x/crypto/ssh), {out(['go', 'version'])}",
        "asyncssh": "asyncssh " + out([sys.executable, "-c", "import asyncssh; print(asyncssh.__version__)"], **python),
        "paramiko": "paramiko " + out([sys.executable, "-c", "import paramiko; print(paramiko.__version__)"], **python),
        "node-ssh2": f"ssh2 {json.loads(ssh2.read_text())['version'] if ssh2.exists() else 'unavailable'}, "
                     f"node {out(['node', '--version'])}",
    }
