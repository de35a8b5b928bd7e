"""Triage of failing cells: whose failure is it?

A cell between sshq (or sshqd) and a peer is compared with the same peer,
case and transport against OpenSSH 9.2 and 10.0 in the same run. When the
peer fails against OpenSSH too, the failure is the peer's own limitation
(with those cells as evidence); when OpenSSH passes where sshq failed, sshq
is suspect. A cell without sshq on either side is between a peer and a
reference implementation. NOTES add what a person found out, by cell name.
"""

import re

REFERENCES = ("openssh-9.2", "openssh-10.0")
SSHQ_SIDES = ("sshq", "sshqd")

# Findings worth more than the automatic comparison: (regex on the cell name, verdict, explanation).
NOTES = [
    (r"^go-xcrypto-.*-host-cert$", "peer limitation",
     "x/crypto/ssh's knownhosts reads the host pattern '*' of '@cert-authority * <CA>' as '*:22' (a pattern "
     "without brackets means port 22), so it finds no authority for 127.0.0.1 on another port; OpenSSH "
     "matches '*' against '[127.0.0.1]:port'. The same failure against OpenSSH's servers is the evidence."),
    (r"^(sshq|openssh-[0-9.]+)-asyncssh-.*-scp$", "peer limitation",
     "AsyncSSH's SFTP server ends the channel without an exit-status (checked by hand: `ssh -s ... sftp` "
     "against it exits 255), so the ssh program under OpenSSH's scp exits 255 and scp reports failure (exit 1) "
     "although the file went through; OpenSSH's sftp ignores that status, so the sftp cells pass. The same "
     "failure with OpenSSH's ssh as scp's transport is the evidence."),
    (r"^go-xcrypto-dropbear-", "not sshq",
     "Dropbear 2022.83 dies on an assertion (rsa.c:164, key != NULL; in its log) when a client lists rsa-sha2-* "
     "host key algorithms before ssh-ed25519, as x/crypto/ssh does, and the server has no RSA host key: the "
     "connection ends in the handshake (EOF). Go's client works with sshqd and OpenSSH."),
    (r"^dropbear-paramiko-", "not sshq",
     "Paramiko's server stops the key exchange with MessageOrderError 'Expecting packet from (21,), got 30' "
     "(in its log) against dbclient 2022.83, which sends its key-exchange packet before Paramiko expects it; "
     "dbclient works with sshqd and OpenSSH, and Paramiko's server with sshq and OpenSSH."),
    (r"^dropbear-asyncssh-", "not sshq",
     "AsyncSSH's server disconnects dbclient 2022.83 right after the key exchange ('Key exchange not in "
     "progress', protocol error, in AsyncSSH's debug log), and dbclient then exits 0 with no output; dbclient "
     "works with sshqd and OpenSSH, and AsyncSSH's server with sshq and OpenSSH."),
    (r"^sshq-asyncssh-.*-pty$", "sshq suspect",
     "With a pty, sshq first asks for the subsystem sshq-session@sshq.dev (reattachable sessions). AsyncSSH "
     "accepts every subsystem but sftp at the request level and leaves it to the application, which then "
     "ends the channel (exit 1, 'unknown subsystem'). sshq takes the granted request as a reattachable "
     "session, reads EOF where the SESSION frame should be, and exits 255 ('reattachable session: "
     "unexpected answer None') instead of falling back to a plain pty session on a new channel. OpenSSH's "
     "ssh (no such subsystem) passes against the same server."),
]


def cell_name(c):
    return f"{c['client']}-{c['server']}-{c['transport']}-{c['case']}"


def triage(records):
    """Adds "triage": {verdict, explanation, evidence} to every failing record (in place)."""
    by_key = {(c["client"], c["server"], c["transport"], c["case"]): c for c in records}
    for c in records:
        if c["result"] != "fail":
            continue
        name = cell_name(c)
        note = next(((verdict, text) for pattern, verdict, text in NOTES if re.search(pattern, name)), None)
        evidence, verdict, explanation = [], None, None
        if c["client"] in SSHQ_SIDES or c["server"] in SSHQ_SIDES:
            # Swap sshq's side for each reference implementation, keep the peer's.
            swaps = [(ref, c["server"]) if c["client"] in SSHQ_SIDES else (c["client"], ref) for ref in REFERENCES]
            others = [by_key.get((cl, sv, c["transport"], c["case"])) for cl, sv in swaps]
            others = [o for o in others if o is not None and o["result"] != "n/a"]
            evidence = [f"{cell_name(o)}: {o['result']}" for o in others]
            if others and all(o["result"] == "fail" for o in others):
                verdict = "peer limitation"
                explanation = "the peer fails this case the same way against OpenSSH: " + "; ".join(
                    f"{cell_name(o)} ({o['detail'][:120]})" for o in others)
            elif others and all(o["result"] == "pass" for o in others):
                verdict = "sshq suspect"
                explanation = "the same peer passes this case against OpenSSH (" + ", ".join(
                    cell_name(o) for o in others) + "): look at sshq's side first"
            else:
                verdict = "unclear"
                explanation = "OpenSSH gives no clear comparison: " + ("; ".join(evidence) or "no such cells")
        elif c["transport"] == "quic-tunnel" and "sshq proxy" in c["detail"]:
            # Neither end is sshq, but the tunnel is: sshq proxy and sshqd's QuicRelay.
            verdict = "sshq suspect"
            explanation = ("the tunnel itself reported the failure (sshq proxy / sshqd QuicRelay), not either end: "
                           "look at the relay first")
        else:
            verdict = "not sshq"
            explanation = "between a peer and a reference implementation; sshq is on neither side"
        if note:
            verdict, explanation = note[0], note[1] + (f" (automatic comparison: {'; '.join(evidence)})"
                                                       if evidence else "")
        c["triage"] = {"verdict": verdict, "explanation": explanation, "evidence": evidence}
    return records
