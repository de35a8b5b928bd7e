"""Runs a command on a pseudo-terminal of a fixed size, relaying this
process's stdin to it and its output to stdout: `python3 -m sshqlab.ptyrun
[--cols N] [--rows N] -- COMMAND...`.

For clients that insist on a terminal (mosh-client refuses pipes) in probes
that talk to them through pipes. Exits with the command's status once its
terminal closes. The command runs in a session of its own, with the
terminal as its controlling one, as under a terminal emulator.
"""

import argparse
import fcntl
import os
import select
import struct
import sys
import termios


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cols", type=int, default=80)
    ap.add_argument("--rows", type=int, default=24)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("ptyrun: no command given")
    master, slave = os.openpty()
    # The size is set before the command starts, so it never sees 0x0.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", args.rows, args.cols, 0, 0))
    pid = os.fork()
    if pid == 0:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        os.close(slave)
        try:
            os.execvp(command[0], command)
        except OSError as e:
            os.write(2, f"ptyrun: {command[0]}: {e}\n".encode())
            os._exit(127)
    os.close(slave)
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    readers = [master, stdin]
    while True:
        ready, _, _ = select.select(readers, [], [])
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""  # EIO: every holder of the terminal is gone
            if not data:
                break
            os.write(stdout, data)
        if stdin in ready:
            data = os.read(stdin, 65536)
            if data:
                os.write(master, data)
            else:
                readers.remove(stdin)  # our input ended; the command's goes on
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    sys.exit(code if code >= 0 else 128 - code)  # as a shell reports a signal


if __name__ == "__main__":
    main()
