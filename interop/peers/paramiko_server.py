"""An sshd-like server built on Paramiko, for the interop matrix.

Public-key logins for one user (keys in their ~/.ssh/authorized_keys),
commands and shells run as that user with pipes or a pty (window changes
applied), accepted environment names, the sftp subsystem (OpenSSH's
sftp-server, as sshd runs it), direct-tcpip (ssh -L, -D) and tcpip-forward
(ssh -R). One thread per connection and per channel.
"""

import os
import signal
import socket
import threading

import paramiko

import serverkit

args = serverkit.server_args(__doc__.splitlines()[0])
HOST_KEY = paramiko.Ed25519Key.from_private_key_file(args.host_key)


class Session:
    def __init__(self):
        self.env, self.pty, self.master = {}, None, None


class Server(paramiko.ServerInterface):
    def __init__(self, transport):
        self.transport = transport
        self.sessions = {}
        self.listeners = {}
        self.pending = {}  # direct-tcpip channel id -> its connected socket

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        if username == args.user and key.get_base64() in serverkit.authorized_blobs(args.user):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            self.sessions[chanid] = Session()
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid, origin, destination):
        try:
            sock = socket.create_connection(destination, timeout=10)
        except OSError:
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        # The channel exists once this returns: serve() splices it when it accepts it.
        self.pending[chanid] = sock
        return paramiko.OPEN_SUCCEEDED

    def check_port_forward_request(self, address, port):
        listener = socket.create_server((address, port))
        port = listener.getsockname()[1]
        self.listeners[(address, port)] = listener

        def accept():
            while True:
                try:
                    conn, peer = listener.accept()
                except OSError:
                    return
                try:
                    chan = self.transport.open_forwarded_tcpip_channel(peer, (address, port))
                except paramiko.SSHException:
                    conn.close()
                    continue
                splice(conn, chan)
        threading.Thread(target=accept, daemon=True).start()
        return port

    def cancel_port_forward_request(self, address, port):
        listener = self.listeners.pop((address, port), None)
        if listener:
            listener.close()

    def check_channel_env_request(self, channel, name, value):
        if isinstance(name, bytes):
            name, value = name.decode(), value.decode()
        if name not in args.accept_env:
            return False
        self.sessions[channel.get_id()].env[name] = value
        return True

    def check_channel_pty_request(self, channel, term, width, height, pixelwidth, pixelheight, modes):
        self.sessions[channel.get_id()].pty = (width, height)
        return True

    def check_channel_window_change_request(self, channel, width, height, pixelwidth, pixelheight):
        session = self.sessions[channel.get_id()]
        if session.master is not None:
            serverkit.set_winsize(session.master, width, height)
        return True

    def check_channel_exec_request(self, channel, command):
        return self.start(channel, command.decode(errors="replace"))

    def check_channel_shell_request(self, channel):
        return self.start(channel, None)

    def check_channel_subsystem_request(self, channel, name):
        return name == "sftp" and self.start(channel, None, subsystem="sftp")

    def start(self, channel, command, subsystem=None):
        session = self.sessions[channel.get_id()]
        try:
            child, master = serverkit.spawn(args.user, command, session.env, session.pty, subsystem)
        except (OSError, ValueError):
            return False
        session.master = master
        threading.Thread(target=run_session, args=(channel, child, master), daemon=True).start()
        return True


def pump(read, write, done=None):
    try:
        while data := read(65536):
            write(data)
    except OSError:
        pass
    if done:
        try:
            done()
        except OSError:
            pass


def splice(sock, chan):
    threading.Thread(target=pump, args=(sock.recv, chan.sendall, chan.shutdown_write), daemon=True).start()
    threading.Thread(target=pump, args=(chan.recv, sock.sendall, lambda: sock.shutdown(socket.SHUT_WR)),
                     daemon=True).start()


def run_session(chan, child, master):
    if master is None:
        stdin = child.stdin.fileno()  # unbuffered: sftp-server waits for every byte sent
        threading.Thread(target=pump, args=(chan.recv, lambda d: os.write(stdin, d), child.stdin.close),
                         daemon=True).start()
        err = threading.Thread(target=pump, args=(child.stderr.read1, chan.sendall_stderr))
        err.start()
        pump(child.stdout.read1, chan.sendall)
        err.join()
    else:
        threading.Thread(target=pump, args=(chan.recv, lambda d: os.write(master, d)), daemon=True).start()
        pump(lambda n: os.read(master, n), chan.sendall)  # ends with EIO once the child side closes
        os.close(master)
    status = child.wait()
    if status < 0:
        chan.send_exit_status(128 - status)  # Paramiko has no exit-signal; report as a shell would
    else:
        chan.send_exit_status(status)
    chan.shutdown_write()
    chan.close()


def serve(conn):
    transport = paramiko.Transport(conn)
    transport.add_server_key(HOST_KEY)
    server = Server(transport)
    try:
        transport.start_server(server=server)
    except (paramiko.SSHException, EOFError, OSError):
        return
    # Session channels are driven by their requests (above); forwarded ones are spliced here.
    while transport.is_active():
        chan = transport.accept(1)
        if chan is not None and chan.get_id() in server.pending:
            splice(server.pending.pop(chan.get_id()), chan)


def main():
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    listener = socket.create_server(("127.0.0.1", args.port), reuse_port=False)
    print(f"paramiko {paramiko.__version__} listening on 127.0.0.1 port {args.port}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
