"""An sshd-like server built on AsyncSSH, for the interop matrix.

Public-key logins for one user (their ~/.ssh/authorized_keys, which AsyncSSH
checks), commands and shells run as that user with pipes or a pty (window
changes applied), accepted environment names, the sftp subsystem (AsyncSSH's
own SFTP server, rooted in the user's home; it runs as the server's user),
agent forwarding, and -L/-R/-D forwarding.
"""

import asyncio
import os
import signal
import sys

import asyncssh

import serverkit

args = serverkit.server_args(__doc__.splitlines()[0])
HOME = serverkit.pwd.getpwnam(args.user).pw_dir


class Server(asyncssh.SSHServer):
    def begin_auth(self, username):
        return True

    def public_key_auth_supported(self):
        return True

    def validate_public_key(self, username, key):
        return username == args.user and key.export_public_key("openssh").split()[1].decode() \
            in serverkit.authorized_blobs(args.user)

    def password_auth_supported(self):
        return False

    def connection_requested(self, dest_host, dest_port, orig_host, orig_port):
        return True  # direct-tcpip (ssh -L, -D)

    def server_requested(self, listen_host, listen_port):
        return True  # tcpip-forward (ssh -R)


async def copy_to_child(process, write, on_resize):
    """The channel's data into the child; window changes (pty) resize it."""
    while True:
        try:
            data = await process.stdin.read(65536)
        except asyncssh.TerminalSizeChanged as change:
            on_resize(change.width, change.height)
            continue
        except asyncssh.BreakReceived:
            continue
        except asyncssh.SignalReceived:
            continue
        if not data:
            return
        await write(data)


async def handle(process):
    loop = asyncio.get_running_loop()
    env = {k: v for k, v in process.env.items() if k in args.accept_env}
    term = process.get_terminal_type()
    size = process.get_terminal_size()[:2] if term else None
    if process.subsystem:
        # AsyncSSH hands every subsystem but sftp (its own SFTP server, below)
        # to this handler after accepting the request: say so and end.
        process.stderr.write(f"unknown subsystem {process.subsystem}\n".encode())
        process.exit(1)
        return
    agent_path = process.channel.get_agent_path()
    if agent_path:
        # AsyncSSH made the forwarded agent's socket as root: hand it to the user, as sshd does.
        entry = serverkit.pwd.getpwnam(args.user)
        for path in (os.path.dirname(agent_path), agent_path):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        env["SSH_AUTH_SOCK"] = agent_path
    child, master = serverkit.spawn(args.user, process.command, env, pty_size=size,
                                    subsystem=process.subsystem)
    if master is None:
        async def write_stdin(data):
            await loop.run_in_executor(None, child.stdin.write, data)
            await loop.run_in_executor(None, child.stdin.flush)

        async def read_into(stream, out):
            while data := await loop.run_in_executor(None, stream.read1, 65536):
                out.write(data)
                await out.drain()

        async def feed():
            await copy_to_child(process, write_stdin, lambda w, h: None)
            child.stdin.close()
        feeder = asyncio.ensure_future(feed())
        await asyncio.gather(read_into(child.stdout, process.stdout), read_into(child.stderr, process.stderr))
        feeder.cancel()
    else:
        async def write_master(data):
            await loop.run_in_executor(None, os.write, master, data)

        async def read_master():
            while True:
                try:
                    data = await loop.run_in_executor(None, os.read, master, 65536)
                except OSError:  # EIO: every holder of the pty's other side has closed it
                    return
                if not data:
                    return
                process.stdout.write(data)
                await process.stdout.drain()
        feeder = asyncio.ensure_future(copy_to_child(process, write_master,
                                                     lambda w, h: serverkit.set_winsize(master, w, h)))
        await read_master()
        feeder.cancel()
        os.close(master)
    status = await loop.run_in_executor(None, child.wait)
    if status < 0:
        process.exit_with_signal(signal.Signals(-status).name.removeprefix("SIG"))
    else:
        process.exit(status)


async def main():
    await asyncssh.create_server(
        Server, "127.0.0.1", args.port, server_host_keys=[args.host_key], process_factory=handle,
        allow_pty=True, agent_forwarding=True, encoding=None, config=(), line_editor=False,
        # AsyncSSH's own SFTP server, its paths rooted in the user's home.
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=HOME))
    print(f"asyncssh {asyncssh.__version__} listening on 127.0.0.1 port {args.port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
