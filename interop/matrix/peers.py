"""The peers of the interop matrix: installing them, and running their servers.

Peers are real programs: OpenSSH 9.2 and Dropbear from Debian, OpenSSH 10.0
from bookworm-backports (unpacked with `dpkg -x` into interop/.peers/, never
installed over the system's), and our own sshq/sshqd. Every server gets its
own configuration, port and log in the run directory and is started once per
matrix run; cells only connect to it.
"""

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from sshqlab import keys
from sshqlab.paths import ROOT, SSHQ, SSHQD
from sshqlab.ports import free_port

PEERS = ROOT / "interop/.peers"
OPENSSH10 = PEERS / "openssh-10.0"
KEYS = PEERS / "keys"

# The account every cell logs in as: /bin/sh with no rc files, so that
# sessions start fast and behave the same on every server, and its
# ~/.ssh/authorized_keys is where Dropbear (which has no option for another
# file) looks.
MATRIX_USER = "sshqmatrix"

BACKPORTS_SOURCE = """Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
OPENSSH10_PACKAGES = ["openssh-client", "openssh-server", "openssh-sftp-server"]

# The environment variable the env case sends; every server accepts it.
ENV_NAME = "SSHQ_MATRIX_VALUE"


class SetupError(Exception):
    """A peer could not be set up; the message says what to do about it."""


def run(argv, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run([str(a) for a in argv], **kw)


def require_root():
    if os.geteuid() != 0:
        raise SetupError(
            "interop/run matrix needs root: it installs Dropbear and OpenSSH 10.0, creates the "
            f"login user '{MATRIX_USER}' and starts sshd (which needs root to log users in); "
            "run it as root (e.g. with sudo)")


def ensure_debian_packages():
    """Dropbear (server and dbclient) and OpenSSH 9.2 from Debian, installed with apt-get when missing."""
    wanted = {"dropbear-bin": "/usr/sbin/dropbear", "openssh-client": "/usr/bin/ssh",
              "openssh-server": "/usr/sbin/sshd", "openssh-sftp-server": "/usr/lib/openssh/sftp-server"}
    missing = [pkg for pkg, path in wanted.items() if not Path(path).exists()]
    if not missing:
        return
    print(f"matrix: installing {' '.join(missing)} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = run(["apt-get", "update", "-qq"], env=env)
    if r.returncode == 0:
        r = run(["apt-get", "install", "-y", "-qq", *missing], env=env)
    if r.returncode != 0:
        raise SetupError(f"apt-get could not install {' '.join(missing)}: {r.stderr.strip()[-500:]}")


def ensure_openssh10():
    """OpenSSH 10.0 unpacked into interop/.peers/openssh-10.0, downloaded once.

    apt runs with a private source list and state directory holding only
    bookworm-backports, so the system's apt configuration is left as it was
    and nothing is installed: the .debs are only downloaded and unpacked.
    """
    ssh10 = OPENSSH10 / "usr/bin/ssh"
    if not (ssh10.exists() and "OpenSSH_10.0" in run([ssh10, "-V"]).stderr):
        apt = PEERS / "apt"
        shutil.rmtree(apt, ignore_errors=True)
        for d in ("sources", "lists/partial", "cache/archives/partial", "debs"):
            (apt / d).mkdir(parents=True, exist_ok=True)
        (apt / "sources/bookworm-backports.sources").write_text(BACKPORTS_SOURCE)
        opts = ["-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={apt}/sources",
                "-o", f"Dir::State::Lists={apt}/lists", "-o", f"Dir::Cache={apt}/cache",
                "-o", "Debug::NoLocking=1", "-o", "APT::Sandbox::User=root"]
        print("matrix: downloading OpenSSH 10.0 from bookworm-backports", flush=True)
        r = run(["apt-get", *opts, "update", "-qq"])
        if r.returncode != 0:
            raise SetupError(f"apt-get update for bookworm-backports failed: {r.stderr.strip()[-500:]}")
        r = run(["apt-get", *opts, "download", *(f"{p}/bookworm-backports" for p in OPENSSH10_PACKAGES)],
                cwd=apt / "debs")
        if r.returncode != 0:
            raise SetupError(f"apt-get download of OpenSSH 10.0 failed: {r.stderr.strip()[-500:]}")
        shutil.rmtree(OPENSSH10, ignore_errors=True)
        OPENSSH10.mkdir(parents=True)
        for deb in sorted((apt / "debs").glob("*.deb")):
            r = run(["dpkg", "-x", deb, OPENSSH10])
            if r.returncode != 0:
                raise SetupError(f"dpkg -x {deb.name} failed: {r.stderr.strip()}")
        shutil.rmtree(apt, ignore_errors=True)
        version = run([ssh10, "-V"]).stderr.strip()
        if "OpenSSH_10.0" not in version:
            raise SetupError(f"bookworm-backports now carries '{version}', not OpenSSH 10.0: "
                             "update OPENSSH10 and the matrix's expectations in interop/matrix")
    # The binaries come from another suite: say so plainly if one of their
    # libraries is missing here rather than letting a cell fail obscurely.
    for binary in ("usr/bin/ssh", "usr/sbin/sshd", "usr/lib/openssh/sshd-session",
                   "usr/lib/openssh/sshd-auth", "usr/lib/openssh/sftp-server"):
        path = OPENSSH10 / binary
        if not path.exists():
            raise SetupError(f"{path} is missing from the unpacked OpenSSH 10.0; delete {OPENSSH10} and rerun")
        missing = [line.strip() for line in run(["ldd", path]).stdout.splitlines() if "not found" in line]
        if missing:
            raise SetupError(f"{path} needs libraries this system lacks: {'; '.join(missing)}")


def keygen(path, comment):
    """The key at `path`, made once and kept."""
    if not path.exists():
        try:
            keys.keygen(path, comment)
        except RuntimeError as e:
            raise SetupError(str(e)) from e


def ensure_keys():
    """Keys kept across runs in interop/.peers/keys (so concurrent runs agree on authorized_keys)."""
    KEYS.mkdir(parents=True, exist_ok=True)
    os.chmod(KEYS, 0o755)
    for name in ("host", "other_host", "user", "stranger"):
        keygen(KEYS / name, f"sshq-matrix-{name}")
    # Dropbear 2022.83 reads only its own key format (dbclient fails on an
    # OpenSSH-format Ed25519 key with "String too long").
    for name in ("host", "user", "stranger"):
        dropbear_key = KEYS / f"{name}.dropbear"
        if not dropbear_key.exists():
            r = run(["dropbearconvert", "openssh", "dropbear", KEYS / name, dropbear_key])
            if r.returncode != 0:
                raise SetupError(f"dropbearconvert could not convert the {name} key: {r.stderr.strip()}")


def ensure_user():
    """The login account, with the matrix user key authorized."""
    try:
        pwd.getpwnam(MATRIX_USER)
    except KeyError:
        r = run(["useradd", "-m", "-s", "/bin/sh", MATRIX_USER])
        if r.returncode != 0:
            raise SetupError(f"useradd {MATRIX_USER} failed: {r.stderr.strip()}")
    run(["usermod", "-p", "*", MATRIX_USER])  # key login only, yet not "locked" for sshd
    entry = pwd.getpwnam(MATRIX_USER)
    ssh_dir = Path(entry.pw_dir) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    auth = ssh_dir / "authorized_keys"
    auth.write_text((KEYS / "user.pub").read_text())
    for path, mode in ((ssh_dir, 0o700), (auth, 0o600)):
        os.chown(path, entry.pw_uid, entry.pw_gid)
        os.chmod(path, mode)
    for rc in (".profile", ".bashrc", ".bash_logout"):  # nothing slow or chatty at login
        (Path(entry.pw_dir) / rc).unlink(missing_ok=True)


def versions():
    """What each peer says it is, detected now (shown in the report)."""
    def first_line(argv):
        try:
            r = run(argv, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"unavailable ({e})"
        text = (r.stdout + r.stderr).strip().splitlines()
        return text[0] if text else f"no output (exit {r.returncode})"
    return {
        "sshq": first_line([SSHQ, "-V"]),
        "sshqd": first_line([SSHQD, "-V"]),
        "openssh-9.2": first_line(["/usr/bin/ssh", "-V"]),
        "openssh-10.0": first_line([OPENSSH10 / "usr/bin/ssh", "-V"]),
        "dropbear": first_line(["dbclient", "-V"]),
    }


class Server:
    """One server process started for the whole run."""

    def __init__(self, name, port, argv, config, rundir, udp=False, tcp=True):
        self.name, self.port, self.log = name, port, rundir / f"server-{name}.log"
        self.error = None
        if config is not None:
            (rundir / f"{name}.conf").write_text(config)
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if not self._wait_listening(tcp, udp):
            self.error = f"{name} did not start listening on port {port}: {self.log_tail()}"

    def _wait_listening(self, tcp, udp, seconds=15):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            ok = True
            if tcp:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                except OSError:
                    ok = False
            if udp and ok:  # sshqd says so once its QUIC endpoint is bound
                ok = f"listening on 127.0.0.1 port {self.port} (QUIC)" in self.log.read_text(errors="replace")
            if ok:
                return True
            time.sleep(0.1)
        return False

    def log_tail(self, lines=5):
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def sshd_config(port, sftp_server, extra=""):
    return (f"Port {port}\nListenAddress 127.0.0.1\nHostKey {KEYS / 'host'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "PidFile none\nPrintMotd no\nAllowAgentForwarding yes\nAllowTcpForwarding yes\n"
            f"AcceptEnv {ENV_NAME}\nSubsystem sftp {sftp_server}\nLogLevel VERBOSE\n"
            f"MaxStartups 64\n{extra}")


def start_servers(rundir):
    """sshqd, OpenSSH 9.2 and 10.0 sshd, Dropbear; then one QUIC relay (sshqd with QuicRelay) for each."""
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    servers = {}
    port = free_port()
    servers["sshqd"] = Server("sshqd", port, [SSHQD, "-D", "-e", "-f", rundir / "sshqd.conf"],
                              f"Port {port}\nListenAddress 127.0.0.1\nHostKey {KEYS / 'host'}\n"
                              "Subsystem sftp /usr/lib/openssh/sftp-server\nAllowTcpForwarding yes\n"
                              f"AllowAgentForwarding yes\nAcceptEnv {ENV_NAME}\nTransports quic,tcp\n"
                              # As for OpenSSH below: every cell comes from 127.0.0.1, so the
                              # per-source limit and PerSourcePenalties (after the wrong-key
                              # cells) would refuse later cells.
                              "MaxStartups 64\nPerSourceMaxStartups none\nPerSourcePenalties no\n",
                              rundir, udp=True)
    port = free_port()
    servers["openssh-9.2"] = Server("openssh-9.2", port, ["/usr/sbin/sshd", "-D", "-e", "-f",
                                                          rundir / "openssh-9.2.conf"],
                                    sshd_config(port, "/usr/lib/openssh/sftp-server"), rundir)
    port = free_port()
    libexec = OPENSSH10 / "usr/lib/openssh"
    servers["openssh-10.0"] = Server(
        "openssh-10.0", port, [OPENSSH10 / "usr/sbin/sshd", "-D", "-e", "-f", rundir / "openssh-10.0.conf"],
        # OpenSSH 10 splits sshd into sshd, sshd-session and sshd-auth: point it at the
        # unpacked helpers. PerSourcePenalties (9.8+) would refuse every connection from
        # 127.0.0.1 for a while after the wrong-key cell's failed login.
        sshd_config(port, libexec / "sftp-server",
                    f"SshdSessionPath {libexec / 'sshd-session'}\nSshdAuthPath {libexec / 'sshd-auth'}\n"
                    "PerSourcePenalties no\n"),
        rundir)
    port = free_port()
    # -F foreground, -E log to stderr, -s no password logins, -r host key, -P pid file.
    servers["dropbear"] = Server("dropbear", port, ["/usr/sbin/dropbear", "-F", "-E", "-s", "-p",
                                                    f"127.0.0.1:{port}", "-r", KEYS / "host.dropbear",
                                                    "-P", rundir / "dropbear.pid"], None, rundir)
    relays = {}
    for target, server in servers.items():
        port = free_port()
        name = f"relay-to-{target}"
        relays[target] = Server(name, port, [SSHQD, "-D", "-e", "-f", rundir / f"{name}.conf"],
                                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {KEYS / 'host'}\n"
                                f"Transports quic\nQuicRelay 127.0.0.1:{server.port}\n"
                                "MaxStartups 64\nPerSourceMaxStartups none\nPerSourcePenalties no\n",
                                rundir, udp=True, tcp=False)
    return servers, relays
