//! known_hosts reading, matching and writing, checked against OpenSSH's own
//! `ssh-keygen` on keys and files it made.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{key_text, keygen, keygen_find, run};
use sshq_core::known_hosts::{
    append_entry, fingerprint_sha256, key_type_name, KnownHosts, KnownHostsError, Location, Lookup,
    Marker,
};

fn loc(path: &Path, line: usize) -> Location {
    Location {
        path: path.to_path_buf(),
        line,
    }
}

#[test]
fn fingerprints_and_type_names_match_ssh_keygen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &[&str], &str); 5] = [
        ("ed25519", &[], "ED25519"),
        ("ecdsa", &["-b", "256"], "ECDSA"),
        ("ecdsa", &["-b", "384"], "ECDSA"),
        ("ecdsa", &["-b", "521"], "ECDSA"),
        ("rsa", &["-b", "2048"], "RSA"),
    ];
    for (i, (kind, extra, type_name)) in cases.iter().enumerate() {
        let (key, pub_path) = keygen(dir.path(), &format!("k{i}"), kind, extra);
        let (ok, listed) = run("ssh-keygen", &["-lf", pub_path.to_str().expect("utf-8")]);
        assert!(ok);
        // "256 SHA256:... comment (ED25519)"
        let fields: Vec<&str> = listed.split_whitespace().collect();
        assert_eq!(
            fields.get(1).copied(),
            Some(fingerprint_sha256(&key).as_str())
        );
        assert_eq!(
            fields.last().copied(),
            Some(format!("({type_name})").as_str())
        );
        assert_eq!(key_type_name(&key), *type_name);
    }
}

#[test]
fn port_22_uses_the_bare_name_and_other_ports_the_bracket_form() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ed, ed_pub) = keygen(dir.path(), "ed", "ed25519", &[]);
    let (ec, ec_pub) = keygen(dir.path(), "ec", "ecdsa", &[]);
    let file = dir.path().join("known_hosts");
    let content = format!(
        "# comment\n\nhost.example {}\n[host.example]:2222 {}\n",
        key_text(&ed_pub),
        key_text(&ec_pub)
    );
    fs::write(&file, content).expect("write");
    let kh = KnownHosts::read_files(&[&file]).expect("read");

    assert_eq!(keygen_find("host.example", &file), [3]);
    assert_eq!(keygen_find("[host.example]:2222", &file), [4]);
    assert_eq!(
        kh.lookup("host.example", 22, &ed),
        Lookup::Found(loc(&file, 3))
    );
    assert_eq!(
        kh.lookup("HOST.example", 22, &ed),
        Lookup::Found(loc(&file, 3))
    );
    assert_eq!(
        kh.lookup("host.example", 2222, &ec),
        Lookup::Found(loc(&file, 4))
    );
    // The port-22 line does not make the ECDSA key known on port 22...
    assert_eq!(
        kh.lookup("host.example", 22, &ec),
        Lookup::Changed {
            location: loc(&file, 3),
            key_type: "ED25519"
        }
    );
    // ...but, as ssh, a key recorded under the bare name is accepted on any
    // port where nothing else is recorded ("found matching key w/out port").
    assert_eq!(
        kh.lookup("host.example", 2200, &ed),
        Lookup::Found(loc(&file, 3))
    );
    // A different key under the bare name does not make another port "changed".
    assert_eq!(kh.lookup("host.example", 2200, &ec), Lookup::NotFound);
    assert_eq!(kh.lookup("other.example", 22, &ed), Lookup::NotFound);
    assert_eq!(
        kh.known_key_types("host.example", 2222),
        ["ecdsa-sha2-nistp256"]
    );
    assert_eq!(kh.known_key_types("host.example", 22), ["ssh-ed25519"]);
}

#[test]
fn wildcards_and_negation_agree_with_ssh_keygen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, ed_pub) = keygen(dir.path(), "ed", "ed25519", &[]);
    let key = key_text(&ed_pub);
    let patterns = [
        "*.example.com,!bad.example.com",
        "host?.lan",
        "[10.0.0.*]:2222",
        "!*.org,*.net",
        "Mixed.CASE.Example",
        "*",
        "192.168.1.1,[192.168.1.1]:22",
        "a*b*c",
    ];
    let file = dir.path().join("known_hosts");
    let content: String = patterns.iter().map(|p| format!("{p} {key}\n")).collect();
    fs::write(&file, content).expect("write");
    let kh = KnownHosts::read_files(&[&file]).expect("read");
    assert_eq!(kh.entries().len(), patterns.len());

    let names = [
        "www.example.com",
        "bad.example.com",
        "example.com",
        "host1.lan",
        "host12.lan",
        "[10.0.0.7]:2222",
        "10.0.0.7",
        "x.net",
        "x.org",
        "mixed.case.example",
        "192.168.1.1",
        "[192.168.1.1]:22",
        "abc",
        "axxbyyc",
        "acb",
    ];
    for name in names {
        let ours: Vec<usize> = kh
            .entries()
            .iter()
            .filter(|e| e.matches_host(name))
            .map(|e| e.location().line)
            .collect();
        assert_eq!(ours, keygen_find(name, &file), "matching {name}");
    }
    // Spot checks, so the test does not only rely on agreement.
    let lines_for = |name: &str| -> Vec<usize> {
        kh.entries()
            .iter()
            .filter(|e| e.matches_host(name))
            .map(|e| e.location().line)
            .collect()
    };
    assert_eq!(lines_for("bad.example.com"), [6]);
    // Negated on line 4, yet line 6 ("*") still names it.
    assert_eq!(lines_for("x.org"), [6]);
    assert_eq!(lines_for("x.net"), [4, 6]);
    assert_eq!(lines_for("host1.lan"), [2, 6]);
}

#[test]
fn hashed_files_made_by_ssh_keygen_are_matched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ed, ed_pub) = keygen(dir.path(), "ed", "ed25519", &[]);
    let (rsa, rsa_pub) = keygen(dir.path(), "rsa", "rsa", &["-b", "2048"]);
    let file = dir.path().join("known_hosts");
    let content = format!(
        "alpha.example,10.1.2.3 {}\n[beta.example]:2222 {}\n",
        key_text(&ed_pub),
        key_text(&rsa_pub)
    );
    fs::write(&file, content).expect("write");
    let (ok, _) = run("ssh-keygen", &["-H", "-f", file.to_str().expect("utf-8")]);
    assert!(ok, "ssh-keygen -H");
    let hashed = fs::read_to_string(&file).expect("read");
    assert!(
        !hashed.contains("example"),
        "names must be hashed: {hashed}"
    );

    let kh = KnownHosts::read_files(&[&file]).expect("read");
    assert_eq!(
        kh.entries().len(),
        3,
        "ssh-keygen -H splits alpha and its address"
    );
    assert!(kh.entries().iter().all(|e| e.is_hashed()));
    assert!(matches!(
        kh.lookup("alpha.example", 22, &ed),
        Lookup::Found(_)
    ));
    assert!(matches!(kh.lookup("10.1.2.3", 22, &ed), Lookup::Found(_)));
    assert!(matches!(
        kh.lookup("beta.example", 2222, &rsa),
        Lookup::Found(_)
    ));
    assert!(matches!(
        kh.lookup("beta.example", 2222, &ed),
        Lookup::Changed { .. }
    ));
    assert_eq!(kh.lookup("gamma.example", 22, &ed), Lookup::NotFound);
    assert_eq!(kh.lookup("beta.example", 22, &rsa), Lookup::NotFound);
    assert_eq!(
        kh.other_names("gamma.example", 22, &ed),
        [
            format!("{}:1: [hashed name]", file.display()),
            format!("{}:2: [hashed name]", file.display())
        ]
    );
}

#[test]
fn revoked_key_is_refused_even_if_another_line_accepts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ed, ed_pub) = keygen(dir.path(), "ed", "ed25519", &[]);
    let (other, _) = keygen(dir.path(), "other", "ed25519", &[]);
    let file = dir.path().join("known_hosts");
    let key = key_text(&ed_pub);
    let content = format!("server {key}\n@cert-authority *.lan {key}\n@revoked * {key}\n");
    fs::write(&file, content).expect("write");
    let kh = KnownHosts::read_files(&[&file]).expect("read");
    assert_eq!(kh.entries()[1].marker(), Some(Marker::CertAuthority));
    assert_eq!(kh.entries()[2].marker(), Some(Marker::Revoked));
    assert_eq!(kh.lookup("server", 22, &ed), Lookup::Revoked(loc(&file, 3)));
    assert_eq!(
        kh.lookup("server", 2222, &ed),
        Lookup::Revoked(loc(&file, 3))
    );
    // The revocation is of this key only.
    assert!(matches!(
        kh.lookup("server", 22, &other),
        Lookup::Changed { .. }
    ));
    // A CA line is not a host key: it neither accepts nor conflicts.
    assert_eq!(kh.lookup("box.lan", 22, &other), Lookup::NotFound);
}

#[test]
fn changed_key_reports_the_offending_line_and_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ed, _) = keygen(dir.path(), "ed", "ed25519", &[]);
    let (_, old_pub) = keygen(dir.path(), "old", "ed25519", &[]);
    let (_, rsa_pub) = keygen(dir.path(), "rsa", "rsa", &["-b", "2048"]);
    let first = dir.path().join("kh1");
    let second = dir.path().join("kh2");
    fs::write(
        &first,
        format!("other {}\nsrv {}\n", key_text(&old_pub), key_text(&rsa_pub)),
    )
    .expect("write");
    fs::write(
        &second,
        format!("# x\nsrv,srv.lan {}\n", key_text(&old_pub)),
    )
    .expect("write");

    let only_rsa = KnownHosts::read_files(&[&first]).expect("read");
    // OpenSSH 9.2: a host known only with a key of another type is "changed".
    assert_eq!(
        only_rsa.lookup("srv", 22, &ed),
        Lookup::Changed {
            location: loc(&first, 2),
            key_type: "RSA"
        }
    );
    // The last mismatching line (in file order) is the offending one.
    let both = KnownHosts::read_files(&[&first, &second]).expect("read");
    assert_eq!(
        both.lookup("srv", 22, &ed),
        Lookup::Changed {
            location: loc(&second, 2),
            key_type: "ED25519"
        }
    );
    assert_eq!(both.known_key_types("srv", 22), ["ssh-rsa", "ssh-ed25519"]);
}

#[test]
fn appended_entries_are_found_by_ssh_keygen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ed, ed_pub) = keygen(dir.path(), "ed", "ed25519", &[]);
    let (ec, _) = keygen(dir.path(), "ec", "ecdsa", &[]);
    let ssh_dir = dir.path().join("dot-ssh");
    let file = ssh_dir.join("known_hosts");

    append_entry(&file, "127.0.0.1", 2222, &ed, false).expect("append");
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&ssh_dir), 0o700);
    assert_eq!(mode(&file), 0o600);
    assert_eq!(
        fs::read_to_string(&file).expect("read"),
        format!("[127.0.0.1]:2222 {}\n", key_text(&ed_pub))
    );
    assert_eq!(keygen_find("[127.0.0.1]:2222", &file), [1]);

    append_entry(&file, "Box.Example", 22, &ec, true).expect("append hashed");
    let text = fs::read_to_string(&file).expect("read");
    let second = text.lines().nth(1).expect("two lines");
    assert!(
        second.starts_with("|1|") && second.contains(" ecdsa-sha2-nistp256 "),
        "{second}"
    );
    assert_eq!(keygen_find("box.example", &file), [2]);
    let kh = KnownHosts::read_files(&[&file]).expect("read");
    assert_eq!(
        kh.lookup("box.example", 22, &ec),
        Lookup::Found(loc(&file, 2))
    );
    assert_eq!(
        kh.lookup("127.0.0.1", 2222, &ed),
        Lookup::Found(loc(&file, 1))
    );
}

#[test]
fn a_file_without_final_newline_gets_one_before_the_new_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ed, ed_pub) = keygen(dir.path(), "ed", "ed25519", &[]);
    let (ec, _) = keygen(dir.path(), "ec", "ecdsa", &[]);
    let file = dir.path().join("known_hosts");
    fs::write(&file, format!("first.example {}", key_text(&ed_pub))).expect("write");
    let kh = KnownHosts::read_files(&[&file]).expect("read");
    assert_eq!(
        kh.lookup("first.example", 22, &ed),
        Lookup::Found(loc(&file, 1))
    );

    append_entry(&file, "second.example", 22, &ec, false).expect("append");
    let text = fs::read_to_string(&file).expect("read");
    assert_eq!(text.lines().count(), 2);
    assert!(text.ends_with('\n'));
    assert_eq!(keygen_find("first.example", &file), [1]);
    assert_eq!(keygen_find("second.example", &file), [2]);
}

#[test]
fn missing_files_are_empty_and_unreadable_ones_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    let kh = KnownHosts::read_files(&[&missing]).expect("missing is fine");
    assert!(kh.entries().is_empty());

    // A directory cannot be read as a file, even by root.
    let err = KnownHosts::read_files(&[dir.path()]).expect_err("directory");
    assert!(matches!(&err, KnownHostsError::Read { path, .. } if path == dir.path()));
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );

    // Writing into a "directory" that is a file fails with the path too.
    let blocker = dir.path().join("file");
    fs::write(&blocker, "x").expect("write");
    let (ed, _) = keygen(dir.path(), "ed", "ed25519", &[]);
    let target = blocker.join("known_hosts");
    let err = append_entry(&target, "h", 22, &ed, false).expect_err("not a directory");
    assert!(matches!(&err, KnownHostsError::Write { path, .. } if *path == target));
}

#[test]
fn malformed_lines_around_valid_ones_do_not_hide_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ed, ed_pub) = keygen(dir.path(), "ed", "ed25519", &[]);
    let key = key_text(&ed_pub);
    let file = dir.path().join("known_hosts");
    let mut content = Vec::new();
    content.extend_from_slice(b"\xff\xfe\x00garbage\n@revoked\nhost-only\n");
    content
        .extend_from_slice(format!("  \t indented.example {key} trailing comment\r\n").as_bytes());
    content.extend_from_slice(format!("|1|AAAA|BBBB {key}\n@unknown x {key}\n").as_bytes());
    content.extend_from_slice(
        format!("tabbed.example\t{key}\n")
            .replace(' ', "\t")
            .as_bytes(),
    );
    fs::write(&file, &content).expect("write");
    let kh = KnownHosts::read_files(&[&file]).expect("read");
    assert_eq!(
        kh.lookup("indented.example", 22, &ed),
        Lookup::Found(loc(&file, 4))
    );
    assert_eq!(
        kh.lookup("tabbed.example", 22, &ed),
        Lookup::Found(loc(&file, 7))
    );
    let invalid: Vec<usize> = kh.invalid_lines().iter().map(|l| l.line).collect();
    assert_eq!(invalid, [1, 2, 3, 5, 6]);
    // ssh-keygen agrees on the valid ones.
    assert_eq!(keygen_find("indented.example", &file), [4]);
    assert_eq!(keygen_find("tabbed.example", &file), [7]);
}
