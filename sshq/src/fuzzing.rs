//! Entry points for the fuzz targets in `fuzz/` (not part of the API).
//!
//! Each function feeds arbitrary bytes to one of the parsers of text or
//! bytes that sshq and sshqd read, and checks what must hold for every
//! input; a panic here is a bug in the parser. They call the narrowest
//! entry points, so when a parser is renamed or reshaped only this file
//! changes, not the fuzz targets.

use std::path::Path;
use std::sync::OnceLock;

use sshq_core::known_hosts::{KnownHosts, Lookup};
use sshq_core::ssh_key::{Certificate, PublicKey};
use sshq_quic::fuzzing::run_ready;
use sshq_quic::stream_socket::DatagramReader;

use crate::client::config::ClientOptions;
use crate::forward::socks::{self, Parse};
use crate::forward::spec::Forward;
use crate::forward::DynamicForward;
use crate::server::udp_relay::quic_gate::{ClientVerdict, QuicGate};

/// `direct-udp@sshq` as sshqd reads it from the channel: the target
/// (`string host || uint32 port`), then datagrams in the stream framing
/// (`uint16 length || payload`). The datagrams go through the
/// `AllowUdpRelay quic` gate, alternately as the client's and as the
/// target's, until the gate ends the relay.
pub fn udp_relay(data: &[u8]) {
    let mut input = data;
    let Some(target) = run_ready(crate::server::udp_relay::read_target(&mut input)) else {
        panic!("reading the target from memory waited");
    };
    if let Ok(target) = &target {
        assert!(!target.host.is_empty() && target.host.len() <= 255 && target.port != 0);
    }
    let mut reader = DatagramReader::new();
    let mut gate = QuicGate::new();
    let mut answered = false;
    for from_client in [true, false].into_iter().cycle() {
        let Some(next) = run_ready(reader.next(&mut input)) else {
            panic!("reading datagrams from memory waited");
        };
        let Ok(Some(datagram)) = next else {
            return;
        };
        if from_client {
            match gate.check_client_datagram(&datagram) {
                ClientVerdict::Refuse(_) => {
                    assert!(
                        !answered,
                        "a datagram was refused after the target answered"
                    );
                    return;
                }
                verdict => assert!(!answered || verdict == ClientVerdict::Relay),
            }
        } else {
            let passed = gate.check_target_datagram(&datagram);
            assert!(!answered || passed, "the gate closed again");
            answered |= passed;
        }
    }
}

/// A SOCKS4/4a/5 request (`-D`), parsed by the pure parser and read by
/// the stream handshake built on it: both must agree, a complete request
/// must not depend on the bytes after it, and no more bytes may be asked
/// for than the longest request has.
pub fn socks_request(data: &[u8]) {
    let parsed = socks::parse_request(data);
    match &parsed {
        Ok(Parse::Done { request, len }) => {
            assert!(*len <= data.len());
            let alone = socks::parse_request(data.get(..*len).unwrap_or_default());
            assert!(
                matches!(&alone, Ok(Parse::Done { request: r, len: l }) if r == request && l == len),
                "a request depends on the bytes after it"
            );
        }
        Ok(Parse::NeedMore { bytes, .. }) => assert!((1..=600).contains(bytes)),
        Err(_) => {}
    }
    let mut stream = tokio::io::join(data, Vec::new());
    let Some(read) = run_ready(socks::read_request(&mut stream)) else {
        panic!("the SOCKS handshake over memory waited");
    };
    match (parsed, read) {
        (Ok(Parse::Done { request, .. }), Ok(read)) => assert_eq!(request, read),
        (Ok(Parse::NeedMore { .. }), Err(socks::SocksError::Io(_))) => {}
        (Err(_), Err(e)) => assert!(!matches!(e, socks::SocksError::Io(_))),
        (parsed, read) => panic!("the parser ({parsed:?}) and the handshake ({read:?}) disagree"),
    }
}

/// The ed25519 key of the draft's userauth vector: the seed corpora of
/// known_hosts and authorized_keys name it, so the matching paths are
/// reached.
fn vector_key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let line = "ssh-ed25519 \
                    AAAAC3NzaC1lZDI1NTE5AAAAIBi2msD7CCOto2q6+AK2841ao4IHc6bAL8EyR2U4SRdQ";
        match PublicKey::from_openssh(line) {
            Ok(key) => key,
            Err(e) => panic!("the vector key does not parse: {e}"),
        }
    })
}

/// A known_hosts file: every line parsed, then looked up as `ssh` does for
/// a host on the default and another port, and for the names the file
/// itself lists.
pub fn known_hosts(data: &[u8]) {
    let file = KnownHosts::from_content("known_hosts", data);
    let lines = data.split(|&b| b == b'\n').count();
    assert!(file.entries().len() + file.invalid_lines().len() <= lines);
    let key = vector_key();
    for (host, port) in [("host.example", 22), ("10.0.0.1", 2222)] {
        let _ = file.lookup(host, port, key);
        let _ = file.known_key_types(host, port);
        let _ = file.other_names(host, port, key);
    }
    for entry in file.entries().iter().take(16) {
        let _ = entry.marker();
        let Some(name) = entry.hosts().split(',').next() else {
            continue;
        };
        let name = name.trim_start_matches('!');
        let _ = entry.matches_host(name);
        if let Lookup::Found(at) = file.lookup_name(name, entry.key()) {
            assert!(at.line >= 1 && at.line <= lines);
        }
    }
}

/// An authorized_keys file, checked for a key as sshqd checks a login.
pub fn authorized_keys(data: &[u8]) {
    use crate::server::auth::key_options;
    let text = String::from_utf8_lossy(data);
    let file = Path::new("authorized_keys");
    let _ = crate::server::auth::text_authorizes(&text, file, vector_key());
    let local = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    let granted = crate::server::auth::text_grant(&text, file, vector_key(), local);
    if let Some(grant) = &granted {
        // A from= the address fails never lets the key in.
        if let Some(patterns) = &grant.from {
            assert!(key_options::from_allows(patterns, local));
        }
    }
    for line in text.lines() {
        if let Ok((options, _)) = key_options::parse_line(line) {
            // restrict takes away at least what it names, in any order.
            let restricted = line.to_ascii_lowercase().starts_with("restrict ");
            assert!(!restricted || !options.port_forwarding);
        }
        let _ = key_options::from_allows(line, local);
    }
}

/// A certificate of [`vector_key`] (serial 5, key ID "fuzz", valid
/// always) from a CA whose KRLs are the seeds of the revoked_keys corpus.
fn vector_certificate() -> &'static Certificate {
    static CERTIFICATE: OnceLock<Certificate> = OnceLock::new();
    CERTIFICATE.get_or_init(|| {
        let line = "ssh-ed25519-cert-v01@openssh.com \
            AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIGQ3JDTkeXZUluOCD2UM0m5sjxqZwz\
            awltB7n3LDNAX0AAAAIBi2msD7CCOto2q6+AK2841ao4IHc6bAL8EyR2U4SRdQAAAAAAAAAAUAAAABAAAA\
            BGZ1enoAAAAIAAAABHVzZXIAAAAAAAAAAP//////////AAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YX\
            JkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2Fy\
            ZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3\
            NoLWVkMjU1MTkAAAAgFcqeEmnoPwEhYe0TKA/2/UHWrz+nYPcwGxxTU6ea590AAABTAAAAC3NzaC1lZDI1\
            NTE5AAAAQC0uFTVleQZsXyZRP3CcO4GOheVodV9ssILAAmGkGlRKPscR/XenS+dLH7iuGZ/QolBdpiOG6f\
            USlDSR+QQ1sg4= vector";
        match Certificate::from_openssh(line) {
            Ok(certificate) => certificate,
            Err(e) => panic!("the vector certificate does not parse: {e}"),
        }
    })
}

/// A RevokedKeys file (a KRL or a list of keys), checked for a key and a
/// certificate as sshqd checks a login. A certificate whose key or CA key
/// is revoked is revoked.
pub fn revoked_keys(data: &[u8]) {
    use crate::server::auth::revoked::RevokedKeys;
    let Ok(revoked) = RevokedKeys::parse(data) else {
        return;
    };
    let certificate = vector_certificate();
    let key_revoked = revoked.is_key_revoked(vector_key().key_data());
    let ca_revoked = revoked.is_key_revoked(certificate.signature_key());
    let certificate_revoked = revoked.is_certificate_revoked(certificate);
    assert!(certificate_revoked || !(key_revoked || ca_revoked));
}

/// Whether `data` mentions a keyword that would make the parser read other
/// files of this machine (`Include`), which is not the parser's input.
fn names_other_files(data: &[u8]) -> bool {
    data.windows(7).any(|w| w.eq_ignore_ascii_case(b"include"))
}

/// An ssh_config file read as `sshq -F FILE host.example` reads it (the
/// same line parser, given the text from memory): Host and Match blocks
/// and every keyword; then each line as a `-o` option. Files with
/// `Include` are skipped (they would read this machine's files).
pub fn ssh_config(data: &[u8]) {
    if names_other_files(data) {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let mut options = ClientOptions::default();
    if options
        .apply_str("ssh_config", &text, "host.example")
        .is_ok()
    {
        let _ = options.expanded_host_name("host.example");
    }
    let mut option = ClientOptions::default();
    for line in text.lines().take(64) {
        let _ = option.apply_option_str(line);
    }
}

/// An sshd_config file as sshqd reads it (`ServerConfig::parse_str`, the
/// file parser given the text from memory, `ListenAddress` hosts checked
/// but not resolved: DNS is not input), then its lines together as
/// sshqd's `-o` options. Files with `Include` go only the `-o` way,
/// which refuses `Include` without reading anything.
pub fn sshd_config(data: &[u8]) {
    use crate::server::config::ServerConfig;
    let text = String::from_utf8_lossy(data);
    if !names_other_files(data) {
        if let Ok(config) = ServerConfig::parse_str("sshd_config", &text, &[]) {
            for listen in &config.listen_addresses {
                assert!(!listen.host.is_empty() && listen.port != Some(0));
            }
            // Match blocks were checked as they were read: applying them
            // to a connection cannot fail.
            let facts = crate::server::config::ConnectionFacts {
                user: "root".to_string(),
                groups: vec!["root".to_string(), "staff".to_string()],
                address: Some(std::net::IpAddr::from([192, 0, 2, 1])),
                local_port: Some(22),
                ..Default::default()
            };
            assert!(config.for_connection(&facts).is_ok());
        }
    }
    let options: Vec<String> = text.lines().take(64).map(str::to_string).collect();
    let _ = ServerConfig::parse_str("sshd_config", "", &options);
}

/// Reattachable sessions' frames (draft §8.12.2), as a peer sends them:
/// decoded one after another until the bytes run out or are refused.
/// Every frame that decodes encodes back to exactly its bytes (one
/// encoding per frame), and ACK offsets drive a replay buffer and an input
/// log, which refuse acknowledgements of what was never sent.
/// The messages between sshqd and a session holder, both ways: whatever
/// decodes encodes to a message that decodes to the same, and every
/// message takes the bytes it says.
pub fn holder_wire(data: &[u8]) {
    use crate::server::reattach::holder_wire::{FromHolder, Message, ToHolder};
    fn each<M: Message + PartialEq + std::fmt::Debug>(data: &[u8]) {
        let mut rest = data;
        while let Ok(Some((message, used))) = M::decode(rest) {
            assert!(used >= 5 && used <= rest.len());
            let mut again = Vec::new();
            message.encode(&mut again);
            match M::decode(&again) {
                Ok(Some((decoded, used_again))) => {
                    assert_eq!(decoded, message);
                    assert_eq!(used_again, again.len());
                }
                other => panic!("{message:?} does not decode again: {other:?}"),
            }
            rest = rest.get(used..).unwrap_or_default();
        }
    }
    each::<ToHolder>(data);
    each::<FromHolder>(data);
}

pub fn reattach(data: &[u8]) {
    use crate::reattach::replay::{InputLog, ReplayBuffer};
    use crate::reattach::wire::Frame;
    let mut rest = data;
    let mut replay = ReplayBuffer::new(4096);
    let mut input = InputLog::default();
    while let Ok(Some((frame, used))) = Frame::decode(rest) {
        let (this, next) = rest.split_at(used);
        let mut again = Vec::new();
        frame.encode(&mut again);
        assert_eq!(again, this, "{frame:?} does not encode back to its bytes");
        match frame {
            Frame::Data(bytes) => {
                input.push(&bytes);
                replay.push(bytes, true);
            }
            Frame::Ack(offset) => {
                let beyond = offset > replay.end();
                assert_eq!(replay.ack(offset).is_err(), beyond);
                assert_eq!(input.ack(offset).is_err(), offset > input.end());
                let _ = replay.read_from(offset, 100);
                let _ = input.since(offset);
            }
            _ => {}
        }
        rest = next;
    }
}

/// `-L`, `-R` and `-D` specifications.
pub fn forward_spec(data: &[u8]) {
    let spec = String::from_utf8_lossy(data);
    let _ = Forward::parse_local(&spec);
    let _ = Forward::parse_remote(&spec);
    if let Ok(dynamic) = DynamicForward::parse(&spec) {
        assert!(spec.ends_with(&dynamic.bind_port.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_accept_any_bytes() {
        let key_line = format!(
            "host.example {}\n",
            vector_key().to_openssh().unwrap_or_default()
        );
        let inputs: [&[u8]; 7] = [
            b"",
            b"\0",
            b"\x00\x00\x00\x09h.example\x00\x00\x01\xbb\x00\x05hello",
            b"\x05\x01\x00\x05\x01\x00\x03\x09localhost\x1f\x90",
            b"Host *\n  Port 2222\nMatch host x user y\nListenAddress [::1]:22\n",
            key_line.as_bytes(),
            b"[host]:22,@revoked * ssh-rsa AAAA\n|1|x|y ssh-ed25519 AAAA\n",
        ];
        for input in inputs {
            udp_relay(input);
            socks_request(input);
            known_hosts(input);
            authorized_keys(input);
            revoked_keys(input);
            ssh_config(input);
            sshd_config(input);
            forward_spec(input);
            reattach(input);
        }
    }

    #[test]
    fn include_lines_are_not_followed() {
        assert!(names_other_files(b"Host x\n  INCLUDE /etc/passwd\n"));
        assert!(!names_other_files(b"Host x\n  Port 22\n"));
    }
}
