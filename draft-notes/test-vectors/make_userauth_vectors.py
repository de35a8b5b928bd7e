#!/usr/bin/env python3
"""Writes userauth.txt and frames.txt from the draft's definitions alone.

This script deliberately shares no code with sshq: it encodes the frames
and the userauth signed data from draft-sshq-transport.md (Sections 6 to
9) using only Python's standard library and `cryptography` for
Ed25519. quic-transport/tests/draft_vectors.rs then recomputes every
field with sshq's own code, so the two implementations check each other.

Usage: python3 make_userauth_vectors.py   (rewrites both files in place)
Ed25519 signatures are deterministic (RFC 8032), so reruns give the same
bytes.
"""

import hashlib
import struct
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

HERE = Path(__file__).resolve().parent

# Message numbers (Section 6.2 of the draft).
USERAUTH_REQUEST = 50
USERAUTH_FAILURE = 51
USERAUTH_SUCCESS = 52
GLOBAL_REQUEST = 80
REQUEST_SUCCESS = 81
CHANNEL_OPEN = 90
CHANNEL_OPEN_CONFIRMATION = 91
CHANNEL_DATA = 94
CHANNEL_REQUEST = 98
CHANNEL_SUCCESS = 99


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def string(value) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return u32(len(value)) + value


def boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def frame(kind: int, payload: bytes = b"") -> bytes:
    body = bytes([kind]) + payload
    return u32(len(body)) + body


def write(name: str, header: str, fields) -> None:
    lines = [header.rstrip("\n")]
    for key, value in fields:
        lines.append(f"{key} = {value.hex()}")
    (HERE / name).write_text("\n".join(lines) + "\n")


def userauth() -> None:
    seed = hashlib.sha256(b"sshq userauth test vector").digest()
    private = Ed25519PrivateKey.from_private_bytes(seed)
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    algorithm = "ssh-ed25519"
    user = "alice"
    service = "ssh-connection"
    label = b"EXPORTER-sshq-userauth"
    exporter = bytes([0x11]) * 32

    # RFC 8709: string "ssh-ed25519" || string(32-byte key)
    key_blob = string(algorithm) + string(public)
    signed_data = (
        string(exporter)
        + bytes([USERAUTH_REQUEST])
        + string(user)
        + string(service)
        + string("publickey")
        + boolean(True)
        + string(algorithm)
        + string(key_blob)
    )
    raw_signature = private.sign(signed_data)
    signature_blob = string(algorithm) + string(raw_signature)
    request = frame(
        USERAUTH_REQUEST,
        string(user)
        + string(service)
        + string("publickey")
        + boolean(True)
        + string(algorithm)
        + string(key_blob)
        + string(signature_blob),
    )
    write(
        "userauth.txt",
        USERAUTH_HEADER,
        [
            ("ed25519_seed", seed),
            ("ed25519_public_key", public),
            ("public_key_blob", key_blob),
            ("exporter_label", label),
            ("exporter", exporter),
            ("user", user.encode()),
            ("service", service.encode()),
            ("algorithm", algorithm.encode()),
            ("signed_data", signed_data),
            ("ed25519_signature", raw_signature),
            ("signature_blob", signature_blob),
            ("userauth_request_frame", request),
        ],
    )


def frames() -> None:
    write(
        "frames.txt",
        FRAMES_HEADER,
        [
            ("channel_open_session", frame(CHANNEL_OPEN, string("session"))),
            ("channel_open_confirmation", frame(CHANNEL_OPEN_CONFIRMATION)),
            (
                "channel_request_exec_echo_hi",
                frame(CHANNEL_REQUEST, string("exec") + boolean(True) + string("echo hi")),
            ),
            ("channel_success", frame(CHANNEL_SUCCESS)),
            ("channel_data_hi", frame(CHANNEL_DATA, b"hi\n")),
            (
                "channel_request_exit_status_42",
                frame(CHANNEL_REQUEST, string("exit-status") + boolean(False) + u32(42)),
            ),
            ("userauth_success", frame(USERAUTH_SUCCESS)),
            (
                "userauth_failure_publickey",
                frame(USERAUTH_FAILURE, string("publickey") + boolean(False)),
            ),
            (
                "global_request_tcpip_forward",
                frame(
                    GLOBAL_REQUEST,
                    string("tcpip-forward") + boolean(True) + string("localhost") + u32(0),
                ),
            ),
            ("request_success_bound_port_40000", frame(REQUEST_SUCCESS, u32(40000))),
        ],
    )


USERAUTH_HEADER = """\
# sshq test vector: publickey user authentication (draft-sshq-transport, Sections 7 and 15.2).
# All values hex; one `name = hex` per line; `#` starts a comment line.
# Written by make_userauth_vectors.py; checked by quic-transport/tests/draft_vectors.rs.
#
# Inputs:
#   ed25519_seed = SHA-256("sshq userauth test vector"), the RFC 8032 private key
#   exporter     = 32 bytes of 0x11, standing in for
#                  TLS-Exporter("EXPORTER-sshq-userauth", "", 32) of a real connection
#   user = "alice", service = "ssh-connection", algorithm = "ssh-ed25519"
# Derived:
#   public_key_blob = string("ssh-ed25519") || string(ed25519_public_key)      (51 bytes)
#   signed_data     = string(exporter) || byte 50 || string(user) || string(service)
#                     || string("publickey") || boolean TRUE || string(algorithm)
#                     || string(public_key_blob)                              (148 bytes)
#   ed25519_signature = Ed25519-Sign(ed25519_seed, signed_data)               (64 bytes)
#   signature_blob  = string("ssh-ed25519") || string(ed25519_signature)      (83 bytes)
#   userauth_request_frame = uint32 length || byte 50 || string(user) || string(service)
#                     || string("publickey") || boolean TRUE || string(algorithm)
#                     || string(public_key_blob) || string(signature_blob)   (203 bytes)
"""

FRAMES_HEADER = """\
# sshq test vector: frames (draft-sshq-transport, Sections 6 to 9 and 15.3).
# All values hex; one `name = hex` per line; `#` starts a comment line.
# Each value is one complete frame: uint32 length (of type + payload) || byte type || payload.
# Written by make_userauth_vectors.py; checked by quic-transport/tests/draft_vectors.rs.
#
# channel_open_session              CHANNEL_OPEN "session"
# channel_open_confirmation         CHANNEL_OPEN_CONFIRMATION
# channel_request_exec_echo_hi      CHANNEL_REQUEST "exec", want reply TRUE, command "echo hi"
# channel_success                   CHANNEL_SUCCESS
# channel_data_hi                   CHANNEL_DATA "hi\\n"
# channel_request_exit_status_42    CHANNEL_REQUEST "exit-status", want reply FALSE, 42
# userauth_success                  USERAUTH_SUCCESS
# userauth_failure_publickey        USERAUTH_FAILURE "publickey", partial success FALSE
# global_request_tcpip_forward      GLOBAL_REQUEST "tcpip-forward", want reply TRUE, "localhost", port 0
# request_success_bound_port_40000  REQUEST_SUCCESS, bound port 40000
"""

if __name__ == "__main__":
    userauth()
    frames()
