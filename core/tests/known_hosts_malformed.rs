//! Garbage in known_hosts files: skipped line by line, never a panic, never
//! hiding the valid lines around it.

use sshq_core::known_hosts::KnownHosts;

#[test]
fn malformed_lines_are_skipped_without_panic() {
    let ed = "AAAAC3NzaC1lZDI1NTE5AAAAIKFZ5GqrWnXZWubdvDkQDxWR/BLcuy3UNxb4JHJ+/A/g";
    let lines = [
        "@revoked".to_string(),
        "@revoked ".to_string(),
        "@bogus host ssh-ed25519 AAAA".to_string(),
        "host".to_string(),
        "host ssh-ed25519".to_string(),
        "host ssh-ed25519 !!!notbase64".to_string(),
        "host ssh-rsa ".to_string() + ed, // type does not match the blob
        format!("host ssh-ed25519 {}", &ed[..40]), // truncated key
        "|1|short|x ssh-ed25519 ".to_string() + ed,
        "|1|| ssh-ed25519 ".to_string() + ed,
        "|2|abc|def ssh-ed25519 ".to_string() + ed,
        "host # ssh-ed25519 ".to_string() + ed,
        "host AAAAAAAA AAAAAAAA".to_string(),
        "host ssh-ed25519 AAAAAAAA".to_string(),
        "1024 35 1234567".to_string(),
        "\u{0}\u{1}\u{7f}".to_string(),
    ];
    let mut content = lines.join("\n").into_bytes();
    content.extend_from_slice(b"\n\xff\xfe binary \x00 junk\n");
    content.extend_from_slice(format!("good ssh-ed25519 {ed} comment # x\r\n").as_bytes());
    let kh = KnownHosts::from_content("/x", &content);
    assert_eq!(kh.entries().len(), 1, "{:?}", kh.invalid_lines());
    assert_eq!(kh.entries()[0].hosts(), "good");
    assert_eq!(kh.entries()[0].location().line, lines.len() + 2);
    assert_eq!(kh.invalid_lines().len(), lines.len() + 1);

    // Deterministic pseudo-random garbage: must never panic.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..2000 {
        let mut junk = Vec::new();
        for _ in 0..(state % 200) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let alphabet = b" \t\n\r,!*?|@#[]:1AZaz+/=";
            junk.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        let kh = KnownHosts::from_content("/junk", &junk);
        let _ = kh.known_key_types("a", 2222);
    }
}
