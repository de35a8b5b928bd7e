// An sshd-like server built on Node's ssh2 package, for the interop matrix.
//
// Public-key logins for one user (keys in their ~/.ssh/authorized_keys, read
// at each login); session channels run a command, a shell or the sftp
// subsystem (OpenSSH's sftp-server) as that user, with accepted environment
// names; direct-tcpip (ssh -L, -D) and tcpip-forward (ssh -R) are served. No
// pty: Node has none without a native add-on (node-pty), so pty requests are
// refused.
//
//   node server.js --port P --host-key FILE --user NAME [--accept-env NAME]...
'use strict';

const fs = require('fs');
const net = require('net');
const { execFileSync, spawn } = require('child_process');
const { Server, utils } = require('ssh2');

const SFTP_SERVER = '/usr/lib/openssh/sftp-server';

function args() {
  const a = { acceptEnv: [] };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === '--port') a.port = Number(value);
    else if (flag === '--host-key') a.hostKey = value;
    else if (flag === '--user') a.user = value;
    else if (flag === '--accept-env') a.acceptEnv.push(value);
    else throw new Error(`unknown argument ${flag}`);
  }
  return a;
}

const opts = args();
// uid, gid and home of the login user, from the passwd database.
const [uid, gid, home] = execFileSync('getent', ['passwd', opts.user], { encoding: 'utf8' })
  .trim().split(':').filter((_, i) => i === 2 || i === 3 || i === 5).map((v, i) => (i < 2 ? Number(v) : v));

function authorizedKeys() {
  let text = '';
  try { text = fs.readFileSync(`${home}/.ssh/authorized_keys`, 'utf8'); } catch (e) { return []; }
  return text.split('\n').filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => utils.parseKey(l)).filter((k) => !(k instanceof Error));
}

function run(stream, argv, env) {
  const child = spawn(argv[0], argv.slice(1), {
    cwd: home, uid, gid,
    env: { HOME: home, USER: opts.user, LOGNAME: opts.user, SHELL: '/bin/sh', PATH: '/usr/local/bin:/usr/bin:/bin', ...env },
  });
  stream.pipe(child.stdin);
  child.stdout.pipe(stream, { end: false });
  child.stderr.pipe(stream.stderr, { end: false });
  child.on('error', () => { stream.exit(127); stream.end(); });
  child.on('close', (code, signal) => {
    if (signal) stream.exit(signal.replace(/^SIG/, ''), false, '');
    else stream.exit(code);
    stream.end();
  });
}

function onSession(accept) {
  const session = accept();
  const env = {};
  session.on('env', (accept, reject, info) => {
    if (opts.acceptEnv.includes(info.key)) { env[info.key] = info.val; if (accept) accept(); } else if (reject) reject();
  });
  session.on('pty', (accept, reject) => reject && reject());
  session.on('exec', (accept, reject, info) => run(accept(), ['/bin/sh', '-c', info.command], env));
  session.on('shell', (accept) => run(accept(), ['/bin/sh', '-l'], env));
  session.on('subsystem', (accept, reject, info) => {
    if (info.name === 'sftp') run(accept(), [SFTP_SERVER], env); else reject();
  });
}

function onClient(client) {
  client.on('authentication', (ctx) => {
    if (ctx.method !== 'publickey' || ctx.username !== opts.user) return ctx.reject(['publickey']);
    const key = authorizedKeys().find((k) => k.type === ctx.key.algo && k.getPublicSSH().equals(ctx.key.data));
    if (!key) return ctx.reject(['publickey']);
    if (!ctx.signature) return ctx.accept(); // the client asks whether this key would do
    if (key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return ctx.reject(['publickey']);
    return ctx.accept();
  });
  client.on('ready', () => {
    client.on('session', onSession);
    client.on('tcpip', (accept, reject, info) => {
      const sock = net.connect(info.destPort, info.destIP, () => {
        const stream = accept();
        sock.pipe(stream).pipe(sock);
      });
      sock.on('error', () => reject());
    });
    client.on('request', (accept, reject, name, info) => {
      if (name !== 'tcpip-forward') { if (reject) reject(); return; }
      const listener = net.createServer((sock) => {
        client.forwardOut(info.bindAddr, listener.address().port, sock.remoteAddress, sock.remotePort, (err, ch) => {
          if (err) { sock.destroy(); return; }
          sock.pipe(ch).pipe(sock);
        });
      });
      listener.on('error', () => reject && reject());
      listener.listen(info.bindPort, info.bindAddr, () => accept && accept(listener.address().port));
      client.on('close', () => listener.close());
    });
  });
  client.on('error', () => {});
}

new Server({ hostKeys: [fs.readFileSync(opts.hostKey)] }, onClient).listen(opts.port, '127.0.0.1', () => {
  console.log(`node ssh2 server listening on 127.0.0.1 port ${opts.port}`);
});
