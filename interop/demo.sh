#!/usr/bin/env bash
# The built-in demo: sshqd on a free loopback port with host and user keys
# generated into a temporary directory, then real sessions through it with
# sshq and with OpenSSH's ssh. Says what happened at each step.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SSHQ=$ROOT/target/release/sshq
SSHQD=$ROOT/target/release/sshqd
T=$(mktemp -d /tmp/sshq-demo.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user=$(id -un)
ssh-keygen -q -t ed25519 -N '' -C demo-host -f "$T/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C demo-user -f "$T/user"
cp "$T/user.pub" "$T/authorized_keys"
cat >"$T/sshqd_config" <<EOC
ListenAddress 127.0.0.1
Port $port
HostKey $T/host_ed25519
AuthorizedKeysFile $T/authorized_keys
Subsystem sftp /usr/lib/openssh/sftp-server
Transports quic,tcp
EOC
echo "== sshqd: listening on 127.0.0.1:$port, TCP and UDP (QUIC) (config $T/sshqd_config)"
"$SSHQD" -D -e -f "$T/sshqd_config" 2>"$T/sshqd.log" &
PIDS+=($!)
for _ in $(seq 50); do ss -ltn "( sport = :$port )" | grep -q LISTEN && break; sleep 0.1; done

opts=(-i "$T/user" -o "UserKnownHostsFile=$T/known_hosts" -o StrictHostKeyChecking=accept-new -o BatchMode=yes -p "$port")
ok=0; total=0
step() { # description, command...
  local what=$1; shift; total=$((total+1))
  echo; echo "== $what"; echo "\$ ${*/#$ROOT\//}"
  if "$@"; then ok=$((ok+1)); echo "-> ok"; else echo "-> FAILED (exit $?)"; fi
}
step "sshq runs a command over TCP (first contact: the host key is recorded)" \
  "$SSHQ" "${opts[@]}" -o Transport=tcp "$user@127.0.0.1" 'echo "hello from $(hostname) as $USER, SSH_CONNECTION=$SSH_CONNECTION"'
step "sshq passes the remote exit status through (expect 42)" \
  bash -c '"$@" "exit 42"; [ $? = 42 ]' _ "$SSHQ" "${opts[@]}" -o Transport=tcp "$user@127.0.0.1"
step "sshq carries 16 MiB of random bytes through cat, byte for byte" \
  bash -c 'head -c 16M /dev/urandom >"$0/blob"; [ "$("$@" cat <"$0/blob" | sha256sum)" = "$(sha256sum <"$0/blob")" ]' "$T" "$SSHQ" "${opts[@]}" -o Transport=tcp "$user@127.0.0.1"
step "sshq allocates a pty with -tt" \
  "$SSHQ" "${opts[@]}" -tt -o Transport=tcp "$user@127.0.0.1" 'tty; stty size'
step "sshq runs the same over QUIC: the host key recorded over TCP is the QUIC identity too" \
  "$SSHQ" "${opts[@]}" -o Transport=quic -o StrictHostKeyChecking=yes "$user@127.0.0.1" 'echo "over QUIC: SSH_CONNECTION=$SSH_CONNECTION"'
step "sshq -v with Transport=auto (the default) says which transport won and the key exchange" \
  bash -c '"$@" true 2>&1 | grep -E "Transport=auto|key exchange"' _ "$SSHQ" "${opts[@]}" -v "$user@127.0.0.1"
step "sshq carries 16 MiB through cat over QUIC" \
  bash -c '[ "$("$@" cat <"$0/blob" | sha256sum)" = "$(sha256sum <"$0/blob")" ]' "$T" "$SSHQ" "${opts[@]}" -o Transport=quic "$user@127.0.0.1"
step "OpenSSH's ssh talks to sshqd" \
  ssh "${opts[@]}" "$user@127.0.0.1" 'echo "OpenSSH client -> sshqd: $SSH_CLIENT"'
step "OpenSSH's sftp uses sshqd's sftp subsystem" \
  bash -c 'printf "put %s/host_ed25519.pub /tmp/sshq-demo-sftp.$$\nget /tmp/sshq-demo-sftp.$$ %s/back\nrm /tmp/sshq-demo-sftp.$$\n" "$0" "$0" >"$0/batch"; sftp -q -b "$0/batch" "$@" >/dev/null && cmp "$0/host_ed25519.pub" "$0/back"' "$T" -i "$T/user" -o "UserKnownHostsFile=$T/known_hosts" -o BatchMode=yes -P "$port" "$user@127.0.0.1"
echo
echo "== sshqd's log:"; sed 's/^/   /' "$T/sshqd.log" | tail -n 20
echo
echo "demo: $ok passed, $((total-ok)) failed"
[ "$ok" = "$total" ]
