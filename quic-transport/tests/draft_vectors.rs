//! Checks the test vectors published with the protocol draft against this
//! crate's code.
//!
//! `draft-notes/test-vectors/userauth.txt` and `frames.txt` are written by
//! `make_userauth_vectors.py`, an independent encoder that follows the draft
//! text (Python, sharing no code with sshq). Every field is recomputed here
//! with sshq's public API and must match byte for byte, so the draft, the
//! vectors and the implementation cannot drift apart unnoticed.
//!
//! (The key-exchange vectors in the same folder are checked by the crate's
//! unit tests in `src/kx/vectors.rs`, which need crate-private code.)

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use sshq_core::channel::{ChannelKind, ChannelRequest, GlobalRequest};
use sshq_core::ssh_key::certificate::{self, CertType};
use sshq_core::ssh_key::private::Ed25519Keypair;
use sshq_core::ssh_key::{Certificate, HashAlg, PrivateKey, Signature};
use sshq_quic::wire::{
    data_header, decode_frame, msg, Codec, Datagram, Frame, UdpRelayTarget, UserauthRequest,
    USERAUTH_EXPORTER_LABEL, USERAUTH_EXPORTER_LEN,
};

/// Test frames always fit; the checked encoder's error would be a test bug.
fn encode_frame(frame: &Frame) -> Bytes {
    sshq_quic::wire::encode_frame(frame).expect("a test frame encodes")
}

fn userauth_signed_data(
    exporter: &[u8],
    user: &str,
    service: &str,
    algorithm: &str,
    public_key: &[u8],
) -> Vec<u8> {
    sshq_quic::wire::userauth_signed_data(exporter, user, service, algorithm, public_key)
        .expect("signed data encodes")
}

/// The vector files, as `name -> bytes`.
struct Vectors {
    file: &'static str,
    fields: BTreeMap<String, Vec<u8>>,
}

impl Vectors {
    /// Reads `name = hex` lines; blank lines and `#` lines are skipped.
    fn load(file: &'static str) -> Vectors {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../draft-notes/test-vectors")
            .join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut fields = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{file}:{}: not `name = hex`", number + 1));
            let bytes = hex::decode(value.trim())
                .unwrap_or_else(|e| panic!("{file}:{}: bad hex: {e}", number + 1));
            let previous = fields.insert(name.trim().to_string(), bytes);
            assert!(previous.is_none(), "{file}: {} appears twice", name.trim());
        }
        Vectors { file, fields }
    }

    fn get(&self, name: &str) -> &[u8] {
        self.fields
            .get(name)
            .unwrap_or_else(|| panic!("{}: no field {name}", self.file))
    }

    fn text(&self, name: &str) -> &str {
        std::str::from_utf8(self.get(name))
            .unwrap_or_else(|_| panic!("{}: {name} is not UTF-8", self.file))
    }

    /// Asserts that `computed` is what the file says for `name`.
    fn check(&self, name: &str, computed: &[u8]) {
        assert_eq!(
            hex::encode(computed),
            hex::encode(self.get(name)),
            "{}: {name} differs from what sshq computes",
            self.file
        );
    }
}

/// Decodes exactly one frame from `bytes`, with nothing left over.
fn decode_one(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let frame = decode_frame(&mut buf)
        .expect("the vector decodes")
        .expect("the vector is one complete frame");
    assert!(buf.is_empty(), "the vector holds exactly one frame");
    frame
}

#[test]
fn userauth_vector() {
    let v = Vectors::load("userauth.txt");

    // Fixed inputs.
    let seed: [u8; 32] = Sha256::digest(b"sshq userauth test vector").into();
    v.check("ed25519_seed", &seed);
    v.check("exporter_label", USERAUTH_EXPORTER_LABEL);
    assert_eq!(USERAUTH_EXPORTER_LEN, 32);
    let exporter = [0x11u8; USERAUTH_EXPORTER_LEN];
    v.check("exporter", &exporter);
    let (user, service, algorithm) = (v.text("user"), v.text("service"), v.text("algorithm"));
    assert_eq!(
        (user, service, algorithm),
        ("alice", "ssh-connection", "ssh-ed25519")
    );

    // The key pair and its SSH public key blob.
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let public = key.public_key();
    let Some(ed25519) = public.key_data().ed25519() else {
        panic!("an Ed25519 key");
    };
    v.check("ed25519_public_key", &ed25519.0);
    let blob = public.to_bytes().expect("encode the public key blob");
    v.check("public_key_blob", &blob);

    // What is signed, and the signature (Ed25519 is deterministic).
    let signed = userauth_signed_data(&exporter, user, service, algorithm, &blob);
    v.check("signed_data", &signed);
    let signature_blob = sshq_core::auth::sign_with_private_key(&key, &signed, None, "vector key")
        .expect("sign the vector");
    v.check("signature_blob", &signature_blob);
    let signature = {
        use sshq_core::ssh_key::encoding::Decode;
        Signature::decode(&mut signature_blob.as_slice()).expect("decode the signature blob")
    };
    assert_eq!(signature.algorithm().as_str(), algorithm);
    v.check("ed25519_signature", signature.as_bytes());
    signature::Verifier::verify(public.key_data(), &signed, &signature)
        .expect("the signature verifies over signed_data");

    // The frame on the control stream, both ways.
    let request = UserauthRequest {
        user: user.to_string(),
        service: service.to_string(),
        algorithm: algorithm.to_string(),
        public_key: blob,
        signature: signature_blob,
    };
    let frame = Frame::UserauthRequest(request);
    v.check("userauth_request_frame", &encode_frame(&frame));
    assert_eq!(decode_one(v.get("userauth_request_frame")), frame);
}

#[test]
fn userauth_signature_is_bound_to_the_exporter() {
    // The vector's signature must fail for any other exporter value: this
    // is the property the draft's security considerations rely on.
    let v = Vectors::load("userauth.txt");
    let seed: [u8; 32] = Sha256::digest(b"sshq userauth test vector").into();
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let public = key.public_key();
    let signature = {
        use sshq_core::ssh_key::encoding::Decode;
        Signature::decode(&mut v.get("signature_blob")).expect("decode the signature blob")
    };
    let mut other = [0x11u8; 32];
    other[31] = 0x12;
    let data = userauth_signed_data(
        &other,
        "alice",
        "ssh-connection",
        "ssh-ed25519",
        v.get("public_key_blob"),
    );
    assert!(signature::Verifier::verify(public.key_data(), &data, &signature).is_err());
}

#[test]
fn frame_vectors() {
    let v = Vectors::load("frames.txt");
    let cases: Vec<(&str, Frame)> = vec![
        (
            "channel_open_session",
            Frame::ChannelOpen(ChannelKind::Session),
        ),
        ("channel_open_confirmation", Frame::OpenConfirmation),
        (
            "channel_request_exec_echo_hi",
            Frame::ChannelRequest {
                request: ChannelRequest::Exec(b"echo hi".to_vec()),
                want_reply: true,
            },
        ),
        ("channel_success", Frame::ChannelSuccess),
        ("channel_data_hi", Frame::Data(Bytes::from_static(b"hi\n"))),
        (
            "channel_request_exit_status_42",
            Frame::ChannelRequest {
                request: ChannelRequest::ExitStatus(42),
                want_reply: false,
            },
        ),
        ("userauth_success", Frame::UserauthSuccess),
        (
            "userauth_failure_publickey",
            Frame::UserauthFailure {
                methods: "publickey".to_string(),
                partial: false,
            },
        ),
        (
            "global_request_tcpip_forward",
            Frame::GlobalRequest {
                request: GlobalRequest::TcpipForward {
                    address: "localhost".to_string(),
                    port: 0,
                },
                want_reply: true,
            },
        ),
        (
            "request_success_bound_port_40000",
            Frame::RequestSuccess {
                bound_port: Some(40000),
            },
        ),
    ];
    for (name, frame) in &cases {
        v.check(name, &encode_frame(frame));
        assert_eq!(&decode_one(v.get(name)), frame, "{name} decodes");
    }
    // Every field in the file is covered by a case above.
    assert_eq!(
        v.fields.len(),
        cases.len(),
        "frames.txt has unchecked fields"
    );

    // The zero-copy DATA header sshq uses for bulk data gives the same bytes.
    let mut data = BytesMut::from(&data_header(None, 3).expect("header")[..]);
    data.extend_from_slice(b"hi\n");
    v.check("channel_data_hi", &data);

    // Message numbers quoted in the draft.
    let data_frame = v.get("channel_data_hi");
    assert_eq!(data_frame.get(4), Some(&msg::CHANNEL_DATA));
    assert_eq!(
        v.get("channel_open_session").get(4),
        Some(&msg::CHANNEL_OPEN)
    );
}

#[tokio::test]
async fn udp_relay_vectors() {
    use sshq_quic::wire::udp_relay::{is_subsystem, SUBSYSTEM, SUBSYSTEM_WITH_DOMAIN};
    let v = Vectors::load("udp-relay.txt");
    // The name the client sends (draft §11.1 item 1, Appendix A item 24),
    // and the draft's name with a domain, which servers accept beside it.
    for (vector, name) in [
        ("subsystem_request_over_sshq", SUBSYSTEM),
        (
            "subsystem_request_with_domain_over_sshq",
            SUBSYSTEM_WITH_DOMAIN,
        ),
    ] {
        let request = Frame::ChannelRequest {
            request: ChannelRequest::Subsystem(name.to_string()),
            want_reply: true,
        };
        v.check(vector, &encode_frame(&request));
        assert!(is_subsystem(name), "sshqd refuses {name}");
    }
    assert_eq!(SUBSYSTEM, "direct-udp@sshq");
    assert_eq!(SUBSYSTEM_WITH_DOMAIN, "direct-udp@sshq.dev");
    let mut datagram = Vec::new();
    sshq_quic::stream_socket::write_datagram(&mut datagram, b"hello")
        .await
        .expect("encode");
    v.check("datagram_hello", &datagram);
    let mut input = v.get("datagram_hello");
    let decoded = sshq_quic::stream_socket::read_datagram(&mut input)
        .await
        .expect("decode");
    assert_eq!(decoded.as_deref(), Some(&b"hello"[..]));
    // The codecs both sides use (sshq's client writes the target, sshqd's
    // relay reads it), byte-exact both ways.
    let target = UdpRelayTarget {
        host: "h.example".to_string(),
        port: 443,
    };
    v.check("target_h_example_443", &target.to_vec().expect("encode"));
    assert_eq!(
        UdpRelayTarget::decode(v.get("target_h_example_443")),
        Ok(target)
    );
    let hello = Datagram(Bytes::from_static(b"hello"));
    v.check("datagram_hello", &hello.to_vec().expect("encode"));
    assert_eq!(Datagram::decode(v.get("datagram_hello")), Ok(hello));
}

#[test]
fn tunnel_vectors() {
    use sshq_quic::wire::ErrorCode;
    let v = Vectors::load("tunnel.txt");
    v.check("alpn", sshq_quic::tunnel::TUNNEL_ALPN);
    for (name, code) in [
        (
            "relay_target_unreachable",
            ErrorCode::RelayTargetUnreachable,
        ),
        ("relay_busy", ErrorCode::RelayBusy),
        ("tunnel_aborted", ErrorCode::TunnelAborted),
        ("stream_refused", ErrorCode::StreamRefused),
    ] {
        // Codes below 64 are one-octet varints: the octet is the code.
        let octet = u8::try_from(code.code()).expect("a one-octet code");
        v.check(name, &[octet]);
        assert_eq!(ErrorCode::from_code(u64::from(octet)), Some(code));
    }
}

/// An Ed25519 key from the SHA-256 of `label` (the vectors' seeds).
fn seeded_key(v: &Vectors, seed_field: &str, label: &str) -> PrivateKey {
    let seed: [u8; 32] = Sha256::digest(label.as_bytes()).into();
    v.check(seed_field, &seed);
    PrivateKey::from(Ed25519Keypair::from_seed(&seed))
}

/// What differs between the vectors' certificates; all are valid from
/// 1700000000 to 4102444800, for Ed25519 keys, with no critical options.
struct VectorCertificate {
    /// The nonce is 32 copies of this octet.
    nonce: u8,
    serial: u64,
    kind: CertType,
    key_id: &'static str,
    principal: &'static str,
    extensions: &'static [&'static str],
}

impl VectorCertificate {
    fn sign(&self, subject: &PrivateKey, ca: &PrivateKey) -> Certificate {
        let mut builder = certificate::Builder::new(
            [self.nonce; 32],
            subject.public_key().key_data().clone(),
            1_700_000_000,
            4_102_444_800,
        )
        .expect("a certificate builder");
        builder
            .serial(self.serial)
            .and_then(|b| b.cert_type(self.kind))
            .and_then(|b| b.key_id(self.key_id))
            .and_then(|b| b.valid_principal(self.principal))
            .expect("certificate fields");
        for extension in self.extensions {
            builder.extension(*extension, "").expect("an extension");
        }
        builder.sign(ca).expect("the CA signs")
    }
}

#[test]
fn host_certificate_vectors() {
    let v = Vectors::load("certificates.txt");
    let ca = seeded_key(&v, "ca_seed", "sshq certificate authority test vector");
    let host = seeded_key(&v, "host_seed", "sshq host key test vector");
    let raw = |key: &PrivateKey| key.public_key().key_data().ed25519().map(|k| k.0.to_vec());
    v.check("ca_public_key", &raw(&ca).expect("Ed25519"));
    v.check("host_public_key", &raw(&host).expect("Ed25519"));

    // draft §5.5: an OpenSSH host certificate, as ssh-key encodes one.
    let certificate = VectorCertificate {
        nonce: 0x22,
        serial: 7,
        kind: CertType::Host,
        key_id: "host",
        principal: "server.example",
        extensions: &[],
    }
    .sign(&host, &ca);
    let blob = certificate.to_bytes().expect("encode the certificate");
    v.check("host_certificate", &blob);
    let parsed = Certificate::from_bytes(v.get("host_certificate")).expect("parse the vector");
    let ca_fingerprint = ca.public_key().fingerprint(HashAlg::Sha256);
    parsed
        .validate_at(1_800_000_000, [&ca_fingerprint])
        .expect("the CA's signature verifies");

    // draft §5.5: the request and both answers on the control stream.
    let request = Frame::HostCertificateRequest;
    v.check("host_certificate_request_frame", &encode_frame(&request));
    assert_eq!(decode_one(v.get("host_certificate_request_frame")), request);
    let answer = Frame::HostCertificate(Bytes::from(blob));
    v.check("host_certificate_frame", &encode_frame(&answer));
    assert_eq!(decode_one(v.get("host_certificate_frame")), answer);
    let none = Frame::HostCertificate(Bytes::new());
    v.check("host_certificate_none_frame", &encode_frame(&none));
    assert_eq!(decode_one(v.get("host_certificate_none_frame")), none);
}

#[test]
fn user_certificate_userauth_vector() {
    let v = Vectors::load("certificates.txt");
    let ca = seeded_key(&v, "ca_seed", "sshq certificate authority test vector");
    let user = seeded_key(&v, "user_seed", "sshq userauth test vector");
    let certificate = VectorCertificate {
        nonce: 0x33,
        serial: 8,
        kind: CertType::User,
        key_id: "alice@example",
        principal: "alice",
        extensions: &["permit-pty"],
    }
    .sign(&user, &ca);
    let blob = certificate.to_bytes().expect("encode the certificate");
    v.check("user_certificate", &blob);

    // draft §7.5: the algorithm names the certificate; the key signs with its own algorithm.
    let exporter = [0x11u8; USERAUTH_EXPORTER_LEN];
    v.check("exporter", &exporter);
    let algorithm = "ssh-ed25519-cert-v01@openssh.com";
    let signed = userauth_signed_data(&exporter, "alice", "ssh-connection", algorithm, &blob);
    v.check("user_cert_signed_data", &signed);
    let signature_blob = sshq_core::auth::sign_with_private_key(&user, &signed, None, "vector key")
        .expect("sign the vector");
    v.check("user_cert_signature_blob", &signature_blob);
    let request = Frame::UserauthRequest(UserauthRequest {
        user: "alice".to_string(),
        service: "ssh-connection".to_string(),
        algorithm: algorithm.to_string(),
        public_key: blob,
        signature: signature_blob,
    });
    v.check("user_cert_userauth_request_frame", &encode_frame(&request));
    assert_eq!(
        decode_one(v.get("user_cert_userauth_request_frame")),
        request
    );
}

/// draft §15.7: the password and keyboard-interactive frames and a
/// partial-success USERAUTH_FAILURE, as `make_password_vectors.py` writes
/// them from the draft text.
#[test]
fn password_vectors() {
    use sshq_core::auth_methods::{name_list, parse_name_list, AuthMethod, InfoRequest, Prompt};
    use sshq_core::zeroize::Zeroizing;
    use sshq_quic::wire::{
        InfoResponse, KeyboardInteractiveRequest, OtherMethodRequest, PasswordRequest,
    };

    let v = Vectors::load("passwords.txt");
    let exporter = [0x11u8; USERAUTH_EXPORTER_LEN];
    v.check("exporter", &exporter);
    let (user, password, code) = (v.text("user"), v.text("password"), v.text("code"));

    let password_request = Frame::UserauthPassword(PasswordRequest {
        user: user.to_string(),
        service: "ssh-connection".to_string(),
        exporter: exporter.to_vec(),
        password: Zeroizing::new(password.to_string()),
    });
    let keyboard_interactive = Frame::UserauthKeyboardInteractive(KeyboardInteractiveRequest {
        user: user.to_string(),
        service: "ssh-connection".to_string(),
        exporter: exporter.to_vec(),
        submethods: String::new(),
    });
    let info_request = Frame::UserauthInfoRequest(InfoRequest {
        name: "sshq".to_string(),
        instruction: "Two factors".to_string(),
        prompts: vec![
            Prompt {
                text: "Password: ".to_string(),
                echo: false,
            },
            Prompt {
                text: "Verification code: ".to_string(),
                echo: true,
            },
        ],
    });
    let info_response = Frame::UserauthInfoResponse(InfoResponse {
        responses: vec![
            Zeroizing::new(password.to_string()),
            Zeroizing::new(code.to_string()),
        ],
    });
    // The lists come from core's name-list, in sshd's order.
    let partial = Frame::UserauthFailure {
        methods: name_list(&[AuthMethod::Password]),
        partial: true,
    };
    let failure = Frame::UserauthFailure {
        methods: name_list(&AuthMethod::ALL),
        partial: false,
    };
    let none = Frame::UserauthOtherMethod(OtherMethodRequest {
        user: user.to_string(),
        service: "ssh-connection".to_string(),
        method: "none".to_string(),
    });
    for (name, frame) in [
        ("password_request_frame", &password_request),
        ("keyboard_interactive_request_frame", &keyboard_interactive),
        ("info_request_frame", &info_request),
        ("info_response_frame", &info_response),
        ("partial_failure_frame", &partial),
        ("failure_frame", &failure),
        ("none_request_frame", &none),
    ] {
        v.check(name, &encode_frame(frame));
        assert_eq!(&decode_one(v.get(name)), frame, "{name} decodes back");
    }
    assert_eq!(
        parse_name_list("publickey,password,keyboard-interactive"),
        AuthMethod::ALL.to_vec()
    );
}
