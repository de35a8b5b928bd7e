//! Peer-controlled text made safe for logs, as OpenSSH's log.c does it.
//!
//! A user name, a subsystem name or a version string comes from whoever
//! connects. Written to a log as is, a newline in it forges a second log
//! line ("Accepted publickey for root ..."), and escape sequences can
//! rewrite an administrator's terminal. OpenSSH passes every message
//! through strnvis(3) with VIS_OCTAL, so that every byte that is not
//! printable ASCII becomes a backslash and three octal digits. [`peer_text`]
//! does the same to one field, and cuts it to [`MAX_FIELD`] bytes first so
//! that a peer cannot fill the logs (or memory) with one oversized value.
//! [`control_chars`] is the last line of defence in the log writer: it
//! escapes control characters in a whole formatted line, so that a log site
//! that forgot [`peer_text`] still cannot split a line.

use std::fmt::Write as _;

/// The most bytes of one peer-controlled field that reach a log.
// draft §12.12: a server MUST cap the length logged of any one peer-supplied field
pub const MAX_FIELD: usize = 256;

/// `text` as a log field: at most [`MAX_FIELD`] bytes of it (then `...`),
/// with backslashes doubled and every byte outside printable ASCII written
/// as `\ooo` (octal), as strnvis(VIS_OCTAL) writes it.
// draft §12.12: a server MUST escape control characters and non-printable octets in peer text
pub fn peer_text(text: &str) -> String {
    peer_bytes(text.as_bytes())
}

/// [`peer_text`] for raw bytes (e.g. a version line that is not UTF-8).
pub fn peer_bytes(bytes: &[u8]) -> String {
    let (shown, cut) = match bytes.get(..MAX_FIELD) {
        Some(head) if bytes.len() > MAX_FIELD => (head, true),
        _ => (bytes, false),
    };
    let mut out = String::with_capacity(shown.len() + 3);
    for &byte in shown {
        match byte {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => {
                let _ = write!(out, "\\{byte:03o}");
            }
        }
    }
    if cut {
        out.push_str("...");
    }
    out
}

/// sshd's way of naming a connection in logs: "user NAME ADDR port PORT"
/// (the user part only once there is one), with the user name escaped.
pub fn connection_id(user: &str, peer: Option<std::net::SocketAddr>) -> String {
    let preamble = if user.is_empty() {
        String::new()
    } else {
        format!("user {} ", peer_text(user))
    };
    match peer {
        Some(peer) => format!("{preamble}{} port {}", peer.ip(), peer.port()),
        None => format!("{preamble}UNKNOWN port 65535"),
    }
}

/// `line` with every control character (C0, DEL, C1) written as `\ooo`,
/// byte by byte; everything else, backslashes included, is left alone so
/// that fields already escaped by [`peer_text`] are not escaped twice.
pub fn control_chars(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if c.is_control() {
            let mut utf8 = [0u8; 4];
            for byte in c.encode_utf8(&mut utf8).bytes() {
                let _ = write!(out, "\\{byte:03o}");
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_is_kept() {
        assert_eq!(peer_text("alice_01-x.y@z"), "alice_01-x.y@z");
    }

    #[test]
    fn newline_and_controls_become_octal() {
        assert_eq!(
            peer_text("bob\nAccepted publickey for root"),
            "bob\\012Accepted publickey for root"
        );
        assert_eq!(peer_text("\r\t\x1b[2J\x7f"), "\\015\\011\\033[2J\\177");
        assert_eq!(peer_text("a\0b"), "a\\000b");
    }

    #[test]
    fn backslash_is_doubled_so_escapes_cannot_be_faked() {
        assert_eq!(peer_text("a\\012b"), "a\\\\012b");
    }

    #[test]
    fn non_ascii_bytes_become_octal() {
        // U+202E (right-to-left override) could reorder what an admin reads.
        assert_eq!(peer_text("\u{202e}x"), "\\342\\200\\256x");
        assert_eq!(peer_bytes(&[0xff, b'a']), "\\377a");
    }

    #[test]
    fn long_fields_are_cut() {
        let long = "x".repeat(1 << 20);
        let shown = peer_text(&long);
        assert_eq!(shown.len(), MAX_FIELD + 3);
        assert!(shown.ends_with("..."));
        assert_eq!(peer_text(&"y".repeat(MAX_FIELD)), "y".repeat(MAX_FIELD));
    }

    #[test]
    fn whole_lines_lose_only_their_control_characters() {
        assert_eq!(control_chars("plain \\ line"), "plain \\ line");
        assert_eq!(control_chars("a\nb\u{85}c"), "a\\012b\\302\\205c");
        assert_eq!(control_chars("caf\u{e9}"), "caf\u{e9}");
    }
}
