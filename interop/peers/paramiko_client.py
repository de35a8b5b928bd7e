"""An ssh-like client built on Paramiko, for the interop matrix.

Takes ssh's flags (peers/sshargs.py): runs a command (or a subsystem with -s,
or nothing with -N), with a pty (-t, window changes sent), environment
(-o SetEnv), agent forwarding (-A), -L and -R forwarding, a ProxyCommand (the
QUIC tunnel), and host keys checked against -o UserKnownHostsFile
(RejectPolicy: an unknown or changed key is refused). -v prints the
negotiated key exchange as OpenSSH's "kex: algorithm:" line. Exits with the
remote exit status, 255 on failure.
"""

import logging
import os
import signal
import socket
import sys
import termios
import threading
import tty

import paramiko
import paramiko.agent

import sshargs

PROG = "paramiko-client"


class KexRecorder(logging.Handler):
    """Paramiko logs its choice ("Kex: NAME") at DEBUG; nothing public holds it after the handshake."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.kex = None

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Kex: ") and self.kex is None:
            self.kex = message[5:].strip()


def pump(read, write, done=None):
    try:
        while data := read(65536):
            write(data)
    except OSError:
        pass
    if done:
        done()


def forward_local(transport, listen_host, listen_port, host, port):
    server = socket.create_server((listen_host, listen_port))

    def accept():
        while True:
            conn, peer = server.accept()
            try:
                chan = transport.open_channel("direct-tcpip", (host, port), peer)
            except paramiko.SSHException:
                conn.close()
                continue
            splice(conn, chan)
    threading.Thread(target=accept, daemon=True).start()


def splice(sock, chan):
    threading.Thread(target=pump, args=(sock.recv, chan.sendall, chan.shutdown_write), daemon=True).start()
    threading.Thread(target=pump, args=(chan.recv, sock.sendall, lambda: sock.shutdown(socket.SHUT_WR)),
                     daemon=True).start()


def forward_remote(transport, listen_host, listen_port, host, port):
    def arrived(chan, origin, server):
        try:
            sock = socket.create_connection((host, port))
        except OSError:
            chan.close()
            return
        splice(sock, chan)
    transport.request_port_forward(listen_host, listen_port, handler=arrived)


def session(transport, args):
    chan = transport.open_session()
    for name, value in args.set_env.items():
        chan.set_environment_variable(name, value)
    if args.forward_agent:
        paramiko.agent.AgentRequestHandler(chan)
    if args.want_tty:
        cols, rows = sshargs.terminal_size()
        chan.get_pty("xterm", cols, rows)
        signal.signal(signal.SIGWINCH, lambda *_: chan.resize_pty(*sshargs.terminal_size()))
    if args.subsystem:
        chan.invoke_subsystem(args.command)
    elif args.command:
        chan.exec_command(args.command)
    else:
        chan.invoke_shell()
    threading.Thread(target=pump, args=(lambda n: os.read(0, n), chan.sendall, chan.shutdown_write),
                     daemon=True).start()
    err = threading.Thread(target=pump, args=(chan.recv_stderr, lambda d: os.write(2, d)))
    err.start()
    pump(chan.recv, lambda d: os.write(1, d))
    err.join()
    status = chan.recv_exit_status()
    return status if status >= 0 else 255


def main(args):
    recorder = KexRecorder()
    logging.getLogger("paramiko").addHandler(recorder)
    logging.getLogger("paramiko").setLevel(logging.DEBUG)
    client = paramiko.SSHClient()
    if args.known_hosts and os.path.exists(args.known_hosts):
        client.load_host_keys(args.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    # Paramiko splits the command itself and runs it without a shell.
    sock = paramiko.ProxyCommand(args.proxy_argv()[2].removeprefix("exec ")) if args.proxy_command else None
    try:
        client.connect(args.host, args.port, username=args.user, key_filename=args.identity or None,
                       look_for_keys=False, allow_agent=False, sock=sock, timeout=30)
    except (OSError, paramiko.SSHException) as e:
        sshargs.fail(PROG, f"{type(e).__name__}: {e}")
    transport = client.get_transport()
    if args.verbose and recorder.kex:
        print(f"debug1: kex: algorithm: {recorder.kex}", file=sys.stderr, flush=True)
    for spec in args.local_forwards:
        forward_local(transport, *spec)
    for spec in args.remote_forwards:
        forward_remote(transport, *spec)
    if args.dynamic_forwards:
        sshargs.fail(PROG, "Paramiko has no SOCKS (-D) forwarding")
    if args.no_command:
        while transport.is_active():
            transport.join(1)
        return 0
    return session(transport, args)


if __name__ == "__main__":
    parsed = sshargs.parse(sys.argv[1:])
    saved = None
    if parsed.want_tty and os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
    try:
        status = main(parsed)
    finally:
        if saved:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    os._exit(status)
