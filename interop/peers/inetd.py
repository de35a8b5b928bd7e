"""A tiny inetd for the interop matrix: listen on one TCP port and run a
program per connection with the connection as its stdin and stdout, as
inetd or tcpserver would run tinysshd (which serves exactly one connection
on its stdio and has no listener of its own).

    python3 inetd.py --port 2222 -- tinysshd -v /path/to/keydir
"""

import argparse
import os
import signal
import socket
import subprocess
import sys


def reap(*_):
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("argv", nargs=argparse.REMAINDER, help="-- program and its arguments")
    args = ap.parse_args()
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        ap.error("no program to run")
    # Reap finished children with a handler, not SIG_IGN: an ignored SIGCHLD
    # is inherited across exec, and tinysshd then cannot wait for its own
    # children (it spins on ECHILD). stderr (tinysshd's log) goes to ours.
    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.create_server(("127.0.0.1", args.port))
    print(f"inetd: listening on 127.0.0.1 port {args.port} for {argv[0]}", flush=True)
    while True:
        conn, (host, port) = listener.accept()
        # The variables tcpserver sets, which tinysshd logs.
        env = dict(os.environ, TCPREMOTEIP=host, TCPREMOTEPORT=str(port), TCPLOCALIP="127.0.0.1",
                   TCPLOCALPORT=str(args.port), PROTO="TCP")
        # Not kept: the SIGCHLD handler reaps it.
        subprocess.Popen(argv, stdin=conn, stdout=conn, env=env, close_fds=True).returncode = 0
        conn.close()


if __name__ == "__main__":
    main()
