#!/usr/bin/env python3
"""Writes passwords.txt from the draft's definitions alone.

Like make_userauth_vectors.py, this shares no code with sshq: it builds the
password and keyboard-interactive frames of draft Section 7.2 and the
partial-success USERAUTH_FAILURE of Section 7.4 with Python's standard
library. quic-transport/tests/draft_vectors.rs recomputes every frame with
sshq's encoder and decodes each back, so each checks the other.

Usage: python3 make_password_vectors.py   (rewrites the file in place;
the output is deterministic)
"""

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent

USERAUTH_REQUEST = 50
USERAUTH_FAILURE = 51
USERAUTH_INFO_REQUEST = 60
USERAUTH_INFO_RESPONSE = 61

FALSE, TRUE = b"\x00", b"\x01"


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def string(value) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return u32(len(value)) + value


def frame(kind: int, payload: bytes = b"") -> bytes:
    body = bytes([kind]) + payload
    return u32(len(body)) + body


def request_head(user: str, method: str) -> bytes:
    return string(user) + string("ssh-connection") + string(method)


def main() -> None:
    # The exporter value of the other userauth vectors (Sections 15.2, 15.6).
    exporter = bytes([0x11]) * 32
    user, password, code = "alice", "correct horse battery staple", "123456"

    password_request = frame(
        USERAUTH_REQUEST,
        request_head(user, "password") + string(exporter) + FALSE + string(password),
    )
    kbd_request = frame(
        USERAUTH_REQUEST,
        request_head(user, "keyboard-interactive")
        + string(exporter)
        + string(b"")  # language tag (deprecated, empty)
        + string(b""),  # submethods
    )
    prompts = [("Password: ", False), ("Verification code: ", True)]
    info_request = frame(
        USERAUTH_INFO_REQUEST,
        string("sshq")  # name
        + string("Two factors")  # instruction
        + string(b"")  # language tag
        + u32(len(prompts))
        + b"".join(string(text) + (TRUE if echo else FALSE) for text, echo in prompts),
    )
    info_response = frame(
        USERAUTH_INFO_RESPONSE, u32(2) + string(password) + string(code)
    )
    partial_failure = frame(USERAUTH_FAILURE, string("password") + TRUE)
    failure = frame(
        USERAUTH_FAILURE, string("publickey,password,keyboard-interactive") + FALSE
    )
    none_request = frame(USERAUTH_REQUEST, request_head(user, "none"))

    fields = [
        ("exporter", exporter),
        ("user", user.encode()),
        ("password", password.encode()),
        ("code", code.encode()),
        ("password_request_frame", password_request),
        ("keyboard_interactive_request_frame", kbd_request),
        ("info_request_frame", info_request),
        ("info_response_frame", info_response),
        ("partial_failure_frame", partial_failure),
        ("failure_frame", failure),
        ("none_request_frame", none_request),
    ]
    header = """# sshq test vector: passwords, keyboard-interactive and partial success
# (draft-sshq-transport, Sections 7.2, 7.4 and 15.7).
# All values hex; one `name = hex` per line; `#` starts a comment line.
# Written by make_password_vectors.py; checked by quic-transport/tests/draft_vectors.rs.
#
# exporter: E as in userauth.txt (32 x 0x11); user "alice".
# password_request_frame: USERAUTH_REQUEST "password": E, FALSE, the password.
# keyboard_interactive_request_frame: USERAUTH_REQUEST "keyboard-interactive": E,
#   empty language tag, empty submethods.
# info_request_frame: USERAUTH_INFO_REQUEST name "sshq", instruction "Two factors",
#   empty language tag, prompts "Password: " (echo FALSE) and "Verification code: " (echo TRUE).
# info_response_frame: USERAUTH_INFO_RESPONSE with the password and the code.
# partial_failure_frame: USERAUTH_FAILURE "password", partial success TRUE
#   (AuthenticationMethods publickey,password after the key succeeded).
# failure_frame: USERAUTH_FAILURE "publickey,password,keyboard-interactive", FALSE.
# none_request_frame: USERAUTH_REQUEST "none" (answered with USERAUTH_FAILURE)."""
    lines = [header]
    for key, value in fields:
        lines.append(f"{key} = {value.hex()}")
    (HERE / "passwords.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
