#!/usr/bin/env python3
"""Round trips to the first output byte, over QUIC and TCP, through a delay relay.

A userspace relay on loopback adds a fixed one-way delay to every UDP
datagram (QUIC) or TCP chunk (SSH over TCP) in each direction, so the round
trip is known. The time from starting `sshq ... 'echo hi'` to the first
output byte, divided by that round trip, is the number of round trips a
session costs.

Reattach: a reattachable session prints a line every 50 ms; the relay then
cuts its connection (drops every packet of the flows it has, as when a
network goes away, while new flows pass), so the client loses it and
reconnects. The time from the client's "reconnect attempt N: connecting"
(-v) to the first byte of output the server held meanwhile, divided by the
round trip, is what a reattach costs once the client tries again.

Writes interop/results/rtt-setup/{results.json,summary.md}.

This is a quick stand-in for the TUN link lab (no netem on these machines):
it delays whole datagrams and TCP reads, does not drop or reorder, and runs
on one loopback interface.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sshqlab.keys import bench_user, keygen
from sshqlab.paths import ROOT, SSHQ, SSHQD
from sshqlab.ports import free_port


class Cut:
    """Which flows the relays have cut: those that existed at the last `cut()`."""

    def __init__(self):
        self.generation = 0

    def cut(self):
        self.generation += 1


class UdpRelay(asyncio.DatagramProtocol):
    """Forwards datagrams between the latest client and the server, each
    after `delay` s; drops those of client addresses seen before a cut."""

    def __init__(self, server, delay, cut):
        self.server, self.delay, self.client, self.cut = server, delay, None, cut
        self.seen = {}  # client address -> cut generation when first seen
        self.transport = self.upstream = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        loop = asyncio.get_running_loop()
        if addr == self.server:
            if self.client and self.seen.get(self.client) == self.cut.generation:
                loop.call_later(self.delay, self.transport.sendto, data, self.client)
        elif self.seen.setdefault(addr, self.cut.generation) == self.cut.generation:
            self.client = addr
            loop.call_later(self.delay, self.transport.sendto, data, self.server)


async def tcp_relay(listen_port, server_port, delay, cut):
    async def pipe(reader, writer, generation):
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                # A cut connection stays open but carries nothing more.
                if generation == cut.generation:
                    loop.call_later(delay, writer.write, data)
        finally:
            loop.call_later(delay + 0.001, writer.close)

    async def handle(reader, writer):
        generation = cut.generation
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server_port)
        sock = up_writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pipe(reader, up_writer, generation), pipe(up_reader, writer, generation))

    return await asyncio.start_server(handle, "127.0.0.1", listen_port)


async def first_byte_ms(cmd):
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    await proc.stdout.read(1)
    first = (time.perf_counter() - start) * 1000
    await proc.wait()
    return first, proc.returncode


async def reattach_ms(cmd, cut, timeout=60):
    """Starts a reattachable session printing a line every 50 ms, cuts its
    connection once output flows, and returns the ms from the client's last
    reconnect attempt to the first byte of held output it shows."""
    proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    attempts, chunks = [], []  # perf_counter times of "reconnect attempt" lines, of output
    log = []

    async def watch_stderr():
        while line := await proc.stderr.readline():
            log.append(line.decode(errors="replace").rstrip())
            if b"reconnect attempt" in line:
                attempts.append(time.perf_counter())

    async def watch_stdout():
        while await proc.stdout.read(65536):
            chunks.append(time.perf_counter())

    watchers = [asyncio.create_task(watch_stderr()), asyncio.create_task(watch_stdout())]
    try:
        async with asyncio.timeout(timeout):
            while not chunks:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1)
            cut.cut()
            # Output in flight at the cut arrives long before the client
            # gives the connection up; what follows its attempt is held output.
            while True:
                await asyncio.sleep(0.005)
                if attempts and (after := [t for t in chunks if t > attempts[-1]]):
                    return (after[0] - attempts[-1]) * 1000
    except TimeoutError:
        tail = "\n".join(log[-15:])
        raise SystemExit(f"rtt-setup: no reattach within {timeout} s ({len(attempts)} attempts); "
                         f"the client said:\n{tail}") from None
    finally:
        for watcher in watchers:
            watcher.cancel()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def run(args):
    tmp = Path(tempfile.mkdtemp(prefix="sshq-rtt."))
    server = None
    try:
        for name in ("host", "user"):
            keygen(tmp / name)
        shutil.copy(tmp / "user.pub", tmp / "authorized_keys")
        os.chmod(tmp, 0o755)
        os.chmod(tmp / "authorized_keys", 0o644)
        port, relay_port = free_port(), free_port()
        (tmp / "sshqd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp}/host\nAuthorizedKeysFile {tmp}/authorized_keys\n"
            # The cut sessions need not be held for long.
            "ClientReattachTimeout 60\n")
        server = subprocess.Popen([str(SSHQD), "-D", "-e", "-f", str(tmp / "sshqd_config")], stderr=subprocess.DEVNULL)
        await asyncio.sleep(0.5)
        delay = args.rtt_ms / 2000
        loop = asyncio.get_running_loop()
        cut = Cut()
        udp, _ = await loop.create_datagram_endpoint(lambda: UdpRelay(("127.0.0.1", port), delay, cut),
                                                     local_addr=("127.0.0.1", relay_port))
        tcp = await tcp_relay(relay_port, port, delay, cut)
        # A user whose shell reads no rc files: root's bash rc here is slow
        # and would add a constant to every sample.
        user = bench_user()
        base = [str(SSHQ), "-i", str(tmp / "user"), "-o", f"UserKnownHostsFile={tmp}/known_hosts",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes", "-p", str(relay_port),
                f"{user}@127.0.0.1"]
        results = {}
        for transport in ("quic", "tcp"):
            cmd = base[:1] + ["-o", f"Transport={transport}"] + base[1:] + ["echo hi"]
            await first_byte_ms(cmd)  # warm-up, records the host key
            samples = []
            for _ in range(args.runs):
                ms, code = await first_byte_ms(cmd)
                if code != 0:
                    raise SystemExit(f"rtt-setup: sshq over {transport} failed (exit {code})")
                samples.append(ms)
            med = statistics.median(samples)
            results[transport] = {"first_byte_ms_median": round(med, 1), "round_trips": round(med / args.rtt_ms, 2),
                                  "samples_ms": [round(s, 1) for s in samples]}
            # A lost connection noticed within ~3 s on either transport.
            reattach = (base[:1] + ["-v", "-tt", "-o", f"Transport={transport}", "-o", "QuicIdleTimeout=3",
                                    "-o", "QuicKeepAlive=1", "-o", "ServerAliveInterval=1",
                                    "-o", "ServerAliveCountMax=2"]
                        + base[1:] + ["while :; do echo tick; sleep 0.05; done"])
            samples = [await reattach_ms(reattach, cut) for _ in range(args.runs)]
            med = statistics.median(samples)
            results[transport].update({
                "reattach_ms_median": round(med, 1), "reattach_round_trips": round(med / args.rtt_ms, 2),
                "reattach_samples_ms": [round(s, 1) for s in samples]})
        udp.close()
        tcp.close()
    finally:
        if server:
            server.terminate()
            server.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"rtt_ms": args.rtt_ms, "runs": args.runs, **results}, indent=2) + "\n")
    lines = [f"# Time to first output byte through a {args.rtt_ms} ms RTT relay", "",
             "| transport | session: median ms | round trips | reattach: median ms | round trips |",
             "|---|---:|---:|---:|---:|"]
    for transport, r in results.items():
        lines.append(f"| sshq {transport} -> sshqd | {r['first_byte_ms_median']} | {r['round_trips']} | "
                     f"{r['reattach_ms_median']} | {r['reattach_round_trips']} |")
    lines += ["", "Session: the whole process, `sshq ... 'echo hi'`, including process start and key loading. "
              "Reattach: from the client's `reconnect attempt N: connecting` to the first byte of the output "
              "the server held while the connection was cut (key loading and signing included). "
              f"{args.runs} runs each. Rerun: `interop/run rtt-setup --rtt-ms {args.rtt_ms}`."]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rtt-ms", type=float, default=100.0)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "interop/results/rtt-setup"))
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
