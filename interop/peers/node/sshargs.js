// The OpenSSH-style command line the matrix's Node client accepts (see
// interop/peers/sshargs.py for why: the matrix and OpenSSH's sftp/scp -S
// drive every client with ssh's own flags). Unknown -o options are ignored.
'use strict';

function forwardSpec(spec) {
  const parts = spec.split(':');
  if (parts.length === 3) parts.unshift('127.0.0.1');
  if (parts.length !== 4) throw new Error(`bad forwarding spec ${spec}`);
  return { bindHost: parts[0], bindPort: Number(parts[1]), host: parts[2], port: Number(parts[3]) };
}

function parse(argv) {
  const o = { port: 22, user: process.env.USER || 'root', identity: '', knownHosts: '', proxyCommand: '',
              env: {}, tty: false, noCommand: false, subsystem: false, verbose: false, local: [], remote: [] };
  const rest = [];
  const takesValue = 'pilLRDoFJcmbeEBIOQSWw';
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    if (rest.length || word === '-' || !word.startsWith('-')) { rest.push(word); continue; }
    if (word === '--') { rest.push(...argv.slice(i + 1)); break; }
    const flag = word[1];
    let value = word.slice(2);
    if (takesValue.includes(flag)) {
      if (!value && i + 1 < argv.length) value = argv[++i];
      apply(o, flag, value);
    } else {
      for (const f of word.slice(1)) apply(o, f, '');
    }
  }
  if (!rest.length) throw new Error('usage: [options] [user@]host [command]');
  const at = rest[0].lastIndexOf('@');
  if (at >= 0) { o.user = rest[0].slice(0, at); o.host = rest[0].slice(at + 1); } else { o.host = rest[0]; }
  o.command = rest.slice(1).join(' ');
  return o;
}

function apply(o, flag, value) {
  switch (flag) {
    case 'p': o.port = Number(value); break;
    case 'i': o.identity = value; break;
    case 'l': o.user = value; break;
    case 't': o.tty = true; break;
    case 'N': o.noCommand = true; break;
    case 's': o.subsystem = true; break;
    case 'v': o.verbose = true; break;
    case 'L': o.local.push(forwardSpec(value)); break;
    case 'R': o.remote.push(forwardSpec(value)); break;
    case 'o': {
      // -oKey=Value or -oKey Value (OpenSSH's sftp passes the second form)
      const m = /^([^=\s]+)[=\s]\s*(.*)$/.exec(value);
      if (!m) return;
      const key = m[1].toLowerCase(), val = m[2].trim();
      if (key === 'userknownhostsfile') o.knownHosts = val;
      else if (key === 'proxycommand') o.proxyCommand = val;
      else if (key === 'port') o.port = Number(val);
      else if (key === 'user') o.user = val;
      else if (key === 'setenv') {
        for (const item of val.split(/\s+/)) {
          const eq = item.indexOf('=');
          if (eq > 0) o.env[item.slice(0, eq)] = item.slice(eq + 1);
        }
      }
      break;
    }
    default: break; // -x, -T, -F file, ...: nothing this client does differently
  }
}

module.exports = { parse };
