"""An ssh-like client built on AsyncSSH, for the interop matrix.

Takes ssh's flags (peers/sshargs.py): runs a command (or a subsystem with -s,
or nothing with -N), with a pty (-t), environment (-o SetEnv), agent
forwarding (-A), -L/-R/-D forwarding, a ProxyCommand (the QUIC tunnel), and
host keys checked against -o UserKnownHostsFile (which may hold
@cert-authority lines). -v prints the negotiated key exchange as OpenSSH's
"kex: algorithm:" line. Exits with the remote exit status, 255 on failure.
"""

import asyncio
import os
import signal
import sys
import termios
import threading
import tty

import asyncssh
import asyncssh.connection

import sshargs

PROG = "asyncssh-client"
negotiated = []


def record_kex(original):
    # AsyncSSH keeps the chosen key exchange private; its choice passes
    # through get_kex, so note the name there (for the kex case's -v line).
    def wrapper(conn, alg):
        negotiated.append(alg.decode())
        return original(conn, alg)
    return wrapper


asyncssh.connection.get_kex = record_kex(asyncssh.connection.get_kex)


async def pump_stdin(writer):
    # A daemon thread reads stdin: asyncio.run would wait for an executor
    # thread still blocked in read() when the remote side has finished.
    loop = asyncio.get_running_loop()
    chunks = asyncio.Queue()

    def read():
        while True:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            loop.call_soon_threadsafe(chunks.put_nowait, data)
            if not data:
                return
    threading.Thread(target=read, daemon=True).start()
    while data := await chunks.get():
        writer.write(data)
        await writer.drain()
    writer.write_eof()


async def pump_out(reader, fd):
    while data := await reader.read(65536):
        os.write(fd, data)


async def session(conn, args):
    term = None
    if args.want_tty:
        term = "xterm"
    kwargs = dict(term_type=term, term_size=sshargs.terminal_size() if term else None,
                  env=args.set_env or (), encoding=None)
    if args.subsystem:
        proc = await conn.create_process(subsystem=args.command, **kwargs)
    else:
        proc = await conn.create_process(args.command or None, **kwargs)
    if term:
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGWINCH, lambda: proc.change_terminal_size(*sshargs.terminal_size()))
    asyncio.ensure_future(pump_stdin(proc.stdin))
    await asyncio.gather(pump_out(proc.stdout, 1), pump_out(proc.stderr, 2))
    await proc.wait_closed()
    return proc.exit_status if proc.exit_status is not None and proc.exit_status >= 0 else 255


async def main(args):
    options = dict(port=args.port, username=args.user, client_keys=[args.identity] if args.identity else None,
                   known_hosts=args.known_hosts or None, config=(), agent_path=None,
                   agent_forwarding=args.forward_agent, preferred_auth="publickey")
    if args.forward_agent and os.environ.get("SSH_AUTH_SOCK"):
        options["agent_path"] = os.environ["SSH_AUTH_SOCK"]
    if args.proxy_command:
        options["proxy_command"] = args.proxy_argv()
    try:
        conn = await asyncssh.connect(args.host, **options)
    except (OSError, asyncssh.Error) as e:
        sshargs.fail(PROG, f"{type(e).__name__}: {e}")
    if args.verbose and negotiated:
        print(f"debug1: kex: algorithm: {negotiated[0]}", file=sys.stderr, flush=True)
    async with conn:
        for lh, lp, h, p in args.local_forwards:
            await conn.forward_local_port(lh, lp, h, p)
        for lh, lp, h, p in args.remote_forwards:
            await conn.forward_remote_port(lh, lp, h, p)
        for lh, lp in args.dynamic_forwards:
            await conn.forward_socks(lh, lp)
        if args.no_command:
            await conn.wait_closed()
            return 0
        return await session(conn, args)


if __name__ == "__main__":
    parsed = sshargs.parse(sys.argv[1:])
    saved = None
    if parsed.want_tty and os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
    try:
        status = asyncio.run(main(parsed))
    finally:
        if saved:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    sys.stdout.flush()
    # The stdin reader may still block in a worker thread: leave without joining it.
    os._exit(status)
