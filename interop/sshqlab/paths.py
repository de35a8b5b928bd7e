"""Where the repository and its built binaries are."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
INTEROP = ROOT / "interop"
SSHQ = ROOT / "target/release/sshq"
SSHQD = ROOT / "target/release/sshqd"
# The link emulator (interop/linkem); SSHQ_LINKEM names another build of it.
LINKEM = Path(os.environ.get("SSHQ_LINKEM", ROOT / "target/release/sshq-linkem"))
