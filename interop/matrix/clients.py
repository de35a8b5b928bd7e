"""How each client of the matrix is driven: its command line for a cell.

Every client logs in as the matrix user with the matrix user key (or the
key a case names: a certificate case's key, with its -cert.pub beside it),
trusts the servers' host key through a known_hosts file of the cell's own
(accept-new, unless a case asks for StrictHostKeyChecking=yes), never
prompts (BatchMode, no controlling terminal), and sees no ssh-agent unless
the case asks for one.
"""

import os
from pathlib import Path

from . import more_peers
from .more_peers import HELPER_CLIENTS
from .peers import KEYS, MATRIX_USER, OPENSSH10, SSHQ

# sshq/sshqd and the reference implementations meet every peer; the added
# peers (more_peers) meet those, not each other.
REFERENCE_CLIENTS = ["sshq", "openssh-9.2", "openssh-10.0", "dropbear"]
REFERENCE_SERVERS = ["sshqd", "openssh-9.2", "openssh-10.0", "dropbear"]
CLIENTS = REFERENCE_CLIENTS + more_peers.CLIENTS
SERVERS = REFERENCE_SERVERS + more_peers.SERVERS
TRANSPORTS = ["tcp", "quic", "quic-tunnel"]


def pair_in_plan(client, server):
    """Whether the matrix runs this pair at all: one side is sshq or a reference implementation."""
    return client in REFERENCE_CLIENTS or server in REFERENCE_SERVERS

# OpenSSH's sftp and scp drive an ssh program given with -S; for each client
# these are the sftp/scp binaries of the same suite (OpenSSH's own for sshq
# and dbclient, which ship none).
SFTP = {"sshq": "/usr/bin/sftp", "openssh-9.2": "/usr/bin/sftp",
        "openssh-10.0": str(OPENSSH10 / "usr/bin/sftp"), "dropbear": "/usr/bin/sftp"}
SCP = {"sshq": "/usr/bin/scp", "openssh-9.2": "/usr/bin/scp",
       "openssh-10.0": str(OPENSSH10 / "usr/bin/scp"), "dropbear": "/usr/bin/scp"}
PROGRAM = {"sshq": str(SSHQ), "openssh-9.2": "/usr/bin/ssh",
           "openssh-10.0": str(OPENSSH10 / "usr/bin/ssh"), "dropbear": "/usr/bin/dbclient"}


def transport_not_applicable(client, server, transport):
    """Why a client/server pair cannot meet over this transport, or None."""
    if transport == "quic":
        if client != "sshq":
            return ("only sshq speaks QUIC as a client: the others "
                    "reach servers over QUIC through sshq proxy (quic-tunnel)")
        if server != "sshqd":
            return ("only sshqd serves QUIC: "
                    "other servers are reached over QUIC through an sshqd QuicRelay (quic-tunnel)")
    return None


class Invocation:
    """The pieces of one client command line for one cell."""

    def __init__(self, cell, key="user", verbose=False, host_check="accept-new"):
        """key: a key of the matrix's (a name in interop/.peers/keys) or the Path of one
        (OpenSSH's ssh and sshq also load the `<key>-cert.pub` beside it);
        host_check: the StrictHostKeyChecking of OpenSSH's ssh and sshq."""
        self.cell, self.key, self.verbose, self.host_check = cell, key, verbose, host_check
        self.key_path = key if isinstance(key, Path) else KEYS / key
        self.client = cell.client
        self.env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
        if self.client in ("dropbear", "putty"):
            # dbclient reads ~/.ssh/known_hosts from $HOME, keyed by host alone;
            # PuTTY keeps its host key cache in ~/.putty.
            home = cell.dir / "home"
            (home / ".ssh").mkdir(parents=True, exist_ok=True)
            self.env["HOME"] = str(home)

    def quic_hop(self, host_port_placeholders):
        """The `sshq proxy` command that carries the SSH stream over QUIC to the relay."""
        verbose = " -v" if self.verbose else ""
        return (f"{SSHQ} proxy{verbose} -o UserKnownHostsFile={self.cell.dir}/known_hosts.quic "
                f"-o StrictHostKeyChecking=accept-new {host_port_placeholders}")

    def openssh_options(self):
        """ssh_config options (as -o pairs) shared by OpenSSH clients, sshq, and OpenSSH's sftp/scp."""
        opts = ["-F", "/dev/null", "-i", str(self.key_path),
                "-o", f"UserKnownHostsFile={self.cell.dir}/known_hosts",
                "-o", f"StrictHostKeyChecking={self.host_check}", "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes"]
        if self.client == "sshq":
            # Through the tunnel sshq speaks SSH over TCP's byte stream, as ssh does.
            transport = "tcp" if self.cell.transport == "quic-tunnel" else self.cell.transport
            opts += ["-o", f"Transport={transport}"]
        if self.cell.transport == "quic-tunnel":
            opts += ["-o", f"ProxyCommand={self.quic_hop('%h %p')}"]
        return opts

    def dropbear_options(self):
        opts = ["-i", f"{self.key_path}.dropbear"]
        if self.cell.transport == "quic-tunnel":
            # dbclient's -J runs a program in place of the TCP connection (no %h/%p).
            opts += ["-J", self.quic_hop(f"127.0.0.1 {self.cell.port}")]
        return opts

    def helper_options(self):
        """The ssh options our helper clients (interop/peers) understand: they check the host key
        against the cell's known_hosts strictly (the cell writes it first) and take a ProxyCommand."""
        opts = ["-i", str(self.key_path), "-o", f"UserKnownHostsFile={self.cell.dir}/known_hosts"]
        if self.cell.transport == "quic-tunnel":
            opts += ["-o", f"ProxyCommand={self.quic_hop('%h %p')}"]
        return opts

    def putty_options(self):
        """plink/psftp/pscp: batch mode, the .ppk key, and the host key pinned with -hostkey
        (the fingerprint of the key in the cell's known_hosts), PuTTY's cache kept in the cell."""
        key = self.key_path if self.key_path.suffix == ".ppk" else Path(f"{self.key_path}.ppk")
        opts = ["-batch", "-noagent", "-i", str(key)]
        known = (self.cell.dir / "known_hosts").read_text().split("\n")[0].split()
        if len(known) >= 3 and not known[0].startswith("@"):
            opts += ["-hostkey", more_peers.fingerprint(" ".join(known[1:3]))]
        if self.cell.transport == "quic-tunnel":
            # PuTTY bypasses any proxy for connections to localhost unless the setting
            # ProxyLocalhost says otherwise, and no command-line option sets it: a saved
            # session in the cell's $HOME does (method 5 is a local proxy command).
            sessions = self.cell.dir / "home/.putty/sessions"
            sessions.mkdir(parents=True, exist_ok=True)
            (sessions / "matrix").write_text(f"ProxyMethod=5\nProxyLocalhost=1\n"
                                             f"ProxyTelnetCommand=exec {self.quic_hop(f'127.0.0.1 {self.cell.port}')}\n")
            opts += ["-load", "matrix"]
        return opts

    def ssh(self, command, flags=()):
        """argv of the client running `command` (None: no command) with extra flags."""
        if self.client == "putty":
            flags = list(flags)
            opts = self.putty_options()
            if "-A" in flags:  # plink talks to the agent at SSH_AUTH_SOCK only when allowed to
                opts.remove("-noagent")
            argv = ["/usr/bin/plink", "-ssh", *opts, *flags, *(["-v"] if self.verbose else []),
                    "-P", str(self.cell.port), "-l", MATRIX_USER, "127.0.0.1"]
            return argv + ([command] if command is not None else [])
        if self.client in HELPER_CLIENTS:
            argv = [str(HELPER_CLIENTS[self.client]), *self.helper_options(), *flags, "-p", str(self.cell.port)]
            if self.verbose:
                argv.append("-v")
            argv.append(f"{MATRIX_USER}@127.0.0.1")
            return argv + ([command] if command is not None else [])
        if self.client == "dropbear":
            argv = [PROGRAM["dropbear"], *self.dropbear_options(), *flags, "-p", str(self.cell.port)]
        else:
            argv = [PROGRAM[self.client], *self.openssh_options(), *flags, "-p", str(self.cell.port)]
            if self.verbose:
                argv.append("-v")
        argv.append(f"{MATRIX_USER}@127.0.0.1")
        if command is not None:
            argv.append(command)
        return argv

    def file_tool(self, tool, args):
        """argv of OpenSSH's sftp or scp using this client as its ssh program (-S)."""
        if self.client == "putty":
            # PuTTY's own file tools (SFTP protocol both).
            return ["/usr/bin/psftp" if tool == "sftp" else "/usr/bin/pscp", *self.putty_options(),
                    "-P", str(self.cell.port), *args]
        if self.client in HELPER_CLIENTS:
            # OpenSSH 9.2's sftp and scp (SFTP protocol) over the helper's session channel (-s sftp).
            return [f"/usr/bin/{tool}", "-S", str(HELPER_CLIENTS[self.client]), "-P", str(self.cell.port),
                    *self.helper_options(), *args]
        binary = (SFTP if tool == "sftp" else SCP)[self.client]
        argv = [binary, "-S", PROGRAM[self.client], "-P", str(self.cell.port)]
        if self.client == "dropbear":
            # sftp/scp pass their options on; dbclient ignores those it does not know.
            argv += ["-i", f"{self.key_path}.dropbear"]
            if self.cell.transport == "quic-tunnel":
                argv += ["-J", self.quic_hop(f"127.0.0.1 {self.cell.port}")]
        else:
            argv += self.openssh_options()
        return argv + list(args)


def write_cert_authority(cell, ca_pub: Path):
    """A known_hosts holding only `@cert-authority * <CA key>`: the server is trusted through its host
    certificate alone (OpenSSH's ssh and sshq; dbclient reads no @cert-authority lines)."""
    key = " ".join(ca_pub.read_text().split()[:2])
    (cell.dir / "known_hosts").write_text(f"@cert-authority * {key}\n")


def write_known_hosts(cell, host_pub: Path):
    """Trust `host_pub` for the cell's server (for dbclient, which cannot accept-new)."""
    key = " ".join(host_pub.read_text().split()[:2])
    if cell.client == "dropbear":
        path = cell.dir / "home/.ssh/known_hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"127.0.0.1 {key}\n")
    else:
        (cell.dir / "known_hosts").write_text(f"[127.0.0.1]:{cell.port} {key}\n")
