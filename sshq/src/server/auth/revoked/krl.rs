//! OpenSSH's binary key revocation list (PROTOCOL.krl), read as krl.c's
//! `ssh_krl_from_blob` reads it and queried as `ssh_krl_check_key` does.
//!
//! Every read is bounds-checked against the section it is in, and nothing
//! is allocated from a length field: the KRL keeps a copy of its input and
//! refers to blobs, hashes and key IDs by their place in it, so a KRL costs
//! a small multiple of its size whatever its lengths claim.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use sshq_core::log_escape::peer_bytes;
use sshq_core::ssh_key::encoding::{Decode, Encode};
use sshq_core::ssh_key::{public::KeyData, Algorithm, Certificate};

/// "SSHKRL\n\0", the first bytes of every KRL.
pub const MAGIC: &[u8; 8] = b"SSHKRL\n\0";
const FORMAT_VERSION: u32 = 1;

const SECTION_CERTIFICATES: u8 = 1;
const SECTION_EXPLICIT_KEY: u8 = 2;
const SECTION_FINGERPRINT_SHA1: u8 = 3;
const SECTION_SIGNATURE: u8 = 4;
const SECTION_FINGERPRINT_SHA256: u8 = 5;
const SECTION_EXTENSION: u8 = 255;

const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_SERIAL_RANGE: u8 = 0x21;
const CERT_SERIAL_BITMAP: u8 = 0x22;
const CERT_KEY_ID: u8 = 0x23;
const CERT_EXTENSION: u8 = 0x39;

/// The largest bitmap, in bytes once its leading zeros are gone: OpenSSH's
/// largest mpint (SSHBUF_MAX_BIGNUM, 16384 bits).
const MAX_BITMAP: usize = 16384 / 8;

/// What is wrong, and at which byte of the KRL.
#[derive(Debug)]
pub struct KrlError {
    pub offset: usize,
    pub what: String,
}

fn fail<T>(offset: usize, what: impl Into<String>) -> Result<T, KrlError> {
    Err(KrlError {
        offset,
        what: what.into(),
    })
}

/// A range of the KRL's bytes. Offsets fit in u32: the input is at most
/// `MAX_REVOKED_KEYS_FILE` bytes.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(self, data: &[u8]) -> &[u8] {
        let start = self.start as usize;
        data.get(start..start + self.len as usize)
            .unwrap_or_default()
    }
}

/// A reader over `data[pos..end]`, a section or a string of the KRL.
#[derive(Clone, Copy)]
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], KrlError> {
        let left = self.end - self.pos;
        if n > left {
            return fail(self.pos, format!("{what}: {n} bytes needed, {left} left"));
        }
        let bytes = self.data.get(self.pos..self.pos + n).unwrap_or_default();
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], KrlError> {
        Ok(self.take(N, what)?.try_into().unwrap_or([0; N]))
    }

    fn u8(&mut self, what: &str) -> Result<u8, KrlError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, KrlError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, KrlError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// A `string`, as a reader over its contents.
    fn string(&mut self, what: &str) -> Result<Reader<'a>, KrlError> {
        let len = self.u32(what)? as usize;
        let start = self.pos;
        self.take(len, what)?;
        Ok(Reader {
            data: self.data,
            pos: start,
            end: start + len,
        })
    }

    /// A string read as sshbuf_get_cstring reads it: no NUL inside, one at
    /// the end allowed and dropped.
    fn cstring(&mut self, what: &str) -> Result<Reader<'a>, KrlError> {
        let mut string = self.string(what)?;
        let bytes = string.rest();
        match bytes.iter().position(|&b| b == 0) {
            Some(at) if at + 1 < bytes.len() => fail(
                string.pos + at,
                format!("{what}: NUL byte inside the string"),
            ),
            Some(_) => {
                string.end -= 1;
                Ok(string)
            }
            None => Ok(string),
        }
    }

    fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..self.end).unwrap_or_default()
    }

    fn span(&self) -> Span {
        Span {
            start: self.pos as u32,
            len: (self.end - self.pos) as u32,
        }
    }

    fn finish(&self, what: &str) -> Result<(), KrlError> {
        match self.end - self.pos {
            0 => Ok(()),
            left => fail(self.pos, format!("{what}: unparsed data ({left} bytes)")),
        }
    }
}

/// The certificates revoked for one CA, or for any CA.
#[derive(Debug, Default)]
struct CertRevocations {
    /// Inclusive serial ranges, sorted and merged once parsed.
    serials: Vec<(u64, u64)>,
    /// (serial of bit 0, big-endian bitmap without leading zeros), sorted.
    bitmaps: Vec<(u64, Span)>,
    key_ids: Vec<Span>,
}

impl CertRevocations {
    fn finish(&mut self, data: &[u8]) {
        self.serials.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.serials.len());
        for &(lo, hi) in &self.serials {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        self.serials = merged;
        self.bitmaps.sort_unstable_by_key(|&(offset, _)| offset);
        sort_spans(&mut self.key_ids, data);
    }

    /// is_cert_revoked in krl.c: by key ID, then by serial unless it is 0.
    fn revokes(&self, data: &[u8], serial: u64, key_id: &[u8]) -> bool {
        if contains(&self.key_ids, data, key_id) {
            return true;
        }
        if serial == 0 {
            return false;
        }
        let range = self.serials.partition_point(|&(_, hi)| hi < serial);
        if self.serials.get(range).is_some_and(|&(lo, _)| lo <= serial) {
            return true;
        }
        let lowest = serial.saturating_sub(MAX_BITMAP as u64 * 8 - 1);
        let first = self.bitmaps.partition_point(|&(offset, _)| offset < lowest);
        let bitmaps = self.bitmaps.get(first..).unwrap_or_default();
        bitmaps
            .iter()
            .take_while(|&&(offset, _)| offset <= serial)
            .any(|&(offset, bits)| {
                let bits = bits.of(data);
                let index = serial - offset;
                let byte = (index / 8) as usize;
                byte < bits.len() && bits[bits.len() - 1 - byte] & (1 << (index % 8)) != 0
            })
    }
}

fn sort_spans(spans: &mut Vec<Span>, data: &[u8]) {
    spans.sort_unstable_by(|a, b| a.of(data).cmp(b.of(data)));
    spans.dedup_by(|a, b| a.of(data) == b.of(data));
}

fn contains(spans: &[Span], data: &[u8], wanted: &[u8]) -> bool {
    spans
        .binary_search_by(|span| span.of(data).cmp(wanted))
        .is_ok()
}

/// A parsed KRL.
#[derive(Debug)]
pub struct Krl {
    data: Box<[u8]>,
    keys: Vec<Span>,
    sha1: Vec<Span>,
    sha256: Vec<Span>,
    /// Sections whose CA key is empty: any CA.
    any_ca: CertRevocations,
    /// By the CA's key blob, sorted by it.
    by_ca: Vec<(Span, CertRevocations)>,
}

impl Krl {
    /// Parses a KRL, which starts with [`MAGIC`].
    pub fn parse(bytes: &[u8]) -> Result<Krl, KrlError> {
        if u32::try_from(bytes.len()).is_err() {
            return fail(0, "KRL larger than 4 GiB");
        }
        let mut krl = Krl {
            data: bytes.into(),
            keys: Vec::new(),
            sha1: Vec::new(),
            sha256: Vec::new(),
            any_ca: CertRevocations::default(),
            by_ca: Vec::new(),
        };
        let mut cas: HashMap<&[u8], usize> = HashMap::new();
        let mut input = Reader {
            data: bytes,
            pos: 0,
            end: bytes.len(),
        };
        if input.take(MAGIC.len(), "magic")? != MAGIC {
            return fail(0, "not a KRL (bad magic)");
        }
        let at = input.pos;
        let version = input.u32("format version")?;
        if version != FORMAT_VERSION {
            return fail(at, format!("unsupported KRL format version {version}"));
        }
        input.u64("KRL version")?;
        input.u64("generation date")?;
        input.u64("flags")?;
        input.string("reserved field")?;
        input.cstring("comment")?;
        while !input.is_empty() {
            let at = input.pos;
            let kind = input.u8("section type")?;
            let mut section = input.string("section")?;
            match kind {
                SECTION_CERTIFICATES => krl.certificates(&mut section, &mut cas)?,
                SECTION_EXPLICIT_KEY => blobs(&mut section, &mut krl.keys, None)?,
                SECTION_FINGERPRINT_SHA1 => blobs(&mut section, &mut krl.sha1, Some(20))?,
                SECTION_FINGERPRINT_SHA256 => blobs(&mut section, &mut krl.sha256, Some(32))?,
                SECTION_EXTENSION => extension(&mut section, "KRL extension")?,
                // Signatures are no longer checked (OpenSSH 9.4 and later
                // parse past them): the signing key, then the signature.
                SECTION_SIGNATURE => {
                    input.string("KRL signature")?;
                    continue;
                }
                _ => return fail(at, format!("unsupported KRL section type {kind}")),
            }
            section.finish("KRL section")?;
        }
        let data = &krl.data[..];
        sort_spans(&mut krl.keys, data);
        sort_spans(&mut krl.sha1, data);
        sort_spans(&mut krl.sha256, data);
        krl.any_ca.finish(data);
        for (_, revoked) in &mut krl.by_ca {
            revoked.finish(data);
        }
        krl.by_ca
            .sort_unstable_by(|a, b| a.0.of(data).cmp(b.0.of(data)));
        Ok(krl)
    }

    fn certificates<'a>(
        &mut self,
        section: &mut Reader<'a>,
        cas: &mut HashMap<&'a [u8], usize>,
    ) -> Result<(), KrlError> {
        let ca = section.string("certificate section CA key")?;
        section.string("certificate section reserved field")?;
        let revoked = if ca.is_empty() {
            &mut self.any_ca
        } else {
            check_ca_key(&ca)?;
            let index = *cas.entry(ca.rest()).or_insert_with(|| {
                self.by_ca.push((ca.span(), CertRevocations::default()));
                self.by_ca.len() - 1
            });
            match self.by_ca.get_mut(index) {
                Some((_, revoked)) => revoked,
                None => return fail(ca.pos, "internal error: CA index"),
            }
        };
        while !section.is_empty() {
            let at = section.pos;
            let kind = section.u8("certificate subsection type")?;
            let mut sub = section.string("certificate subsection")?;
            match kind {
                CERT_SERIAL_LIST => {
                    while !sub.is_empty() {
                        let at = sub.pos;
                        match sub.u64("revoked serial")? {
                            0 => return fail(at, "serial 0 cannot be revoked"),
                            serial => revoked.serials.push((serial, serial)),
                        }
                    }
                }
                CERT_SERIAL_RANGE => {
                    let lo = sub.u64("serial range start")?;
                    let hi = sub.u64("serial range end")?;
                    if lo == 0 || lo > hi {
                        return fail(sub.pos - 16, format!("bad serial range {lo}-{hi}"));
                    }
                    revoked.serials.push((lo, hi));
                }
                CERT_SERIAL_BITMAP => {
                    let offset = sub.u64("serial bitmap offset")?;
                    if let Some(bits) = bitmap(&mut sub, offset)? {
                        revoked.bitmaps.push((offset, bits));
                    }
                }
                CERT_KEY_ID => {
                    while !sub.is_empty() {
                        revoked.key_ids.push(sub.cstring("revoked key ID")?.span());
                    }
                }
                CERT_EXTENSION => extension(&mut sub, "certificate section extension")?,
                _ => {
                    return fail(
                        at,
                        format!("unsupported certificate subsection {kind:#04x}"),
                    )
                }
            }
            sub.finish("certificate subsection")?;
        }
        Ok(())
    }

    /// Whether `key` (a certificate counts as its certified key) is revoked
    /// by an explicit key blob, a SHA-1 or a SHA-256 hash.
    pub fn is_key_revoked(&self, key: &KeyData) -> bool {
        let key = match key {
            KeyData::Certificate(certificate) => certificate.public_key(),
            key => key,
        };
        // A key that cannot be encoded cannot be checked: refused, as
        // sshd refuses a key whose fingerprint fails.
        let Ok(blob) = key.encode_vec() else {
            return true;
        };
        let data = &self.data[..];
        contains(&self.sha1, data, &sha1(&blob))
            || contains(&self.sha256, data, &Sha256::digest(&blob)[..])
            || contains(&self.keys, data, &blob)
    }

    /// ssh_krl_check_key for a certificate: its key, the certificate itself
    /// (for its CA, then for any CA), then its CA's key.
    pub fn is_certificate_revoked(&self, certificate: &Certificate) -> bool {
        if self.is_key_revoked(certificate.public_key()) {
            return true;
        }
        let data = &self.data[..];
        let (serial, key_id) = (certificate.serial(), certificate.key_id().as_bytes());
        let Ok(ca) = certificate.signature_key().encode_vec() else {
            return true;
        };
        let for_ca = self
            .by_ca
            .binary_search_by(|(blob, _)| blob.of(data).cmp(&ca[..]));
        if let Some((_, revoked)) = for_ca.ok().and_then(|at| self.by_ca.get(at)) {
            if revoked.revokes(data, serial, key_id) {
                return true;
            }
        }
        self.any_ca.revokes(data, serial, key_id)
            || self.is_key_revoked(certificate.signature_key())
    }
}

/// A CA key must be a key OpenSSH can read (sshkey_from_blob), whole.
fn check_ca_key(ca: &Reader<'_>) -> Result<(), KrlError> {
    let mut blob = ca.rest();
    match KeyData::decode(&mut blob) {
        Ok(key) if matches!(key.algorithm(), Algorithm::Other(_)) => fail(
            ca.pos,
            format!(
                "unsupported CA key type {}",
                peer_bytes(key.algorithm().as_str().as_bytes())
            ),
        ),
        Ok(_) if !blob.is_empty() => fail(ca.pos, "CA key has trailing bytes"),
        Ok(_) => Ok(()),
        Err(e) => fail(ca.pos, format!("bad CA key: {e}")),
    }
}

/// An explicit key or hash section: strings, each of `len` bytes if given.
fn blobs(
    section: &mut Reader<'_>,
    into: &mut Vec<Span>,
    len: Option<usize>,
) -> Result<(), KrlError> {
    while !section.is_empty() {
        let at = section.pos;
        let blob = section.string("revoked key or hash")?;
        match len {
            Some(len) if blob.rest().len() != len => {
                let got = blob.rest().len();
                return fail(at, format!("a hash of {got} bytes, not {len}"));
            }
            _ => into.push(blob.span()),
        }
    }
    Ok(())
}

/// An extension (section or certificate subsection): name, critical flag,
/// contents. None is supported, so a critical one makes the KRL unusable.
fn extension(section: &mut Reader<'_>, what: &str) -> Result<(), KrlError> {
    let at = section.pos;
    let name = section.cstring(what)?;
    let critical = section.u8(what)?;
    section.string(what)?;
    section.finish(what)?;
    if critical != 0 {
        let name = peer_bytes(name.rest());
        return fail(at, format!("unsupported critical {what} \"{name}\""));
    }
    Ok(())
}

/// A serial bitmap's mpint, checked as krl.c checks it: not negative, at
/// most 16384 bits, bit 0 not serial 0, and no serial past 2^64 - 1.
/// None if no bit is set.
fn bitmap(sub: &mut Reader<'_>, offset: u64) -> Result<Option<Span>, KrlError> {
    let at = sub.pos;
    let mut bits = sub.string("serial bitmap")?;
    let raw = bits.rest();
    if raw.first().is_some_and(|&b| b & 0x80 != 0) {
        return fail(at, "serial bitmap is a negative mpint");
    }
    if raw.len() > MAX_BITMAP + 1 || (raw.len() == MAX_BITMAP + 1 && raw.first() != Some(&0)) {
        return fail(
            at,
            format!("serial bitmap of {} bytes is too large", raw.len()),
        );
    }
    let zeros = raw.iter().take_while(|&&b| b == 0).count();
    bits.pos += zeros;
    let Some(&top) = bits.rest().first() else {
        return Ok(None);
    };
    let nbits = (bits.rest().len() as u64 - 1) * 8 + u64::from(8 - top.leading_zeros());
    if offset == 0 && bits.rest().last().is_some_and(|&b| b & 1 != 0) {
        return fail(at, "serial bitmap revokes serial 0");
    }
    if offset != 0 && offset.wrapping_neg() < nbits {
        return fail(at, "serial bitmap goes past the largest serial");
    }
    Ok(Some(bits.span()))
}

/// SHA-1 (FIPS 180-4), for the KRL's SHA-1 hash sections only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&(data.len() as u64).wrapping_mul(8).to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().unwrap_or_default());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
                20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let t = [f, e, k, *word]
                .iter()
                .fold(a.rotate_left(5), |t, x| t.wrapping_add(*x));
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (h, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *h = h.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sha1;

    #[test]
    fn sha1_matches_the_standard_vectors() {
        let hex = |d: [u8; 20]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(hex(sha1(long)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
        let million = vec![b'a'; 1_000_000];
        assert_eq!(
            hex(sha1(&million)),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }
}
