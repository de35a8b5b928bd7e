"""What the matrix's Python server helpers share: the login user, their
authorized keys, and starting a session's process as that user (with pipes,
or on a new pty), as sshd would.
"""

import argparse
import fcntl
import os
import pwd
import struct
import subprocess
import termios

SFTP_SERVER = "/usr/lib/openssh/sftp-server"


def server_args(description):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host-key", required=True, help="OpenSSH private host key")
    ap.add_argument("--user", required=True, help="the one account that may log in")
    ap.add_argument("--accept-env", action="append", default=[], help="environment names accepted")
    return ap.parse_args()


def authorized_keys_path(user):
    return os.path.join(pwd.getpwnam(user).pw_dir, ".ssh", "authorized_keys")


def authorized_blobs(user):
    """The key blobs (base64 field) of the user's authorized_keys, read at each login as sshd does."""
    blobs = set()
    try:
        with open(authorized_keys_path(user)) as f:
            for line in f:
                fields = line.split()
                for i, word in enumerate(fields[:-1]):
                    if word.startswith(("ssh-", "ecdsa-", "sk-")):
                        blobs.add(fields[i + 1])
                        break
    except OSError:
        pass
    return blobs


def set_winsize(fd, cols, rows):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def spawn(user, command, env, pty_size=None, subsystem=None):
    """The session's process, run as `user` in their home with their shell.

    command None: a login shell; subsystem "sftp": OpenSSH's sftp-server.
    With pty_size (cols, rows) its stdio is a new pty and the master fd is
    returned as the second value; otherwise it gets pipes (master None)."""
    entry = pwd.getpwnam(user)
    shell = entry.pw_shell or "/bin/sh"
    if subsystem is not None:
        if subsystem != "sftp":
            raise ValueError(f"unknown subsystem {subsystem!r}")
        argv = [SFTP_SERVER]
    elif command:
        argv = [shell, "-c", command]
    else:
        argv = [shell, "-l"]
    full_env = {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user, "SHELL": shell,
                "PATH": "/usr/local/bin:/usr/bin:/bin"}
    full_env.update(env or {})
    common = dict(cwd=entry.pw_dir, env=full_env, user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
    if pty_size is None:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, **common)
        return proc, None
    master, slave = os.openpty()
    set_winsize(master, *pty_size)
    full_env.setdefault("TERM", "xterm")

    def controlling_tty():
        # A new session whose controlling terminal is the pty, as sshd's child has.
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_tty, **common)
    os.close(slave)
    return proc, master
