#!/usr/bin/env python3
"""Round trips to the first output byte, over QUIC and TCP, through a delay relay.

A userspace relay on loopback adds a fixed one-way delay to every UDP
datagram (QUIC) or TCP chunk (SSH over TCP) in each direction, so the round
trip is known. The time from starting `sshq ... 'echo hi'` to the first
output byte, divided by that round trip, is the number of round trips a
session costs. Writes interop/results/rtt-setup/{results.json,summary.md}.

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


class UdpRelay(asyncio.DatagramProtocol):
    """Forwards datagrams between one client and the server, each after `delay` s."""

    def __init__(self, server, delay):
        self.server, self.delay, self.client = server, delay, None
        self.transport = self.upstream = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        loop = asyncio.get_running_loop()
        if addr == self.server:
            if self.client:
                loop.call_later(self.delay, self.transport.sendto, data, self.client)
        else:
            self.client = addr
            loop.call_later(self.delay, self.transport.sendto, data, self.server)


async def tcp_relay(listen_port, server_port, delay):
    async def pipe(reader, writer):
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                loop.call_later(delay, writer.write, data)
        finally:
            loop.call_later(delay + 0.001, writer.close)

    async def handle(reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", server_port)
        sock = up_writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", listen_port)


async def first_byte_ms(cmd):
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    await proc.stdout.read(1)
    first = (time.perf_counter() - start) * 1000
    await proc.wait()
    return first, proc.returncode


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
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp}/host\nAuthorizedKeysFile {tmp}/authorized_keys\n")
        server = subprocess.Popen([str(SSHQD), "-D", "-e", "-f", str(tmp / "sshqd_config")], stderr=subprocess.DEVNULL)
        await asyncio.sleep(0.5)
        delay = args.rtt_ms / 2000
        loop = asyncio.get_running_loop()
        udp, _ = await loop.create_datagram_endpoint(lambda: UdpRelay(("127.0.0.1", port), delay),
                                                     local_addr=("127.0.0.1", relay_port))
        tcp = await tcp_relay(relay_port, port, delay)
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
             "| transport | median ms | round trips |", "|---|---:|---:|"]
    for transport, r in results.items():
        lines.append(f"| sshq {transport} -> sshqd | {r['first_byte_ms_median']} | {r['round_trips']} |")
    lines += ["", "Whole process, `sshq ... 'echo hi'`, including process start and key loading; "
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
