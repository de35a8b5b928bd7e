"""The OpenSSH-style command line the matrix's Python client helpers accept.

The matrix drives every client with ssh's own flags (interop/matrix/clients.py),
and OpenSSH's sftp and scp run their "ssh program" (-S) with flags of their own
(-x, -oForwardX11 no, -s, -l user, --). Parsing the same subset here lets the
helpers stand in for ssh in all of those places. Unknown -o options are ignored,
as an ssh program given to sftp must tolerate them.
"""

import fcntl
import os
import shlex
import struct
import sys
import termios
from dataclasses import dataclass, field


@dataclass
class SshArgs:
    host: str = ""
    user: str = ""
    port: int = 22
    identity: str = ""
    known_hosts: str = ""
    strict_host_key_checking: str = "yes"
    proxy_command: str = ""
    set_env: dict = field(default_factory=dict)
    want_tty: bool = False
    no_command: bool = False
    subsystem: bool = False
    forward_agent: bool = False
    verbose: bool = False
    local_forwards: list = field(default_factory=list)   # (listen_host, listen_port, host, port)
    remote_forwards: list = field(default_factory=list)  # (listen_host, listen_port, host, port)
    dynamic_forwards: list = field(default_factory=list)  # (listen_host, listen_port)
    command: str = ""

    def proxy_argv(self):
        """The ProxyCommand with %h and %p filled in, as argv for a shell."""
        text = self.proxy_command.replace("%h", self.host).replace("%p", str(self.port))
        # As ssh does: exec, so that no shell stays behind holding the pipe's other copy (the
        # proxy closing its stdout must reach us as end of file).
        return ["/bin/sh", "-c", f"exec {text}"]


def parse_forward(spec, with_target):
    """[listen_host:]port[:host:hostport] as ssh -L/-R/-D take it."""
    parts = spec.split(":")
    if with_target:
        if len(parts) == 3:
            parts.insert(0, "127.0.0.1")
        if len(parts) != 4:
            raise SystemExit(f"bad forwarding spec {spec!r}")
        return parts[0], int(parts[1]), parts[2], int(parts[3])
    if len(parts) == 1:
        parts.insert(0, "127.0.0.1")
    return parts[0], int(parts[1])


def parse(argv):
    args = SshArgs()
    rest = []
    i = 0
    takes_value = set("pilLRDoFJcmbeEBIOQSWw")
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest += argv[i + 1:]
            break
        if not word.startswith("-") or word == "-" or rest:
            rest.append(word)
            i += 1
            continue
        flag, value = word[1], word[2:]
        if flag in takes_value and not value:
            i += 1
            value = argv[i] if i < len(argv) else ""
        i += 1
        if flag in takes_value:
            apply_flag(args, flag, value)
        else:
            for f in word[1:]:  # grouped boolean flags, e.g. -tt
                apply_flag(args, f, None)
    if not rest:
        raise SystemExit("usage: [options] [user@]host [command]")
    dest = rest[0]
    if "@" in dest:
        args.user, args.host = dest.rsplit("@", 1)
    else:
        args.host = dest
    args.command = " ".join(rest[1:])
    args.user = args.user or os.environ.get("USER", "root")
    return args


def apply_flag(args, flag, value):
    if flag == "p":
        args.port = int(value)
    elif flag == "i":
        args.identity = value
    elif flag == "l":
        args.user = value
    elif flag == "t":
        args.want_tty = True
    elif flag == "N":
        args.no_command = True
    elif flag == "s":
        args.subsystem = True
    elif flag == "A":
        args.forward_agent = True
    elif flag == "v":
        args.verbose = True
    elif flag == "L":
        args.local_forwards.append(parse_forward(value, True))
    elif flag == "R":
        args.remote_forwards.append(parse_forward(value, True))
    elif flag == "D":
        args.dynamic_forwards.append(parse_forward(value, False))
    elif flag == "o":
        apply_option(args, value)
    # Everything else (-x, -T, -q, -F file, ...) changes nothing these helpers do.


def apply_option(args, text):
    # "-oKey=Value" or "-oKey Value" (sftp passes the second form)
    key, _, value = text.replace("=", " ", 1).partition(" ")
    key, value = key.lower(), value.strip()
    if key == "userknownhostsfile":
        args.known_hosts = value
    elif key == "stricthostkeychecking":
        args.strict_host_key_checking = value
    elif key == "proxycommand":
        args.proxy_command = value
    elif key == "setenv":
        for item in shlex.split(value):
            name, _, val = item.partition("=")
            args.set_env[name] = val
    elif key == "port":
        args.port = int(value)
    elif key == "user":
        args.user = value


def terminal_size(fd=0):
    """(columns, rows) of the terminal on fd, or (80, 24) when it is none."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
        return cols or 80, rows or 24
    except OSError:
        return 80, 24


def fail(prog, message):
    """Report a connection or authentication failure the way ssh does: one line, exit 255."""
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    sys.exit(255)
