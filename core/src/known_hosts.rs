//! Reading, matching and appending OpenSSH `known_hosts` files.
//!
//! The behaviour follows OpenSSH 9.2 (`hostfile.c`, `match.c`, `sshconnect.c`)
//! because users share one `~/.ssh/known_hosts` between `ssh` and `sshq`: a line
//! written by one must be understood by the other in exactly the same way.
//!
//! The files are user-controlled and may contain anything (binary junk, CRLF
//! line ends, truncated lines, lines from future OpenSSH versions), so parsing
//! never fails on content: a line that cannot be understood is skipped, as
//! OpenSSH does, and remembered in [`KnownHosts::invalid_lines`] for diagnostics.

use std::borrow::Cow;
use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

/// The port for which OpenSSH records a host under its bare name.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// Prefix of a hashed host field (`HashKnownHosts yes`): `|1|salt|hmac`.
const HASH_MAGIC: &str = "|1|";

/// OpenSSH requires the salt of a hashed name to be exactly one SHA-1 block.
const SALT_LEN: usize = 20;

/// Larger known_hosts files are refused rather than read into memory (a
/// known_hosts pointing at /dev/zero must not exhaust memory).
const MAX_FILE_SIZE: u64 = 256 << 20;

/// Errors of this module: only I/O, since bad content is skipped, never fatal.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    /// The file exists but could not be read (permissions, it is a directory...).
    #[error("cannot read known hosts file {}: {source}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The entry could not be appended (or the file or its directory created).
    #[error("cannot add a host key to {}: {source}", path.display())]
    Write {
        /// The file that could not be written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// The optional marker at the start of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `@cert-authority`: the key signs host certificates; never matches a plain key.
    CertAuthority,
    /// `@revoked`: the key must be refused for the matching hosts, whatever else says.
    Revoked,
}

/// Where an entry lives: the file as it was given to us, and a 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The known_hosts file.
    pub path: PathBuf,
    /// 1-based line number, as OpenSSH prints it.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// The host field of a line, kept in the form needed for matching.
#[derive(Debug, Clone)]
enum HostField {
    /// Comma-separated patterns with `*`, `?` and `!`.
    Patterns(String),
    /// `|1|salt|hmac`; the whole field is kept because OpenSSH compares the
    /// recomputed text with it, so only the canonical spelling matches.
    Hashed { salt: [u8; SALT_LEN], field: String },
}

/// One valid line of a known_hosts file.
#[derive(Debug, Clone)]
pub struct Entry {
    path: Arc<Path>,
    line: usize,
    marker: Option<Marker>,
    hosts: HostField,
    key: PublicKey,
}

impl Entry {
    /// The file and line this entry came from.
    pub fn location(&self) -> Location {
        Location {
            path: self.path.to_path_buf(),
            line: self.line,
        }
    }

    /// The marker (`@revoked`, `@cert-authority`), if any.
    pub fn marker(&self) -> Option<Marker> {
        self.marker
    }

    /// The host field exactly as written (patterns or `|1|...`).
    pub fn hosts(&self) -> &str {
        match &self.hosts {
            HostField::Patterns(p) => p,
            HostField::Hashed { field, .. } => field,
        }
    }

    /// Whether the host field is a hashed name.
    pub fn is_hashed(&self) -> bool {
        matches!(self.hosts, HostField::Hashed { .. })
    }

    /// The public key of this line.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }

    /// Whether this line names `name` (already in hostfile form, see [`hostfile_name`]).
    pub fn matches_host(&self, name: &str) -> bool {
        match &self.hosts {
            HostField::Patterns(p) => match_pattern_list(name, p) == PatternMatch::Positive,
            HostField::Hashed { salt, field } => hash_host(name, salt).is_some_and(|h| h == *field),
        }
    }
}

/// Result of looking a server key up, as OpenSSH's `check_key_in_hostkeys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A line for this host holds exactly this key.
    Found(Location),
    /// The host is known, but with another key. As in OpenSSH 9.2 this is also
    /// the case when the known keys are of other types only (`ssh` reports
    /// "REMOTE HOST IDENTIFICATION HAS CHANGED" then too). `location` is the
    /// last such line, the one OpenSSH calls "Offending".
    Changed {
        /// The offending line.
        location: Location,
        /// Type of the offending key as OpenSSH prints it ("RSA", "ED25519"...).
        key_type: &'static str,
    },
    /// An `@revoked` line for this host holds this key; overrides any `Found`.
    Revoked(Location),
    /// No (unmarked) line names this host.
    NotFound,
}

/// All valid entries of one or more known_hosts files, in file order.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    invalid: Vec<Location>,
}

impl KnownHosts {
    /// Reads the files in order (user files first, then global ones, as OpenSSH).
    /// A missing file contributes nothing; any other read error is returned,
    /// because silently ignoring an unreadable file could hide a changed key.
    pub fn read_files<P: AsRef<Path>>(paths: &[P]) -> Result<Self, KnownHostsError> {
        let mut all = KnownHosts::default();
        for path in paths {
            let path = path.as_ref();
            let mut content = Vec::new();
            let read =
                File::open(path).and_then(|f| f.take(MAX_FILE_SIZE + 1).read_to_end(&mut content));
            match read {
                Ok(n) if n as u64 > MAX_FILE_SIZE => {
                    let source = io::Error::other("file is larger than 256 MiB");
                    return Err(KnownHostsError::Read {
                        path: path.to_path_buf(),
                        source,
                    });
                }
                Ok(_) => all.add_content(path, &content),
                // "a/b" where "a" is a plain file cannot exist either.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) => {}
                Err(source) => {
                    return Err(KnownHostsError::Read {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
        }
        Ok(all)
    }

    /// Like [`Self::read_files`], but a file that cannot be read is skipped
    /// (and logged at debug level) instead of failing the whole read: for
    /// questions whose answer only tunes the key exchange, never for the
    /// host key decision itself.
    pub fn read_readable_files<P: AsRef<Path>>(paths: &[P]) -> Self {
        let mut all = KnownHosts::default();
        for path in paths {
            match Self::read_files(std::slice::from_ref(path)) {
                Ok(one) => {
                    all.entries.extend(one.entries);
                    all.invalid.extend(one.invalid);
                }
                Err(e) => tracing::debug!("{e}"),
            }
        }
        all
    }

    /// Parses in-memory content as if read from `path`.
    pub fn from_content(path: impl AsRef<Path>, content: &[u8]) -> Self {
        let mut all = KnownHosts::default();
        all.add_content(path.as_ref(), content);
        all
    }

    /// Appends the entries of one more file's content.
    pub fn add_content(&mut self, path: &Path, content: &[u8]) {
        let shared: Arc<Path> = Arc::from(path);
        for (index, raw) in content.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            match parse_line(&String::from_utf8_lossy(raw)) {
                Parsed::Blank => {}
                Parsed::Invalid => {
                    tracing::debug!("{}:{}: invalid known_hosts entry", path.display(), line);
                    self.invalid.push(Location {
                        path: path.to_path_buf(),
                        line,
                    });
                }
                Parsed::Entry { marker, hosts, key } => self.entries.push(Entry {
                    path: Arc::clone(&shared),
                    line,
                    marker,
                    hosts,
                    key: *key,
                }),
            }
        }
    }

    /// All valid entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Lines that were skipped because they could not be parsed.
    pub fn invalid_lines(&self) -> &[Location] {
        &self.invalid
    }

    /// Looks `key` up for `host` (as typed, or the HostName) on `port`.
    ///
    /// Like `ssh`, a non-default port is looked up as `[host]:port` first and,
    /// if nothing is recorded under that name, as the bare `host`; the bare
    /// name only counts if it holds this very key (OpenSSH's "found matching
    /// key w/out port"), or revokes it.
    pub fn lookup(&self, host: &str, port: u16, key: &PublicKey) -> Lookup {
        let name = hostfile_name(host, port);
        let status = self.lookup_name(&name, key);
        if status != Lookup::NotFound || port == DEFAULT_SSH_PORT || port == 0 {
            return status;
        }
        match self.lookup_name(&hostfile_name(host, DEFAULT_SSH_PORT), key) {
            found @ (Lookup::Found(_) | Lookup::Revoked(_)) => found,
            Lookup::Changed { .. } | Lookup::NotFound => Lookup::NotFound,
        }
    }

    /// Looks `key` up under an exact hostfile name (`host` or `[host]:port`,
    /// or a HostKeyAlias), without the port-less retry of [`Self::lookup`].
    pub fn lookup_name(&self, name: &str, key: &PublicKey) -> Lookup {
        let name = name.to_ascii_lowercase();
        let mut status = Lookup::NotFound;
        let mut revoked = None;
        for entry in self.entries.iter().filter(|e| e.matches_host(&name)) {
            match entry.marker {
                Some(Marker::CertAuthority) => {}
                Some(Marker::Revoked) => {
                    if revoked.is_none() && same_key(&entry.key, key) {
                        revoked = Some(entry.location());
                    }
                }
                None if matches!(status, Lookup::Found(_)) => {}
                None if same_key(&entry.key, key) => status = Lookup::Found(entry.location()),
                None => {
                    status = Lookup::Changed {
                        location: entry.location(),
                        key_type: key_type_name(&entry.key),
                    }
                }
            }
        }
        // A revoked key is refused even if another line accepts it.
        revoked.map_or(status, Lookup::Revoked)
    }

    /// The `@cert-authority` lines whose host field names `name` (a hostfile
    /// name: `host`, `[host]:port` or a HostKeyAlias), in file order.
    pub fn cert_authorities(&self, name: &str) -> Vec<&Entry> {
        let name = name.to_ascii_lowercase();
        self.entries
            .iter()
            .filter(|e| e.marker == Some(Marker::CertAuthority) && e.matches_host(&name))
            .collect()
    }

    /// The first `@revoked` line for `name` (a hostfile name) that holds
    /// `key`, a plain key (OpenSSH's `sshkey_equal_public`).
    pub fn revoked(&self, name: &str, key: &KeyData) -> Option<Location> {
        let name = name.to_ascii_lowercase();
        self.entries
            .iter()
            .find(|e| {
                e.marker == Some(Marker::Revoked)
                    && e.key.key_data() == key
                    && e.matches_host(&name)
            })
            .map(Entry::location)
    }

    /// Algorithm names (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`...) of
    /// the keys recorded for `host`/`port`, first seen first, without repeats.
    /// A transport should prefer these host key algorithms, as `ssh` does, so
    /// that a host known by its RSA key is not reported as changed merely
    /// because the server would rather send its Ed25519 key.
    pub fn known_key_types(&self, host: &str, port: u16) -> Vec<String> {
        let name = hostfile_name(host, port);
        let mut types: Vec<String> = Vec::new();
        for entry in &self.entries {
            if entry.marker.is_none() && entry.matches_host(&name) {
                let t = entry.key.algorithm().as_str().to_string();
                if !types.contains(&t) {
                    types.push(t);
                }
            }
        }
        types
    }

    /// Lines that hold `key` under names that do not match `host`/`port`,
    /// formatted as OpenSSH lists them under "This host key is known by the
    /// following other names/addresses:" (`~/.ssh/known_hosts:3: name` or
    /// `[hashed name]`).
    pub fn other_names(&self, host: &str, port: u16, key: &PublicKey) -> Vec<String> {
        let name = hostfile_name(host, port);
        self.entries
            .iter()
            .filter(|e| e.marker.is_none() && !e.matches_host(&name) && same_key(&e.key, key))
            .map(|e| {
                let hosts = if e.is_hashed() {
                    "[hashed name]"
                } else {
                    e.hosts()
                };
                format!("{}:{}: {}", tilde_unexpand(&e.path), e.line, hosts)
            })
            .collect()
    }
}

/// The name under which OpenSSH records a host: `host` for port 22 (or 0),
/// `[host]:port` otherwise, lowercased as `ssh` lowercases host names.
pub fn hostfile_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 0 || port == DEFAULT_SSH_PORT {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// `SHA256:` and the unpadded base64 of the SHA-256 of the key blob: what
/// `ssh-keygen -lf` and every `ssh` message print.
pub fn fingerprint_sha256(key: &PublicKey) -> String {
    match key.to_bytes() {
        Ok(blob) => format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(&blob))),
        // Encoding a decoded key cannot fail in practice; the crate's own
        // fingerprint is the same value and needs no allocation that can fail.
        Err(_) => key.fingerprint(HashAlg::Sha256).to_string(),
    }
}

/// The key type as OpenSSH names it in messages (`sshkey_type()`).
pub fn key_type_name(key: &PublicKey) -> &'static str {
    key_data_type_name(key.key_data())
}

fn key_data_type_name(data: &KeyData) -> &'static str {
    match data {
        KeyData::Dsa(_) => "DSA",
        KeyData::Ecdsa(_) => "ECDSA",
        KeyData::Ed25519(_) => "ED25519",
        KeyData::Rsa(_) => "RSA",
        KeyData::SkEcdsaSha2NistP256(_) => "ECDSA-SK",
        KeyData::SkEd25519(_) => "ED25519-SK",
        KeyData::Certificate(cert) => match cert.public_key() {
            KeyData::Dsa(_) => "DSA-CERT",
            KeyData::Ecdsa(_) => "ECDSA-CERT",
            KeyData::Ed25519(_) => "ED25519-CERT",
            KeyData::Rsa(_) => "RSA-CERT",
            KeyData::SkEcdsaSha2NistP256(_) => "ECDSA-SK-CERT",
            KeyData::SkEd25519(_) => "ED25519-SK-CERT",
            _ => "unknown",
        },
        _ => "unknown",
    }
}

/// Appends `host`/`port` with `key` to `path` as `ssh` does when it learns a
/// key (plain lowercased name, or a `|1|` hash when `hash` is set).
///
/// The directory (mode 0700) and file (0600) are created if missing. The line
/// goes out in one `write` on an `O_APPEND` descriptor, so concurrent `ssh`
/// processes and crashes cannot interleave or split it; if the file does not
/// end with a newline (edited by hand), one is put in front so the new line
/// is not glued to the last one.
pub fn append_entry(
    path: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
    hash: bool,
) -> Result<(), KnownHostsError> {
    append_entry_name(path, &hostfile_name(host, port), key, hash)
}

/// Like [`append_entry`], with the hostfile name given directly (HostKeyAlias).
pub fn append_entry_name(
    path: &Path,
    name: &str,
    key: &PublicKey,
    hash: bool,
) -> Result<(), KnownHostsError> {
    let werr = |source| KnownHostsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let name = name.to_ascii_lowercase();
    let hosts = if hash {
        hash_host(&name, &random_salt().map_err(werr)?)
            .ok_or_else(|| werr(io::Error::other("cannot hash the host name")))?
    } else {
        name
    };
    let blob = key
        .to_bytes()
        .map_err(|e| werr(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    let algorithm = blob_algorithm(&blob).unwrap_or_else(|| key.algorithm().as_str().to_string());
    let mut line = format!("{hosts} {algorithm} {}\n", STANDARD.encode(&blob)).into_bytes();

    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            DirBuilder::new().mode(0o700).create(dir).map_err(werr)?;
        }
    }
    let mut options = OpenOptions::new();
    options.append(true).create(true).mode(0o600);
    let file = match options.clone().read(true).open(path) {
        Ok(f) => Some(f),
        // A write-only file can still be appended to; skip the newline check.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => None,
        Err(e) => return Err(werr(e)),
    };
    let mut file = match file {
        Some(f) => {
            let len = f.metadata().map_err(werr)?.len();
            let mut last = [0u8; 1];
            if len > 0 && f.read_exact_at(&mut last, len - 1).is_ok() && last != *b"\n" {
                line.insert(0, b'\n');
            }
            f
        }
        None => options.open(path).map_err(werr)?,
    };
    file.write_all(&line).map_err(werr)?;
    file.sync_data().map_err(werr)
}

/// Computes `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, OpenSSH's `host_hash`.
/// (HMAC takes keys of any length, so `None` cannot happen; no panic path.)
fn hash_host(name: &str, salt: &[u8; SALT_LEN]) -> Option<String> {
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(salt).ok()?;
    mac.update(name.as_bytes());
    let digest = STANDARD.encode(mac.finalize().into_bytes());
    Some(format!("{HASH_MAGIC}{}|{digest}", STANDARD.encode(salt)))
}

/// Twenty random bytes for a new hashed name, from the kernel (sshq is Unix-only).
fn random_salt() -> io::Result<[u8; SALT_LEN]> {
    let mut salt = [0u8; SALT_LEN];
    File::open("/dev/urandom")?.read_exact(&mut salt)?;
    Ok(salt)
}

/// Key equality as `sshkey_equal`: same key material, comments ignored.
fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// The algorithm name that starts an SSH key blob (a uint32 length + string).
fn blob_algorithm(blob: &[u8]) -> Option<String> {
    let len_bytes: [u8; 4] = blob.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    String::from_utf8(name.to_vec()).ok()
}

/// Replaces a `$HOME/` prefix with `~/`, as OpenSSH shows paths in prompts.
fn tilde_unexpand(path: &Path) -> Cow<'_, str> {
    let text = path.to_string_lossy();
    let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
        return text;
    };
    let home = home.to_string_lossy().into_owned();
    let Some(rest) = text.strip_prefix(home.as_str()) else {
        return text;
    };
    if home.ends_with('/') {
        Cow::Owned(format!("~/{rest}"))
    } else if let Some(rest) = rest.strip_prefix('/') {
        Cow::Owned(format!("~/{rest}"))
    } else {
        text
    }
}

/// What one line turned out to be.
enum Parsed {
    Blank,
    Invalid,
    // Boxed to keep the enum small; a key is a couple of hundred bytes.
    Entry {
        marker: Option<Marker>,
        hosts: HostField,
        key: Box<PublicKey>,
    },
}

/// Splits off the next field, ending at a space or tab (OpenSSH's separators).
fn next_field(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    s.split_once([' ', '\t']).unwrap_or((s, ""))
}

/// Parses one line the way OpenSSH's `hostkeys_foreach` + `sshkey_read` do.
fn parse_line(line: &str) -> Parsed {
    let rest = line.trim_start_matches([' ', '\t']);
    // A lone "\r" (CRLF blank line) is blank for OpenSSH too: it has no key.
    if rest.is_empty() || rest.starts_with('#') || rest.trim().is_empty() {
        return Parsed::Blank;
    }
    let (mut first, mut rest) = next_field(rest);
    let marker = if first.starts_with('@') {
        let marker = match first {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            _ => return Parsed::Invalid,
        };
        (first, rest) = next_field(rest);
        Some(marker)
    } else {
        None
    };
    let hosts = match parse_hosts(first) {
        Some(h) => h,
        None => return Parsed::Invalid,
    };
    let (key_type, rest) = next_field(rest);
    let (b64, _comment) = next_field(rest);
    if key_type.is_empty() || key_type.starts_with('#') || b64.is_empty() {
        return Parsed::Invalid;
    }
    // base64 decoders in OpenSSH skip stray whitespace such as a CRLF's "\r".
    let b64: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let Ok(blob) = STANDARD.decode(b64.as_bytes()) else {
        return Parsed::Invalid;
    };
    if blob_algorithm(&blob).as_deref() != Some(key_type) {
        return Parsed::Invalid;
    }
    match PublicKey::from_bytes(&blob) {
        Ok(key) => Parsed::Entry {
            marker,
            hosts,
            key: Box::new(key),
        },
        Err(_) => Parsed::Invalid,
    }
}

/// Parses the host field; a field starting with `|` must be a valid `|1|` hash.
fn parse_hosts(field: &str) -> Option<HostField> {
    if field.is_empty() {
        return None;
    }
    if !field.starts_with('|') {
        return Some(HostField::Patterns(field.to_string()));
    }
    let (b64salt, _) = field.strip_prefix(HASH_MAGIC)?.split_once('|')?;
    if b64salt.is_empty() || b64salt.len() > 1024 {
        return None;
    }
    let salt: [u8; SALT_LEN] = STANDARD.decode(b64salt).ok()?.try_into().ok()?;
    Some(HostField::Hashed {
        salt,
        field: field.to_string(),
    })
}

/// Outcome of OpenSSH's `match_pattern_list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternMatch {
    /// Some `!pattern` matched: the line must not be used for this host.
    Negated,
    /// Nothing matched.
    None,
    /// A positive pattern matched and no negated one did.
    Positive,
}

/// Longest sub-pattern OpenSSH accepts; a longer one makes the whole list fail.
const MAX_SUBPATTERN: usize = 1023;

/// Matches `name` (lowercase) against comma-separated patterns, case-insensitively.
fn match_pattern_list(name: &str, list: &str) -> PatternMatch {
    let mut positive = false;
    for sub in list.split(',') {
        let (negated, pattern) = match sub.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, sub),
        };
        if pattern.len() >= MAX_SUBPATTERN {
            return PatternMatch::None;
        }
        if crate::pattern::matches(&pattern.to_ascii_lowercase(), name) {
            if negated {
                return PatternMatch::Negated;
            }
            positive = true;
        }
    }
    if positive {
        PatternMatch::Positive
    } else {
        PatternMatch::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_list_negation_wins() {
        let list = "*.example.com,!bad.example.com";
        assert_eq!(
            match_pattern_list("good.example.com", list),
            PatternMatch::Positive
        );
        assert_eq!(
            match_pattern_list("bad.example.com", list),
            PatternMatch::Negated
        );
        assert_eq!(match_pattern_list("other.org", list), PatternMatch::None);
        // Negation alone never makes a line match.
        assert_eq!(
            match_pattern_list("x.org", "!bad.example.com"),
            PatternMatch::None
        );
        // Patterns are compared case-insensitively.
        assert_eq!(
            match_pattern_list("host.lan", "HOST.LAN"),
            PatternMatch::Positive
        );
    }

    #[test]
    fn hostfile_name_forms() {
        assert_eq!(hostfile_name("Example.COM", 22), "example.com");
        assert_eq!(hostfile_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
        assert_eq!(hostfile_name("::1", 2222), "[::1]:2222");
    }

    #[test]
    fn blob_algorithm_is_bounds_checked() {
        assert_eq!(blob_algorithm(b""), None);
        assert_eq!(blob_algorithm(&[0, 0, 0, 9, b'a']), None);
        assert_eq!(blob_algorithm(&[0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(blob_algorithm(&[0, 0, 0, 1, b'x', 7]).as_deref(), Some("x"));
    }
}
