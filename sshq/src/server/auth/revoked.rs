//! RevokedKeys (sshd_config(5)): keys and certificates sshqd refuses,
//! whatever the authorized_keys files say.
//!
//! The file is either OpenSSH's binary key revocation list (a KRL, made by
//! `ssh-keygen -k`, see [`krl`]) or a text list of public keys, one per
//! line, as sshd's `sshkey_check_revoked` reads them: a file that does not
//! start with the KRL magic is a list. In a list, `#` comments and blank
//! lines are skipped and any other line must be `type base64 [comment]`
//! (a certificate line stands for its key); a line that is not is an
//! error. A key is revoked if it is listed; a certificate if its key or
//! its CA's key is listed, or if a KRL revokes it by serial or key ID.
//!
//! A file that cannot be read or parsed revokes every key: sshd fails
//! closed ([`RevokedKeys::load_or_refuse_all`]). sshd reads the file again
//! for every key it checks, so a new KRL takes effect at once; the caller
//! decides how often to call [`RevokedKeys::load`].

mod krl;

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sshq_core::log_escape::peer_bytes;
use sshq_core::ssh_key::encoding::base64::{Base64, Encoding};
use sshq_core::ssh_key::encoding::Decode;
use sshq_core::ssh_key::public::KeyData;
use sshq_core::ssh_key::{Algorithm, Certificate};

/// The largest revoked keys file: OpenSSH's sshbuf limit (SSHBUF_SIZE_MAX),
/// beyond which sshd cannot load the file and so refuses every key.
pub const MAX_REVOKED_KEYS_FILE: usize = 0x800_0000;

/// A loaded RevokedKeys file.
#[derive(Debug)]
pub struct RevokedKeys {
    list: List,
}

#[derive(Debug)]
enum List {
    Krl(krl::Krl),
    /// A text list, by plain key (a certificate line gives its key).
    Keys(HashSet<KeyData>),
    /// The file could not be used: everything is revoked.
    Everything,
}

/// Why a revoked keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RevokedKeysError {
    #[error("cannot read revoked keys file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("revoked keys file is larger than {MAX_REVOKED_KEYS_FILE} bytes")]
    TooLarge,
    /// A KRL that cannot be parsed, and the byte offset of the problem.
    #[error("KRL at byte {offset}: {what}")]
    Krl { offset: usize, what: String },
    /// A line of a text list that is not a public key (counted from 1).
    #[error("line {line}: {what}")]
    Line { line: usize, what: String },
    /// One of the above, in the file `path`.
    #[error("revoked keys file {}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<RevokedKeysError>,
    },
}

impl RevokedKeys {
    /// Parses a KRL (from its magic) or else a text list of keys.
    pub fn parse(bytes: &[u8]) -> Result<RevokedKeys, RevokedKeysError> {
        if bytes.len() > MAX_REVOKED_KEYS_FILE {
            return Err(RevokedKeysError::TooLarge);
        }
        let list = if bytes.starts_with(krl::MAGIC) {
            let krl = krl::Krl::parse(bytes).map_err(|e| RevokedKeysError::Krl {
                offset: e.offset,
                what: e.what,
            })?;
            List::Krl(krl)
        } else {
            List::Keys(parse_text(bytes)?)
        };
        Ok(RevokedKeys { list })
    }

    /// Reads and parses the file at `path` (at most
    /// [`MAX_REVOKED_KEYS_FILE`] bytes). Errors name the file.
    pub fn load(path: &Path) -> Result<RevokedKeys, RevokedKeysError> {
        let read = |error| RevokedKeysError::Read {
            path: path.to_owned(),
            error,
        };
        let mut bytes = Vec::new();
        // Not blocking on a FIFO, and only a regular file, as for
        // authorized_keys.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
            .open(path)
            .map_err(read)?;
        if !file.metadata().map_err(read)?.file_type().is_file() {
            return Err(read(std::io::Error::other("not a regular file")));
        }
        file.take(MAX_REVOKED_KEYS_FILE as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(read)?;
        RevokedKeys::parse(&bytes).map_err(|error| RevokedKeysError::InFile {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// [`RevokedKeys::load`], failing closed as sshd does: if the file
    /// cannot be read or parsed, the error is logged and every key is
    /// revoked.
    pub fn load_or_refuse_all(path: &Path) -> RevokedKeys {
        RevokedKeys::load(path).unwrap_or_else(|e| {
            tracing::error!("{e}: refusing all public keys");
            RevokedKeys {
                list: List::Everything,
            }
        })
    }

    /// Whether `key` is revoked. A certificate is checked as by
    /// [`RevokedKeys::is_certificate_revoked`].
    pub fn is_key_revoked(&self, key: &KeyData) -> bool {
        match (&self.list, key) {
            (_, KeyData::Certificate(certificate)) => self.is_certificate_revoked(certificate),
            (List::Krl(krl), key) => krl.is_key_revoked(key),
            (List::Keys(keys), key) => keys.contains(key),
            (List::Everything, _) => true,
        }
    }

    /// Whether `certificate` is revoked: itself (a KRL's serials and key
    /// IDs, for its CA or for any CA), its key, or its CA's key.
    pub fn is_certificate_revoked(&self, certificate: &Certificate) -> bool {
        match &self.list {
            List::Krl(krl) => krl.is_certificate_revoked(certificate),
            List::Keys(keys) => {
                keys.contains(plain(certificate.public_key()))
                    || keys.contains(plain(certificate.signature_key()))
            }
            List::Everything => true,
        }
    }
}

/// A certificate's key, or the key itself.
fn plain(key: &KeyData) -> &KeyData {
    match key {
        KeyData::Certificate(certificate) => certificate.public_key(),
        key => key,
    }
}

/// A text list, read as sshd's `sshkey_in_file` reads it: each line is a C
/// string (up to a NUL), leading blanks skipped, `#` lines and empty lines
/// ignored.
fn parse_text(bytes: &[u8]) -> Result<HashSet<KeyData>, RevokedKeysError> {
    let mut keys = HashSet::new();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.split(|&b| b == 0).next().unwrap_or_default();
        let start = line.iter().position(|b| !is_blank(b)).unwrap_or(line.len());
        let line_text = line.get(start..).unwrap_or_default();
        if line_text.is_empty() || line_text.starts_with(b"#") {
            continue;
        }
        let key = parse_key_line(line_text).map_err(|what| RevokedKeysError::Line {
            line: index + 1,
            what: what.0,
        })?;
        keys.insert(key);
    }
    Ok(keys)
}

fn is_blank(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

/// Why a line of a key list is not a key (its words, for the error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct KeyLineError(String);

impl From<&str> for KeyLineError {
    fn from(why: &str) -> Self {
        KeyLineError(why.to_string())
    }
}

impl From<String> for KeyLineError {
    fn from(why: String) -> Self {
        KeyLineError(why)
    }
}

/// `type base64 [comment]` (sshkey_read): the key, or the certificate's key.
fn parse_key_line(line: &[u8]) -> Result<KeyData, KeyLineError> {
    let type_end = line.iter().position(is_blank);
    let (kind, rest) =
        line.split_at(type_end.ok_or(KeyLineError::from("a key type without a key"))?);
    let start = rest.iter().position(|b| !is_blank(b)).unwrap_or(rest.len());
    // base64 skips white space: a line may end in "\r".
    let encoded: String = (rest.get(start..).unwrap_or_default().iter())
        .take_while(|b| !is_blank(b))
        .filter(|b| !b.is_ascii_whitespace() && **b != 0x0b)
        .map(|&b| char::from(b))
        .collect();
    let shown = peer_bytes(kind);
    let blob = Base64::decode_vec(&encoded).map_err(|e| format!("{shown} key: bad base64: {e}"))?;
    let mut reader = &blob[..];
    let key = KeyData::decode(&mut reader).map_err(|e| format!("bad {shown} key: {e}"))?;
    if !reader.is_empty() {
        return Err(format!("{shown} key followed by {} bytes", reader.len()).into());
    }
    let actual = match &key {
        KeyData::Certificate(certificate) => certificate.algorithm().to_certificate_type(),
        key => key.algorithm().as_str().to_owned(),
    };
    let actual_shown = peer_bytes(actual.as_bytes());
    if matches!(key.algorithm(), Algorithm::Other(_)) {
        return Err(format!("unsupported key type {actual_shown}").into());
    }
    if actual.as_bytes() != canonical_type(kind) {
        return Err(
            format!("key type {shown} does not match its key, a {actual_shown} key").into(),
        );
    }
    Ok(plain(&key).clone())
}

/// The key type a line's type name stands for: sshkey_read also takes
/// the names of RSA's SHA-2 signatures and of webauthn signatures.
fn canonical_type(kind: &[u8]) -> &[u8] {
    match kind {
        b"rsa-sha2-256" | b"rsa-sha2-512" => b"ssh-rsa",
        b"rsa-sha2-256-cert-v01@openssh.com" | b"rsa-sha2-512-cert-v01@openssh.com" => {
            b"ssh-rsa-cert-v01@openssh.com"
        }
        b"webauthn-sk-ecdsa-sha2-nistp256@openssh.com" => b"sk-ecdsa-sha2-nistp256@openssh.com",
        b"webauthn-sk-ecdsa-sha2-nistp256-cert-v01@openssh.com" => {
            b"sk-ecdsa-sha2-nistp256-cert-v01@openssh.com"
        }
        kind => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sshq_core::ssh_key::{HashAlg, PublicKey};
    use std::process::Command;

    /// A directory with ssh-keygen's keys, certificates and KRLs.
    struct Lab(tempfile::TempDir);

    impl Lab {
        fn new() -> Lab {
            Lab(tempfile::tempdir().unwrap())
        }

        fn path(&self, name: &str) -> PathBuf {
            self.0.path().join(name)
        }

        fn run(&self, args: &[&str]) -> std::process::Output {
            let mut command = Command::new("ssh-keygen");
            command
                .current_dir(self.0.path())
                .args(args)
                .output()
                .unwrap()
        }

        fn keygen(&self, args: &[&str]) {
            let out = self.run(args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "ssh-keygen {args:?}: {stderr}");
        }

        /// A new key pair `name`, `name.pub` of type `kind` (with its size:
        /// "ecdsa-521"); returns the public key.
        fn key(&self, name: &str, kind: &str) -> KeyData {
            let (kind, bits) = kind.split_once('-').unwrap_or((kind, ""));
            let mut args = vec!["-q", "-t", kind, "-N", "", "-C", name, "-f", name];
            if !bits.is_empty() {
                args.extend(["-b", bits]);
            }
            self.keygen(&args);
            PublicKey::from_openssh(&self.read(&format!("{name}.pub")))
                .unwrap()
                .key_data()
                .clone()
        }

        fn read(&self, name: &str) -> String {
            std::fs::read_to_string(self.path(name)).unwrap()
        }

        /// `key`'s certificate (in `key-cert.pub`) by `ca`, with `id` and `serial`.
        fn cert(&self, ca: &str, key: &str, id: &str, serial: u64) -> Certificate {
            let (serial, public) = (serial.to_string(), format!("{key}.pub"));
            self.keygen(&["-q", "-s", ca, "-I", id, "-n", "u", "-z", &serial, &public]);
            Certificate::from_openssh(&self.read(&format!("{key}-cert.pub"))).unwrap()
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.path(name), text).unwrap();
        }

        /// `ssh-keygen -k -f krl ARGS...`, then the KRL loaded.
        fn krl(&self, args: &[&str]) -> RevokedKeys {
            self.keygen(&[&["-k", "-f", "krl"], args].concat());
            RevokedKeys::load(&self.path("krl")).unwrap()
        }

        /// ssh-keygen's own answer (`-Q`) for a key or certificate file.
        fn keygen_revokes(&self, file: &str) -> bool {
            !self.run(&["-Q", "-f", "krl", file]).status.success()
        }
    }

    #[test]
    fn keys_revoked_in_a_krl() {
        let lab = Lab::new();
        let (user, other) = (lab.key("user", "ed25519"), lab.key("other", "ecdsa"));
        let ca = lab.key("ca", "ecdsa-521");
        lab.key("ca2", "ed25519");
        let (user_cert, other_cert) = (
            lab.cert("ca", "user", "a", 7),
            lab.cert("ca", "other", "b", 8),
        );
        let krl = lab.krl(&["user.pub"]);
        assert!(krl.is_key_revoked(&user) && !krl.is_key_revoked(&other));
        assert!(krl.is_certificate_revoked(&user_cert) && !krl.is_certificate_revoked(&other_cert));
        assert!(krl.is_key_revoked(&KeyData::Certificate(Box::new(user_cert))));
        assert!(lab.keygen_revokes("user.pub") && !lab.keygen_revokes("other.pub"));
        // -u adds to the KRL; a revoked CA revokes its certificates.
        lab.keygen(&["-k", "-u", "-f", "krl", "ca.pub"]);
        let krl = RevokedKeys::load(&lab.path("krl")).unwrap();
        assert!(krl.is_key_revoked(&user) && krl.is_key_revoked(&ca));
        assert!(krl.is_certificate_revoked(&other_cert) && !krl.is_key_revoked(&other));
        assert!(!krl.is_certificate_revoked(&lab.cert("ca2", "other", "b", 8)));
    }

    #[test]
    fn certificates_revoked_by_serial_for_their_ca_only() {
        let lab = Lab::new();
        let user = lab.key("user", "ed25519");
        lab.key("ca", "ed25519");
        lab.key("ca2", "rsa");
        lab.write("spec", "serial: 5\nserial: 10-20\n");
        let krl = lab.krl(&["-s", "ca.pub", "spec"]);
        for serial in [0, 1, 4, 5, 6, 9, 10, 15, 20, 21, u64::MAX] {
            let cert = lab.cert("ca", "user", "alice", serial);
            let expected = serial == 5 || (10..=20).contains(&serial);
            assert_eq!(
                krl.is_certificate_revoked(&cert),
                expected,
                "serial {serial}"
            );
            assert_eq!(
                lab.keygen_revokes("user-cert.pub"),
                expected,
                "serial {serial}"
            );
            let cert = lab.cert("ca2", "user", "alice", serial);
            assert!(!krl.is_certificate_revoked(&cert), "serial {serial} of ca2");
        }
        assert!(!krl.is_key_revoked(&user) && !krl.is_key_revoked(&lab.key("ca3", "ed25519")));
    }

    #[test]
    fn serial_bitmaps() {
        let lab = Lab::new();
        lab.key("user", "ed25519");
        lab.key("ca", "ecdsa-384");
        let serials = [3, 5, 7, 9, 11, 13, 15, 17, 20, 1000, 1003, 1005, 1008];
        let spec: String = serials.iter().map(|s| format!("serial: {s}\n")).collect();
        lab.write("spec", &spec);
        let krl = lab.krl(&["-s", "ca.pub", "spec"]);
        let bytes = std::fs::read(lab.path("krl")).unwrap();
        assert!(
            bytes.windows(2).any(|w| w == [0, 0x22]),
            "ssh-keygen wrote no bitmap"
        );
        for serial in (0..25).chain(995..1010) {
            let cert = lab.cert("ca", "user", "id", serial);
            assert_eq!(
                krl.is_certificate_revoked(&cert),
                serials.contains(&serial),
                "{serial}"
            );
        }
    }

    #[test]
    fn certificates_revoked_by_key_id() {
        let lab = Lab::new();
        lab.key("user", "ed25519");
        lab.key("ca", "ed25519");
        lab.key("ca2", "ecdsa");
        lab.write("spec", "id: alice\n");
        let krl = lab.krl(&["-s", "ca.pub", "spec"]);
        assert!(krl.is_certificate_revoked(&lab.cert("ca", "user", "alice", 0)));
        assert!(krl.is_certificate_revoked(&lab.cert("ca", "user", "alice", 42)));
        assert!(!krl.is_certificate_revoked(&lab.cert("ca", "user", "alice2", 42)));
        assert!(!krl.is_certificate_revoked(&lab.cert("ca2", "user", "alice", 42)));
        // For any CA: -s none.
        lab.write("spec", "id: bob\n");
        let krl = lab.krl(&["-s", "none", "spec"]);
        assert!(krl.is_certificate_revoked(&lab.cert("ca", "user", "bob", 1)));
        assert!(krl.is_certificate_revoked(&lab.cert("ca2", "user", "bob", 0)));
        assert!(lab.keygen_revokes("user-cert.pub"));
        assert!(!krl.is_certificate_revoked(&lab.cert("ca2", "user", "alice", 1)));
    }

    #[test]
    fn keys_revoked_by_hash() {
        let lab = Lab::new();
        let (a, b, c) = (
            lab.key("a", "ed25519"),
            lab.key("b", "rsa"),
            lab.key("c", "ecdsa"),
        );
        let d = lab.key("d", "ed25519");
        lab.key("ca", "ed25519");
        let hash = a.fingerprint(HashAlg::Sha256);
        let (b_line, c_line) = (lab.read("b.pub"), lab.read("c.pub"));
        lab.write(
            "spec",
            &format!("hash: {hash}\nsha256: {b_line}sha1: {c_line}"),
        );
        let krl = lab.krl(&["spec"]);
        let bytes = std::fs::read(lab.path("krl")).unwrap();
        assert!(
            bytes.windows(5).any(|w| w == [3, 0, 0, 0, 24]),
            "no SHA-1 section"
        );
        assert!(krl.is_key_revoked(&a) && krl.is_key_revoked(&b) && krl.is_key_revoked(&c));
        assert!(!krl.is_key_revoked(&d));
        assert!(krl.is_certificate_revoked(&lab.cert("ca", "c", "id", 1)));
        assert!(!krl.is_certificate_revoked(&lab.cert("ca", "d", "id", 1)));
    }

    #[test]
    fn a_text_list_of_keys() {
        let lab = Lab::new();
        let (user, other) = (lab.key("user", "ed25519"), lab.key("other", "rsa"));
        let third = lab.key("third", "ecdsa");
        lab.key("ca", "ed25519");
        lab.key("ca2", "ed25519");
        let cert = lab.cert("ca2", "third", "t", 1);
        let (user_line, ca_line) = (lab.read("user.pub"), lab.read("ca.pub"));
        // sshkey_read takes an RSA key named by a SHA-2 signature.
        let other_line = lab.read("other.pub").replacen("ssh-rsa", "rsa-sha2-512", 1);
        let list = RevokedKeys::parse(other_line.as_bytes()).unwrap();
        assert!(list.is_key_revoked(&other) && !list.is_key_revoked(&user));
        let text = format!("# revoked\n\n  \t{}\r\n{ca_line}", user_line.trim_end());
        let list = RevokedKeys::parse(text.as_bytes()).unwrap();
        assert!(list.is_key_revoked(&user) && !list.is_key_revoked(&other));
        assert!(list.is_certificate_revoked(&lab.cert("ca", "other", "o", 1)));
        assert!(list.is_certificate_revoked(&lab.cert("ca2", "user", "u", 1)));
        assert!(!list.is_certificate_revoked(&lab.cert("ca2", "other", "o", 1)));
        // A certificate line revokes its key.
        let list = RevokedKeys::parse(lab.read("third-cert.pub").as_bytes()).unwrap();
        assert!(list.is_key_revoked(&third) && list.is_certificate_revoked(&cert));
        assert!(!list.is_key_revoked(&user));
        // An empty file, or one of comments, revokes nothing.
        lab.write("empty", "");
        let empty = RevokedKeys::load(&lab.path("empty")).unwrap();
        assert!(!empty.is_key_revoked(&user) && !empty.is_certificate_revoked(&cert));
        for text in ["\n", "# nothing\n", "\0x"] {
            let list = RevokedKeys::parse(text.as_bytes()).unwrap();
            assert!(!list.is_key_revoked(&user) && !list.is_certificate_revoked(&cert));
        }
    }

    #[test]
    fn bad_text_lines_are_errors() {
        let ed = "AAAAC3NzaC1lZDI1NTE5AAAAIBi2msD7CCOto2q6+AK2841ao4IHc6bAL8EyR2U4SRdQ";
        let cases = [
            ("ssh-ed25519\n".to_string(), 1),
            (format!("# ok\nssh-rsa {ed}\n"), 2),
            (format!("ssh-ed25519 {ed} x\nssh-ed25519 {}\n", &ed[1..]), 2),
            (format!("command=\"x\" ssh-ed25519 {ed}\n"), 1),
            (format!("ssh-ed25519 {ed}AAAA\n"), 1),
            ("\r\n".to_string(), 1),
            ("SSHKRL\n".to_string(), 1),
        ];
        for (text, line) in cases {
            match RevokedKeys::parse(text.as_bytes()) {
                Err(RevokedKeysError::Line { line: at, what }) => assert_eq!(at, line, "{what}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        let digit = |d: u8| char::from(d).to_digit(16).unwrap() as u8;
        digits
            .chunks(2)
            .map(|d| digit(d[0]) << 4 | digit(d[1]))
            .collect()
    }

    /// A KRL header (version 1, everything else 0 or empty), then `sections` in hex.
    fn krl_with(sections: &str) -> Vec<u8> {
        [&krl::MAGIC[..], &hex("00000001"), &[0; 32], &hex(sections)].concat()
    }

    /// A certificates section for any CA with `subsections` (hex), in hex.
    fn any_ca(subsections: &str) -> String {
        let len = hex(subsections).len() + 8;
        format!("01 {len:08x} 00000000 00000000 {subsections}")
    }

    #[test]
    fn truncated_and_malformed_krls_are_errors() {
        let lab = Lab::new();
        lab.key("ca", "ed25519");
        lab.write("spec", "serial: 5\nid: x\n");
        lab.krl(&["-s", "ca.pub", "spec"]);
        let bytes = std::fs::read(lab.path("krl")).unwrap();
        // Only the header alone is a whole KRL (the one section is longer).
        for cut in 1..bytes.len() {
            let parsed = RevokedKeys::parse(&bytes[..cut]);
            assert_eq!(parsed.is_ok(), cut == 44, "cut at {cut}: {parsed:?}");
        }
        let longer = [&bytes[..], &[2]].concat();
        let error = RevokedKeys::parse(&longer).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("KRL at byte {}: ", bytes.len() + 1)),
            "{error}"
        );
        let mut bad = vec![[&krl::MAGIC[..], &hex("00000002"), &[0; 32]].concat()];
        bad.extend(
            [
                "06 00000000",                            // unknown section
                "ff 0000000a 00000001 78 01 00000000",    // critical extension
                "ff 0000000b 00000001 78 00 00000000 21", // trailing byte
                "03 00000005 00000001 00",                // 1-byte SHA-1
                "01 0000000b 00000003 616263 00000000",   // bad CA key
                &any_ca("20 00000008 0000000000000000"),  // serial 0
                &any_ca("21 00000010 0000000000000009 0000000000000008"),
                &any_ca("22 0000000d ffffffffffffffff 00000001 03"), // wraps
                &any_ca("22 0000000d 0000000000000000 00000001 01"), // serial 0
                &any_ca("22 0000000d 0000000000000001 00000001 80"), // negative
                &any_ca(&format!(
                    "22 0000080d 0000000000000001 00000801 01{}",
                    "00".repeat(2048)
                )),
                &any_ca("23 00000007 00000003 610062"), // NUL inside
                &any_ca("24 00000000"),                 // unknown subsection
                &any_ca("21 00000011 0000000000000001 0000000000000002 00"),
            ]
            .map(krl_with),
        );
        for krl in &bad {
            assert!(RevokedKeys::parse(krl).is_err(), "{krl:02x?}");
        }
        let garbage: Vec<u8> = (0u32..4000)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert!(RevokedKeys::parse(&[&krl::MAGIC[..], &garbage].concat()).is_err());
    }

    #[test]
    fn what_krl_c_accepts_and_ignores() {
        let lab = Lab::new();
        let user = lab.key("user", "ed25519");
        lab.key("ca", "ed25519");
        let cert = lab.cert("ca", "user", "x", 1);
        let quiet = [
            "".to_string(),
            "ff 0000000b 00000001 78 00 00000001 79".to_string(), // extension
            any_ca("39 0000000a 00000001 78 00 00000000"),
            "04 00000003 6b6579 00000003 736967".to_string(), // signature
            any_ca("22 0000000d 0000000000000000 00000001 04"), // serial 2
            any_ca("22 0000000c 0000000000000000 00000000"),  // no bits
            any_ca("23 00000006 00000002 7900"),              // "y"
            "02 0000000b 00000000 00000003 616263".to_string(), // any blobs
        ];
        for krl in quiet.iter().map(|s| krl_with(s)) {
            let krl = RevokedKeys::parse(&krl).unwrap();
            assert!(!krl.is_key_revoked(&user) && !krl.is_certificate_revoked(&cert));
        }
        // Bit 1 of a bitmap at 0 is serial 1; "x\0" is the key ID "x".
        for revoking in [
            "22 0000000d 0000000000000000 00000001 02",
            "23 00000006 00000002 7800",
        ] {
            let krl = RevokedKeys::parse(&krl_with(&any_ca(revoking))).unwrap();
            assert!(krl.is_certificate_revoked(&cert) && !krl.is_key_revoked(&user));
        }
    }

    #[test]
    fn shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<RevokedKeys>();
    }

    #[test]
    fn an_unusable_file_refuses_everything() {
        let lab = Lab::new();
        let user = lab.key("user", "ed25519");
        let missing = lab.path("missing");
        let error = RevokedKeys::load(&missing).unwrap_err().to_string();
        assert!(error.contains("missing"), "{error}");
        assert!(RevokedKeys::load_or_refuse_all(&missing).is_key_revoked(&user));
        lab.write("bad", "garbage\n");
        let error = RevokedKeys::load(&lab.path("bad")).unwrap_err().to_string();
        assert!(error.contains("bad: line 1: "), "{error}");
        assert!(RevokedKeys::load_or_refuse_all(&lab.path("bad")).is_key_revoked(&user));
        let too_big = vec![b'#'; MAX_REVOKED_KEYS_FILE + 1];
        assert!(matches!(
            RevokedKeys::parse(&too_big),
            Err(RevokedKeysError::TooLarge)
        ));
    }
}
