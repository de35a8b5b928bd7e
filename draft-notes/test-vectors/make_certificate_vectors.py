#!/usr/bin/env python3
"""Writes certificates.txt from the draft's definitions alone.

Like make_userauth_vectors.py, this shares no code with sshq: it builds
OpenSSH certificates from PROTOCOL.certkeys, the HOST_CERTIFICATE frames
of draft Section 5.5 and a certificate USERAUTH_REQUEST of Section 7.5,
with Python's standard library and `cryptography` for Ed25519.
quic-transport/tests/draft_vectors.rs recomputes every field with
sshq's code (and ssh-key's certificate encoder), so each checks the other.

Usage: python3 make_certificate_vectors.py   (rewrites the file in place)
Ed25519 signatures are deterministic (RFC 8032), so reruns give the same
bytes.
"""

import hashlib
import struct
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = Path(__file__).resolve().parent

USERAUTH_REQUEST = 50
HOST_CERTIFICATE_REQUEST = 192
HOST_CERTIFICATE = 193

CERT_TYPE_USER = 1
CERT_TYPE_HOST = 2


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def string(value) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return u32(len(value)) + value


def frame(kind: int, payload: bytes = b"") -> bytes:
    body = bytes([kind]) + payload
    return u32(len(body)) + body


def keypair(label: str):
    seed = hashlib.sha256(label.encode()).digest()
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return seed, private, public


def key_blob(public: bytes) -> bytes:
    return string("ssh-ed25519") + string(public)


def signature_blob(private, data: bytes) -> bytes:
    return string("ssh-ed25519") + string(private.sign(data))


def certificate(subject_public, ca_private, ca_public, *, nonce, serial, kind,
                key_id, principals, valid_after, valid_before, extensions):
    """An ssh-ed25519-cert-v01@openssh.com blob (PROTOCOL.certkeys)."""
    extension_octets = b"".join(
        string(name) + string(b"") for name in sorted(extensions)
    )
    to_sign = (
        string("ssh-ed25519-cert-v01@openssh.com")
        + string(nonce)
        + string(subject_public)
        + u64(serial)
        + u32(kind)
        + string(key_id)
        + string(b"".join(string(p) for p in principals))
        + u64(valid_after)
        + u64(valid_before)
        + string(b"")  # critical options: none
        + string(extension_octets)
        + string(b"")  # reserved
        + string(key_blob(ca_public))
    )
    return to_sign + string(signature_blob(ca_private, to_sign))


def main() -> None:
    ca_seed, ca_private, ca_public = keypair("sshq certificate authority test vector")
    host_seed, _, host_public = keypair("sshq host key test vector")
    user_seed, user_private, user_public = keypair("sshq userauth test vector")
    valid_after, valid_before = 1_700_000_000, 4_102_444_800

    host_certificate = certificate(
        host_public, ca_private, ca_public,
        nonce=bytes([0x22]) * 32, serial=7, kind=CERT_TYPE_HOST, key_id="host",
        principals=["server.example"], valid_after=valid_after,
        valid_before=valid_before, extensions=[],
    )
    user_certificate = certificate(
        user_public, ca_private, ca_public,
        nonce=bytes([0x33]) * 32, serial=8, kind=CERT_TYPE_USER, key_id="alice@example",
        principals=["alice"], valid_after=valid_after, valid_before=valid_before,
        extensions=["permit-pty"],
    )

    exporter = bytes([0x11]) * 32
    algorithm = "ssh-ed25519-cert-v01@openssh.com"
    fields_up_to_key = (
        string("alice") + string("ssh-connection") + string("publickey") + b"\x01"
        + string(algorithm) + string(user_certificate)
    )
    signed_data = string(exporter) + bytes([USERAUTH_REQUEST]) + fields_up_to_key
    user_signature = signature_blob(user_private, signed_data)
    request = frame(USERAUTH_REQUEST, fields_up_to_key + string(user_signature))

    fields = [
        ("ca_seed", ca_seed),
        ("ca_public_key", ca_public),
        ("host_seed", host_seed),
        ("host_public_key", host_public),
        ("host_certificate", host_certificate),
        ("host_certificate_request_frame", frame(HOST_CERTIFICATE_REQUEST)),
        ("host_certificate_frame", frame(HOST_CERTIFICATE, string(host_certificate))),
        ("host_certificate_none_frame", frame(HOST_CERTIFICATE, string(b""))),
        ("user_seed", user_seed),
        ("user_certificate", user_certificate),
        ("exporter", exporter),
        ("user_cert_signed_data", signed_data),
        ("user_cert_signature_blob", user_signature),
        ("user_cert_userauth_request_frame", request),
    ]
    header = """# sshq test vector: certificates (draft-sshq-transport, Sections 5.5, 7.5 and 15.6).
# All values hex; one `name = hex` per line; `#` starts a comment line.
# Written by make_certificate_vectors.py; checked by quic-transport/tests/draft_vectors.rs.
#
# Keys: Ed25519 seeds are SHA-256 of "sshq certificate authority test vector",
# "sshq host key test vector" and "sshq userauth test vector" (the user key of userauth.txt).
# host_certificate: ssh-ed25519-cert-v01@openssh.com, nonce 32 x 0x22, serial 7, type 2 (host),
#   key id "host", principals ["server.example"], valid 1700000000 to 4102444800,
#   no critical options, no extensions, signed by the CA.
# user_certificate: as above but nonce 32 x 0x33, serial 8, type 1 (user), key id "alice@example",
#   principals ["alice"], extension permit-pty.
# user_cert_*: a USERAUTH_REQUEST for "alice" with the user certificate, exporter value 32 x 0x11;
#   the algorithm names the certificate, the signature blob names ssh-ed25519."""
    lines = [header]
    for key, value in fields:
        lines.append(f"{key} = {value.hex()}")
    (HERE / "certificates.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
