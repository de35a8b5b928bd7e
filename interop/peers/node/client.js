// An ssh-like client built on Node's ssh2 package, for the interop matrix.
//
// Takes ssh's flags (sshargs.js): runs a command (or a subsystem with -s, or
// nothing with -N), with a pty (-t, window changes sent), environment
// (-o SetEnv), -L and -R forwarding and a ProxyCommand (the QUIC tunnel). The
// host key must match the one -o UserKnownHostsFile holds for [host]:port
// (ssh2 leaves the check to its caller: hostVerifier). -v prints the
// negotiated key exchange as OpenSSH's "kex: algorithm:" line. Exits with the
// remote exit status, 255 when connecting or logging in fails.
'use strict';

const fs = require('fs');
const net = require('net');
const { spawn } = require('child_process');
const { Duplex } = require('stream');
const { Client } = require('ssh2');
const { parse } = require('./sshargs');

function fail(message) {
  process.stderr.write(`node-ssh2-ssh: ${message}\n`);
  process.exit(255);
}

function exitWith(code) {
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

// The base64 key blobs known_hosts holds for this host and port (plain host patterns only).
function knownKeys(file, host, port) {
  const name = port === 22 ? host : `[${host}]:${port}`;
  let text = '';
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) { return []; }
  return text.split('\n').map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 3 && !f[0].startsWith('@') && f[0].split(',').includes(name))
    .map((f) => f[2]);
}

function proxySocket(o) {
  const text = o.proxyCommand.replace(/%h/g, o.host).replace(/%p/g, String(o.port));
  // "exec", as ssh does: no shell stays behind holding a copy of the pipes.
  const child = spawn('/bin/sh', ['-c', `exec ${text}`], { stdio: ['pipe', 'pipe', 'inherit'] });
  return Duplex.from({ readable: child.stdout, writable: child.stdin });
}

function localForward(conn, f) {
  net.createServer((sock) => {
    conn.forwardOut(sock.remoteAddress, sock.remotePort, f.host, f.port, (err, stream) => {
      if (err) { sock.destroy(); return; }
      sock.pipe(stream).pipe(sock);
    });
  }).listen(f.bindPort, f.bindHost);
}

function session(conn, o) {
  const opts = { env: o.env };
  if (o.tty) {
    const cols = process.stdout.columns || 80;
    const rows = process.stdout.rows || 24;
    opts.pty = { term: 'xterm', cols, rows };
  }
  const started = (err, stream) => {
    if (err) fail(err.message);
    let status = 255;
    if (o.tty && process.stdin.isTTY) {
      process.stdin.setRawMode(true);
      // The size is the terminal's (stdout's; a tty stdin stream has none).
      process.stdout.on('resize', () => stream.setWindow(process.stdout.rows, process.stdout.columns, 0, 0));
    }
    process.stdin.pipe(stream);
    stream.pipe(process.stdout);
    stream.stderr.pipe(process.stderr);
    stream.on('exit', (code) => { status = typeof code === 'number' ? code : 255; });
    stream.on('close', () => { conn.end(); exitWith(status); });
  };
  if (o.subsystem) conn.subsys(o.command, started);
  else if (o.command) conn.exec(o.command, opts, started);
  else conn.shell(opts.pty || false, { env: o.env }, started);
}

function main() {
  let o;
  try { o = parse(process.argv.slice(2)); } catch (e) { fail(e.message); }
  const conn = new Client();
  const config = {
    host: o.host, port: o.port, username: o.user, readyTimeout: 30000,
    privateKey: fs.readFileSync(o.identity),
    hostVerifier: (key) => {
      const blob = key.toString('base64');
      const known = knownKeys(o.knownHosts, o.host, o.port);
      if (known.includes(blob)) return true;
      process.stderr.write(known.length ? `node-ssh2-ssh: host key mismatch for ${o.host}:${o.port}\n`
        : `node-ssh2-ssh: no known host key for ${o.host}:${o.port}\n`);
      return false;
    },
  };
  if (o.proxyCommand) config.sock = proxySocket(o);
  conn.on('handshake', (negotiated) => {
    if (o.verbose) process.stderr.write(`debug1: kex: algorithm: ${negotiated.kex}\n`);
  });
  conn.on('error', (err) => fail(err.message));
  conn.on('ready', () => {
    o.local.forEach((f) => localForward(conn, f));
    conn.on('tcp connection', (info, accept, reject) => {
      const rule = o.remote.find((f) => f.bindPort === info.destPort);
      if (!rule) { reject(); return; }
      const sock = net.connect(rule.port, rule.host, () => {
        const stream = accept();
        sock.pipe(stream).pipe(sock);
      });
      sock.on('error', () => reject());
    });
    let pending = o.remote.length;
    const go = () => { if (!o.noCommand) session(conn, o); };
    o.remote.forEach((f) => conn.forwardIn(f.bindHost, f.bindPort, (err) => {
      if (err) fail(`-R ${f.bindHost}:${f.bindPort}: ${err.message}`);
      if (--pending === 0) go();
    }));
    if (!o.remote.length) go();
  });
  conn.on('close', () => exitWith(255));
  conn.connect(config);
}

main();
