"""The matrix's report (matrix.json against its schema, matrix.md, matrix.html), its comparison with the
previous run and its triage, and the pieces of the added peers that run without root: the OpenSSH
key conversion for TinySSH, fingerprints for PuTTY's -hostkey, the helpers' ssh-style argument parser,
and the inetd wrapper (a real listener and a real child per connection)."""

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from matrix import more_peers, report
from matrix.triage import triage
from sshqlab.ports import free_port

INTEROP = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((INTEROP / "matrix/matrix.schema.json").read_text())
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None),
         "integer": int, "number": (int, float)}


def validate(value, schema, where="$"):
    """The subset of JSON Schema that matrix.schema.json uses: type, enum, required, properties,
    additionalProperties (false or a schema) and items. Raises AssertionError naming the place."""
    types = schema.get("type")
    if types is not None:
        names = types if isinstance(types, list) else [types]
        ok = any(isinstance(value, TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in names)
        assert ok, f"{where}: {value!r} is not {names}"
        if value is None:
            return
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing {key}"
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                validate(item, props[key], f"{where}.{key}")
            elif extra is False:
                raise AssertionError(f"{where}: unexpected key {key}")
            elif isinstance(extra, dict):
                validate(item, extra, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            validate(item, schema["items"], f"{where}[{i}]")


def cell(client, server, transport, case, result, detail="checked", **extra):
    return dict(client=client, server=server, transport=transport, case=case, result=result, detail=detail,
                seconds=0.5 if result != "n/a" else 0, **extra)


def sample_records():
    return [
        cell("sshq", "sshqd", "tcp", "exec", "pass", log="logs/passed/sshq-sshqd-tcp.log"),
        cell("sshq", "sshqd", "tcp", "kex", "pass", "mlkem768x25519-sha256", log="logs/passed/sshq-sshqd-tcp.log"),
        cell("putty", "sshqd", "tcp", "exec", "pass", log="logs/passed/putty-sshqd-tcp.log"),
        cell("putty", "sshqd", "tcp", "env", "n/a", "plink 0.78 has no command-line option to send environment"),
        # putty fails sftp against sshqd and both OpenSSH servers: the peer's limitation.
        cell("putty", "sshqd", "tcp", "sftp", "fail", "exit 1", log="logs/putty-sshqd-tcp-sftp.log"),
        cell("putty", "openssh-9.2", "tcp", "sftp", "fail", "exit 1"),
        cell("putty", "openssh-10.0", "tcp", "sftp", "fail", "exit 1"),
        # sshq fails a case that OpenSSH's clients pass against the same server: sshq suspect.
        cell("sshq", "paramiko", "tcp", "pty", "fail", "size missing", log="logs/sshq-paramiko-tcp-pty.log"),
        cell("openssh-9.2", "paramiko", "tcp", "pty", "pass"),
        cell("openssh-10.0", "paramiko", "tcp", "pty", "pass"),
        cell("dropbear", "paramiko", "tcp", "exec", "fail", "exit 1"),
    ]


def test_triage_compares_the_peer_against_openssh():
    records = triage(sample_records())
    verdicts = {(r["client"], r["server"], r["case"]): r["triage"]["verdict"] for r in records if "triage" in r}
    assert verdicts[("putty", "sshqd", "sftp")] == "peer limitation"
    assert verdicts[("sshq", "paramiko", "pty")] == "sshq suspect"
    assert verdicts[("dropbear", "paramiko", "exec")] == "not sshq"
    assert all("triage" not in r for r in records if r["result"] != "fail")
    suspect = next(r for r in records if r["client"] == "sshq" and r["server"] == "paramiko")
    assert "openssh-9.2-paramiko-tcp-pty: pass" in suspect["triage"]["evidence"]


def test_compare_lists_cells_that_started_and_stopped_passing():
    previous = {"meta": {"commit": "abc1234", "date": "2026-12-01 00:00:00 UTC", "quick": False},
                "cells": [cell("sshq", "sshqd", "tcp", "exec", "fail"), cell("putty", "sshqd", "tcp", "exec", "pass"),
                          cell("sshq", "sshqd", "tcp", "gone-case", "pass")]}
    records = sample_records()
    records[2] = cell("putty", "sshqd", "tcp", "exec", "fail", "exit 255")
    changes = report.compare(previous, records)
    assert [(c["client"], c["case"], c["before"]) for c in changes["started_passing"]] == [("sshq", "exec", "fail")]
    assert [(c["client"], c["case"], c["now"]) for c in changes["stopped_passing"]] == [("putty", "exec", "fail")]
    assert changes["gone_cells"] == 1 and changes["new_cells"] == len(records) - 2
    assert report.compare(None, records) is None


def test_write_produces_schema_valid_json_markdown_and_a_static_html_page(tmp_path, monkeypatch):
    previous = {"meta": {"commit": "abc1234", "date": "2026-12-01 00:00:00 UTC", "quick": False},
                "cells": [cell("sshq", "sshqd", "tcp", "exec", "fail")]}
    monkeypatch.setattr(report, "previous_run", lambda: previous)
    meta = {"date": "2026-12-08 00:00:00 UTC", "commit": "def5678", "quick": False, "only": None,
            "workers": 3, "seconds": 12.5}
    peers = {"sshq": {"roles": ["client"], "version": "sshq 0.1.0"},
             "sshqd": {"roles": ["server"], "version": "sshqd 0.1.0"},
             "putty": {"roles": ["client"], "version": "plink: Release 0.78"},
             "paramiko": {"roles": ["client", "server"], "version": "paramiko 5.1.0"}}
    report.write(tmp_path, meta, triage(sample_records()), peers)

    document = json.loads((tmp_path / "matrix.json").read_text())
    validate(document, SCHEMA)
    assert document["meta"]["schema_version"] == report.SCHEMA_VERSION
    assert document["changes"]["started_passing"][0]["case"] == "exec"

    md = (tmp_path / "matrix.md").read_text()
    assert "**putty** (client)" in md and "as client: 1 passed, 3 failed, 1 n/a" in md
    assert "peer limitation" in md and "1 cells started passing" in md

    page = (tmp_path / "matrix.html").read_text()
    assert page.count("<table") >= 2 and "<script" not in page.lower()
    # A coloured cell linking to its log, the filters (radio buttons and CSS rules for them).
    assert re.search(r'<td class="k k-sftp fail peer"[^>]*><a href="logs/putty-sshqd-tcp-sftp.log">', page)
    assert re.search(r'<td class="k k-exec pass"[^>]*><a href="logs/passed/sshq-sshqd-tcp.log">', page)
    assert 'id="p-putty"' in page and 'label for="p-putty"' in page and "#p-putty:checked~main" in page
    assert 'id="k-sftp"' in page and "#k-sftp:checked~main .k:not(.k-sftp)" in page
    assert 'id="p-openssh-9_2"' not in page or "#p-openssh-9_2:checked" in page
    assert "mlkem768x25519-sha256" in page and "as client: 1 passed, 3 failed, 1 n/a" in page


def test_the_committed_matrix_json_follows_the_schema():
    committed = INTEROP / "results/matrix/matrix.json"
    document = json.loads(committed.read_text())
    if document.get("meta", {}).get("schema_version") != report.SCHEMA_VERSION:
        pytest.skip("the committed matrix.json predates schema version 2 (rerun interop/run matrix)")
    validate(document, SCHEMA)
    assert {"putty", "tinyssh", "libssh", "go-xcrypto", "asyncssh", "paramiko", "node-ssh2"} <= set(document["peers"])
    assert all("triage" in c for c in document["cells"] if c["result"] == "fail")
    for c in document["cells"]:
        if c.get("log"):
            assert (committed.parent / c["log"]).exists(), c["log"]


def test_tinyssh_key_conversion_and_putty_fingerprint_agree_with_ssh_keygen(tmp_path):
    key = tmp_path / "host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public, secret = more_peers.openssh_ed25519_secret(key)
    blob_public = __import__("base64").b64decode(key.with_suffix(".pub").read_text().split()[1])[-32:]
    assert public == blob_public and len(secret) == 64 and secret[32:] == public
    expected = subprocess.run(["ssh-keygen", "-lf", str(key.with_suffix(".pub"))], capture_output=True,
                              text=True, check=True).stdout.split()[1]
    assert more_peers.fingerprint(key.with_suffix(".pub").read_text()) == expected


def test_the_helpers_parse_ssh_and_sftp_style_command_lines():
    sys.path.insert(0, str(INTEROP / "peers"))
    try:
        import sshargs
    finally:
        sys.path.pop(0)
    # As OpenSSH's sftp runs its ssh program (-S): options in both -o forms, -s, -l, then the subsystem.
    a = sshargs.parse(["-oForwardX11 no", "-oPort=2222", "-i", "/k", "-o", "UserKnownHostsFile=/kh", "-l", "me",
                       "-s", "--", "127.0.0.1", "sftp"])
    assert (a.port, a.identity, a.known_hosts, a.user, a.host, a.subsystem, a.command) == \
        (2222, "/k", "/kh", "me", "127.0.0.1", True, "sftp")
    b = sshargs.parse(["-tN", "-L", "1234:127.0.0.1:80", "-R", "0.0.0.0:5:h:6", "-o", "SetEnv=A=1 B=2", "u@h",
                       "echo", "hi"])
    assert b.want_tty and b.no_command and b.user == "u" and b.command == "echo hi"
    assert b.local_forwards == [("127.0.0.1", 1234, "127.0.0.1", 80)] and b.remote_forwards == [("0.0.0.0", 5, "h", 6)]
    assert b.set_env == {"A": "1", "B": "2"}


def test_inetd_runs_one_child_per_connection_on_the_socket():
    port = free_port()
    inetd = subprocess.Popen([sys.executable, str(INTEROP / "peers/inetd.py"), "--port", str(port), "--",
                              "/bin/sh", "-c", "read line; echo \"got $line from $TCPREMOTEIP\""],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 10
        while True:
            try:
                conns = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2)]
                break
            except OSError:
                assert time.time() < deadline, "inetd.py never listened"
                time.sleep(0.05)
        for i, conn in enumerate(conns):
            conn.sendall(f"hello-{i}\n".encode())
        for i, conn in enumerate(conns):
            with conn:
                got = b""
                while chunk := conn.recv(100):
                    got += chunk
                assert got == f"got hello-{i} from 127.0.0.1\n".encode()
    finally:
        inetd.terminate()
        inetd.wait(timeout=10)
