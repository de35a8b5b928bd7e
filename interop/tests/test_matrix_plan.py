"""The interop matrix's plan and its certificate material (no root, no servers):
which cells the quick and full matrices hold, which server process each
certificate case connects to, and the certificates made for a run."""

import datetime
import re
import subprocess

import pytest

from matrix import more_peers, peers
from matrix.__main__ import QUICK_CASES, QUICK_PEER_CASES, plan
from matrix.cases import CASES, CERT_CASES, REFUSAL_CASES, RUNNERS
from matrix.clients import REFERENCE_CLIENTS, REFERENCE_SERVERS, SERVERS, TRANSPORTS


class Endpoint:
    def __init__(self, name):
        self.name = name


def endpoints():
    names = [*SERVERS, *(s + peers.HOST_CERT_SUFFIX for s in REFERENCE_SERVERS if s != "dropbear")]
    return {n: Endpoint(n) for n in names}, {n: Endpoint(f"relay-to-{n}") for n in names}


def cells(quick):
    servers, relays = endpoints()
    return {spec[:4]: spec for spec in plan(quick, servers, relays)}


def test_every_case_has_a_runner_and_the_quick_cases_are_cases():
    assert set(RUNNERS) == set(CASES)
    assert set(QUICK_CASES) <= set(CASES)
    assert "cert-refused" in REFUSAL_CASES


def test_the_quick_matrix_holds_the_certificate_cases_for_sshq_to_sshqd_over_both_transports():
    quick = cells(quick=True)
    for transport in ("tcp", "quic"):
        for case in ("cert-login", "cert-refused", "host-cert"):
            assert quick[("sshq", "sshqd", transport, case)][5] is None
    reference = [k for k in quick if k[0] in REFERENCE_CLIENTS and k[1] in REFERENCE_SERVERS]
    assert len(reference) == len(TRANSPORTS) * len(REFERENCE_CLIENTS) * len(REFERENCE_SERVERS) * len(QUICK_CASES)


def test_the_quick_matrix_meets_each_added_peer_with_sshq_only():
    quick = cells(quick=True)
    added = [k for k in quick if k[0] in more_peers.CLIENTS or k[1] in more_peers.SERVERS]
    assert added and all(k[0] == "sshq" or k[1] == "sshqd" for k in added)
    assert {k[3] for k in added} == set(QUICK_PEER_CASES)
    for peer in more_peers.CLIENTS:
        assert (peer, "sshqd", "tcp", "exec") in quick
    for peer in more_peers.SERVERS:
        assert ("sshq", peer, "tcp", "exec") in quick


def test_the_full_matrix_pairs_every_added_peer_with_sshq_and_the_references_but_not_each_other():
    full = cells(quick=False)
    pairs = {k[:2] for k in full}
    for peer in more_peers.CLIENTS:
        assert {(peer, s) for s in REFERENCE_SERVERS} <= pairs
        assert not any((peer, s) in pairs for s in more_peers.SERVERS)
    for peer in more_peers.SERVERS:
        assert {(c, peer) for c in REFERENCE_CLIENTS} <= pairs
    # Every added peer runs exec over TCP with sshq, and every n/a says why.
    assert all(full[(p, "sshqd", "tcp", "exec")][5] is None for p in more_peers.CLIENTS)
    assert all(full[("sshq", p, "tcp", "exec")][5] is None for p in more_peers.SERVERS)
    assert all(spec[5] is None or len(spec[5]) > 20 for spec in full.values())


def test_putty_has_no_remote_forward_over_the_tunnel_only():
    full = cells(quick=False)
    assert full[("putty", "sshqd", "quic-tunnel", "forward-R")][5] is not None
    assert full[("putty", "sshqd", "tcp", "forward-R")][5] is None


def test_certificate_cells_apply_to_every_pair_but_dropbear_and_host_cert_uses_the_twins():
    full = cells(quick=False)
    for (client, server, transport, case), (*_, endpoint, why) in full.items():
        if case not in CERT_CASES or client in more_peers.CLIENTS or server in more_peers.SERVERS:
            continue
        if transport == "quic" and (client, server) != ("sshq", "sshqd"):
            assert why and endpoint is None  # only sshq -> sshqd meets over QUIC
            continue
        if "dropbear" in (client, server):
            assert why and "certificates" in why
            assert endpoint is None
            continue
        assert why is None, (client, server, transport, case)
        instance = server + peers.HOST_CERT_SUFFIX if case == "host-cert" else server
        assert endpoint.name == (f"relay-to-{instance}" if transport == "quic-tunnel" else instance)
    # Every other case keeps the servers that present no host certificate.
    assert all(spec[4] is None or not spec[4].name.endswith(peers.HOST_CERT_SUFFIX)
               for key, spec in full.items() if key[3] != "host-cert")


def certificate(path):
    r = subprocess.run(["ssh-keygen", "-L", "-f", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_make_certificates_signs_a_valid_and_an_expired_user_certificate_and_a_host_certificate(
        tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    keys.mkdir()
    peers.keygen(keys / "host", "test-host")
    monkeypatch.setattr(peers, "KEYS", keys)
    run = tmp_path / "run"
    run.mkdir()
    certs = peers.make_certificates(run)

    valid, expired = certificate(certs / "valid/id-cert.pub"), certificate(certs / "expired/id-cert.pub")
    assert (certs / "valid/id").read_bytes() == (certs / "expired/id").read_bytes()
    for text in (valid, expired):
        assert "ssh-ed25519-cert-v01@openssh.com user certificate" in text
        assert re.search(rf"Principals:\s*\n\s*{peers.MATRIX_USER}\n", text)
    assert "Valid: from 2020-01-01T00:00:00 to 2020-01-02T00:00:00" in expired
    start, end = re.search(r"Valid: from (\S+) to (\S+)", valid).groups()
    now = datetime.datetime.now()
    assert datetime.datetime.fromisoformat(start) < now < datetime.datetime.fromisoformat(end)

    host = certificate(certs / "host-cert.pub")
    assert "host certificate" in host
    assert re.search(r"Principals:\s*\n\s*127\.0\.0\.1\n", host)
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(keys / "host.pub")], capture_output=True,
                                 text=True).stdout.split()[1]
    assert f"Public key: ED25519-CERT {fingerprint}" in host  # the matrix host key, certified
    ca = subprocess.run(["ssh-keygen", "-lf", str(certs / "host_ca.pub")], capture_output=True,
                        text=True).stdout.split()[1]
    assert re.search(rf"Signing CA: ED25519 {re.escape(ca)}", host)


@pytest.mark.parametrize("case", sorted(CERT_CASES))
def test_certificate_cases_are_columns_of_the_report(case):
    assert CASES.index(case) < CASES.index("kex")  # kex, with its text, stays the last column
