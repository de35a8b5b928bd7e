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


def sign(ca, pub, options):
    """`ssh-keygen -s ca ... pub`: the certificate `<pub without .pub>-cert.pub`, beside pub."""
    r = run(["ssh-keygen", "-q", "-s", ca, *options, pub])
    cert = pub.with_name(pub.name.removesuffix(".pub") + "-cert.pub")
    if r.returncode != 0 or not cert.exists():
        raise SetupError(f"ssh-keygen -s {ca.name} could not certify {pub}: {r.stderr.strip()}")
    return cert


def make_certificates(rundir):
    """The certificates of the certificate cases, made in this run (validity starts now) by ssh-keygen -s.

    certs/user_ca and certs/host_ca: the CAs the servers (TrustedUserCAKeys) and the host-cert case's
    known_hosts (@cert-authority) trust. certs/valid/id and certs/expired/id: one key, not in any
    authorized_keys, beside a certificate for the matrix user valid now (valid/id-cert.pub) and one
    that expired in 2020 (expired/id-cert.pub), so that `-i <dir>/id` differs only in the validity.
    certs/host-cert.pub: the matrix host key certified for 127.0.0.1 (the name every cell connects
    to), for the servers' HostCertificate.
    """
    certs = rundir / "certs"
    for d in (certs, certs / "valid", certs / "expired"):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
    for name in ("user_ca", "host_ca"):
        keygen(certs / name, f"sshq-matrix-{name}")
    keygen(certs / "valid/id", "sshq-matrix-cert-user")
    for name in ("id", "id.pub"):
        shutil.copy2(certs / "valid" / name, certs / "expired" / name)
    user = ["-I", "sshq-matrix-cert-user", "-n", MATRIX_USER]
    sign(certs / "user_ca", certs / "valid/id.pub", [*user, "-V", "-5m:+1h"])
    sign(certs / "user_ca", certs / "expired/id.pub", [*user, "-V", "20200101:20200102"])
    shutil.copy2(KEYS / "host.pub", certs / "host.pub")
    sign(certs / "host_ca", certs / "host.pub", ["-h", "-I", "sshq-matrix-host", "-n", "127.0.0.1",
                                                 "-V", "-5m:+1h"])
    return certs


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
    from . import more_peers
    return {
        "sshq": first_line([SSHQ, "-V"]),
        "sshqd": first_line([SSHQD, "-V"]),
        "openssh-9.2": first_line(["/usr/bin/ssh", "-V"]),
        "openssh-10.0": first_line([OPENSSH10 / "usr/bin/ssh", "-V"]),
        "dropbear": first_line(["dbclient", "-V"]),
        **more_peers.versions(),
    }


class Server:
    """One server process started for the whole run."""

    def __init__(self, name, port, argv, config, rundir, udp=False, tcp=True, unavailable=None):
        self.name, self.port, self.log = name, port, rundir / f"server-{name}.log"
        self.error = None
        if unavailable:  # the peer could not be installed: every cell of it fails with the reason
            self.proc, self.error = None, f"{name} unavailable: {unavailable}"
            self.log.write_text(self.error + "\n")
            return
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
        if self.proc is not None and self.proc.poll() is None:
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


# The servers of the host-cert case: each server again, presenting the matrix host
# key's certificate (HostCertificate) too. The others present no certificate, so
# that no other case depends on how a client treats one it cannot check.
HOST_CERT_SUFFIX = "-hostcert"


def sshqd_config(port, extra=""):
    return (f"Port {port}\nListenAddress 127.0.0.1\nHostKey {KEYS / 'host'}\n"
            "Subsystem sftp /usr/lib/openssh/sftp-server\nAllowTcpForwarding yes\n"
            f"AllowAgentForwarding yes\nAcceptEnv {ENV_NAME}\nTransports quic,tcp\n"
            # As for OpenSSH below: every cell comes from 127.0.0.1, so the
            # per-source limit and PerSourcePenalties (after the wrong-key
            # cells) would refuse later cells.
            f"MaxStartups 64\nPerSourceMaxStartups none\nPerSourcePenalties no\n{extra}")


def start_servers(rundir, certs):
    """sshqd, OpenSSH 9.2 and 10.0 sshd, Dropbear; the host-certificate twins of the first three
    (HOST_CERT_SUFFIX); then one QUIC relay (sshqd with QuicRelay) for each.

    sshqd and sshd trust user certificates signed by certs/user_ca (TrustedUserCAKeys): that only
    lets in the certificate cases' key, which no authorized_keys holds.
    """
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    trust = f"TrustedUserCAKeys {certs / 'user_ca.pub'}\n"
    host_cert = f"HostCertificate {certs / 'host-cert.pub'}\n"
    libexec = OPENSSH10 / "usr/lib/openssh"
    servers = {}
    for suffix, extra in (("", trust), (HOST_CERT_SUFFIX, trust + host_cert)):
        name = f"sshqd{suffix}"
        port = free_port()
        servers[name] = Server(name, port, [SSHQD, "-D", "-e", "-f", rundir / f"{name}.conf"],
                               sshqd_config(port, extra), rundir, udp=True)
        name = f"openssh-9.2{suffix}"
        port = free_port()
        servers[name] = Server(name, port, ["/usr/sbin/sshd", "-D", "-e", "-f", rundir / f"{name}.conf"],
                               sshd_config(port, "/usr/lib/openssh/sftp-server", extra), rundir)
        name = f"openssh-10.0{suffix}"
        port = free_port()
        servers[name] = Server(
            name, port, [OPENSSH10 / "usr/sbin/sshd", "-D", "-e", "-f", rundir / f"{name}.conf"],
            # OpenSSH 10 splits sshd into sshd, sshd-session and sshd-auth: point it at the
            # unpacked helpers. PerSourcePenalties (9.8+) would refuse every connection from
            # 127.0.0.1 for a while after the wrong-key cell's failed login.
            sshd_config(port, libexec / "sftp-server",
                        f"SshdSessionPath {libexec / 'sshd-session'}\nSshdAuthPath {libexec / 'sshd-auth'}\n"
                        f"PerSourcePenalties no\n{extra}"),
            rundir)
        if not suffix:
            port = free_port()
            # -F foreground, -E log to stderr, -s no password logins, -r host key, -P pid file.
            # Dropbear has no certificates, so no twin.
            servers["dropbear"] = Server("dropbear", port, ["/usr/sbin/dropbear", "-F", "-E", "-s", "-p",
                                                            f"127.0.0.1:{port}", "-r", KEYS / "host.dropbear",
                                                            "-P", rundir / "dropbear.pid"], None, rundir)
    from . import more_peers  # (more_peers imports this module)
    for peer in more_peers.SERVERS:
        port = free_port()
        servers[peer] = Server(peer, port, more_peers.server_argv(peer, port), None, rundir,
                               unavailable=more_peers.UNAVAILABLE.get(peer))
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
