use super::*;
use sshq_core::auth_methods::{Prompt, MAX_PROMPTS};
use sshq_core::channel::{ExitSignal, OpenFailureReason, PtyRequest, WindowSize};

fn enc(frame: &Frame) -> Bytes {
    encode_frame(frame).expect("encodes")
}

/// A frame of type `kind` with `payload` as is, however wrong.
fn raw_frame(kind: u8, payload: &[u8]) -> BytesMut {
    let len = u32::try_from(payload.len() + 1).expect("small");
    let mut frame = BytesMut::from(&len.to_be_bytes()[..]);
    frame.extend_from_slice(&[kind]);
    frame.extend_from_slice(payload);
    frame
}

fn roundtrip(frame: Frame) {
    let mut bytes = BytesMut::from(&enc(&frame)[..]);
    let decoded = decode_frame(&mut bytes)
        .expect("decodes")
        .expect("complete");
    assert_eq!(decoded, frame);
    assert!(bytes.is_empty(), "one frame, nothing left over");
}

#[test]
fn every_frame_roundtrips() {
    roundtrip(Frame::UserauthRequest(UserauthRequest {
        user: "alice".into(),
        service: "ssh-connection".into(),
        algorithm: "ssh-ed25519".into(),
        public_key: vec![1, 2, 3],
        signature: vec![4, 5],
    }));
    roundtrip(Frame::UserauthFailure {
        methods: "publickey".into(),
        partial: false,
    });
    roundtrip(Frame::UserauthSuccess);
    roundtrip(Frame::UserauthPassword(PasswordRequest {
        user: "alice".into(),
        service: "ssh-connection".into(),
        exporter: vec![0x11; 32],
        password: "correct horse".to_string().into(),
    }));
    roundtrip(Frame::UserauthKeyboardInteractive(
        KeyboardInteractiveRequest {
            user: "alice".into(),
            service: "ssh-connection".into(),
            exporter: vec![0x11; 32],
            submethods: "pam".into(),
        },
    ));
    roundtrip(Frame::UserauthOtherMethod(OtherMethodRequest {
        user: "alice".into(),
        service: "ssh-connection".into(),
        method: "none".into(),
    }));
    roundtrip(Frame::UserauthInfoRequest(InfoRequest {
        name: "PAM".into(),
        instruction: "Two factors".into(),
        prompts: vec![
            Prompt {
                text: "Password: ".into(),
                echo: false,
            },
            Prompt {
                text: "Code: ".into(),
                echo: true,
            },
        ],
    }));
    roundtrip(Frame::UserauthInfoResponse(InfoResponse {
        responses: vec!["pw".to_string().into(), "123456".to_string().into()],
    }));
    roundtrip(Frame::UserauthInfoResponse(InfoResponse::default()));
    roundtrip(Frame::GlobalRequest {
        request: GlobalRequest::TcpipForward {
            address: "localhost".into(),
            port: 0,
        },
        want_reply: true,
    });
    roundtrip(Frame::GlobalRequest {
        request: GlobalRequest::CancelStreamlocalForward {
            socket_path: "/tmp/s".into(),
        },
        want_reply: false,
    });
    roundtrip(Frame::RequestSuccess {
        bound_port: Some(40000),
    });
    roundtrip(Frame::RequestSuccess { bound_port: None });
    roundtrip(Frame::RequestFailure);
    for kind in [
        ChannelKind::Session,
        ChannelKind::Agent,
        ChannelKind::DirectTcpip {
            host: "h".into(),
            port: 80,
            originator: "127.0.0.1".into(),
            originator_port: 5,
        },
        ChannelKind::ForwardedTcpip {
            connected_address: "0.0.0.0".into(),
            connected_port: 8080,
            originator: "10.0.0.1".into(),
            originator_port: 6,
        },
        ChannelKind::DirectStreamlocal {
            socket_path: "/run/x".into(),
        },
        ChannelKind::ForwardedStreamlocal {
            socket_path: "/run/y".into(),
        },
    ] {
        roundtrip(Frame::ChannelOpen(kind));
    }
    roundtrip(Frame::OpenConfirmation);
    roundtrip(Frame::OpenFailure(OpenFailure {
        reason: OpenFailureReason::AdministrativelyProhibited,
        message: "no".into(),
    }));
    roundtrip(Frame::Data(Bytes::from_static(b"\x00\xffbinary")));
    roundtrip(Frame::ExtendedData {
        data_type: 1,
        data: Bytes::from_static(b"err"),
    });
    for request in [
        ChannelRequest::Pty(PtyRequest {
            term: "xterm".into(),
            size: WindowSize {
                cols: 80,
                rows: 24,
                pix_width: 0,
                pix_height: 0,
            },
            modes: vec![(53, 1), (3, 127)],
        }),
        ChannelRequest::Env {
            name: "LANG".into(),
            value: "C".into(),
        },
        ChannelRequest::Shell,
        ChannelRequest::Exec(vec![0xff, b'l', b's']),
        ChannelRequest::Subsystem("sftp".into()),
        ChannelRequest::WindowChange(WindowSize {
            cols: 1,
            rows: 2,
            pix_width: 3,
            pix_height: 4,
        }),
        ChannelRequest::Signal("TERM".into()),
        ChannelRequest::ExitStatus(42),
        ChannelRequest::ExitSignal(ExitSignal {
            signal: "KILL".into(),
            core_dumped: true,
            message: "m".into(),
        }),
        ChannelRequest::AgentForward,
        ChannelRequest::Unknown {
            name: "eow@openssh.com".into(),
        },
    ] {
        roundtrip(Frame::ChannelRequest {
            request,
            want_reply: true,
        });
    }
    roundtrip(Frame::ChannelSuccess);
    roundtrip(Frame::ChannelFailure);
}

#[test]
fn data_header_matches_encoded_frame() {
    let payload = b"hello";
    let mut framed = BytesMut::from(&data_header(None, payload.len()).expect("header")[..]);
    framed.extend_from_slice(payload);
    assert_eq!(
        &framed[..],
        &enc(&Frame::Data(Bytes::from_static(payload)))[..]
    );
    let mut framed = BytesMut::from(&data_header(Some(1), payload.len()).expect("header")[..]);
    framed.extend_from_slice(payload);
    assert_eq!(
        &framed[..],
        &enc(&Frame::ExtendedData {
            data_type: 1,
            data: Bytes::from_static(payload)
        })[..]
    );
}

#[test]
fn partial_frames_wait_for_more_bytes() {
    let bytes = enc(&Frame::ChannelRequest {
        request: ChannelRequest::ExitStatus(1),
        want_reply: false,
    });
    for cut in 0..bytes.len() {
        let mut partial = BytesMut::from(&bytes[..cut]);
        assert_eq!(decode_frame(&mut partial), Ok(None), "cut at {cut}");
    }
}

#[test]
fn bad_frames_are_errors() {
    let mut zero = BytesMut::from(&[0u8, 0, 0, 0][..]);
    assert_eq!(decode_frame(&mut zero), Err(WireError::BadLength(0)));
    let mut huge = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        decode_frame(&mut huge),
        Err(WireError::BadLength(_))
    ));
    let mut unknown = BytesMut::from(&[0u8, 0, 0, 1, 7][..]);
    assert_eq!(decode_frame(&mut unknown), Err(WireError::UnknownType(7)));
    // exit-status with a trailing byte.
    let mut frame = enc(&Frame::ChannelRequest {
        request: ChannelRequest::ExitStatus(1),
        want_reply: false,
    })
    .to_vec();
    frame.push(9);
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(
        decode_frame(&mut BytesMut::from(&frame[..])),
        Err(WireError::TrailingBytes { .. })
    ));
    // A string longer than the frame.
    let mut short = BytesMut::from(&[0u8, 0, 0, 5, msg::CHANNEL_REQUEST, 0, 0, 0, 9][..]);
    assert!(matches!(
        decode_frame(&mut short),
        Err(WireError::Truncated { .. })
    ));
    // A boolean that is neither 0 nor 1.
    let mut failure = raw_frame(msg::USERAUTH_FAILURE, b"\0\0\0\x09publickey\x02");
    assert!(matches!(
        decode_frame(&mut failure),
        Err(WireError::BadBool { .. })
    ));
    // An unknown channel type.
    let mut x11 = raw_frame(msg::CHANNEL_OPEN, b"\0\0\0\x03x11");
    assert_eq!(
        decode_frame(&mut x11),
        Err(WireError::UnknownChannelType("x11".into()))
    );
}

/// A cheap stand-in for a fuzzer: random and mutated frames must decode or
/// fail cleanly, never panic.
#[test]
fn random_bytes_never_panic() {
    let mut state: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let seeds: Vec<Bytes> = vec![
        enc(&Frame::ChannelOpen(ChannelKind::DirectTcpip {
            host: "h".into(),
            port: 1,
            originator: "o".into(),
            originator_port: 2,
        })),
        enc(&Frame::ChannelRequest {
            request: ChannelRequest::Pty(PtyRequest {
                term: "t".into(),
                size: WindowSize::default(),
                modes: vec![(1, 2)],
            }),
            want_reply: true,
        }),
        enc(&Frame::UserauthRequest(UserauthRequest {
            user: "u".into(),
            service: "s".into(),
            algorithm: "a".into(),
            public_key: vec![1],
            signature: vec![2],
        })),
    ];
    for round in 0..20_000 {
        let seed = &seeds[round % seeds.len()];
        let mut bytes = seed.to_vec();
        for _ in 0..(next() % 4) {
            let at = (next() as usize) % bytes.len();
            bytes[at] = next() as u8;
        }
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = decode_frame(&mut buf);
        let random: Vec<u8> = (0..(next() % 64)).map(|_| next() as u8).collect();
        let _ = decode_frame(&mut BytesMut::from(&random[..]));
    }
}

#[test]
fn signed_data_binds_the_exporter() {
    let a = userauth_signed_data(&[1; 32], "u", "ssh-connection", "ssh-ed25519", b"key")
        .expect("signed data");
    let b = userauth_signed_data(&[2; 32], "u", "ssh-connection", "ssh-ed25519", b"key")
        .expect("signed data");
    assert_ne!(a, b);
    // string(exporter) || byte 50 || string(user) ...
    assert_eq!(&a[..4], &32u32.to_be_bytes());
    assert_eq!(a[36], msg::USERAUTH_REQUEST);
}

/// The USERAUTH_REQUEST payload up to and including the method name.
fn userauth_head(method: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.string("user", b"alice")
        .and_then(|w| w.string("service", b"ssh-connection"))
        .and_then(|w| w.string("method", method.as_bytes()))
        .expect("small");
    out
}

fn string(value: &[u8]) -> Vec<u8> {
    let mut out = (value.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(value);
    out
}

#[test]
fn password_request_layout_is_rfc_4252_with_the_exporter_first() {
    let frame = enc(&Frame::UserauthPassword(PasswordRequest {
        user: "alice".into(),
        service: "ssh-connection".into(),
        exporter: vec![0x11; 32],
        password: "pw".to_string().into(),
    }));
    let mut expected = userauth_head("password");
    expected.extend(string(&[0x11; 32]));
    expected.push(0); // FALSE: not a password change
    expected.extend(string(b"pw"));
    assert_eq!(&frame[5..], &expected[..]);
    assert_eq!(frame[4], msg::USERAUTH_REQUEST);
}

#[test]
fn password_change_form_is_refused() {
    let mut payload = userauth_head("password");
    payload.extend(string(&[0x11; 32]));
    payload.push(1);
    payload.extend(string(b"old"));
    payload.extend(string(b"new"));
    assert_eq!(
        decode_frame(&mut raw_frame(msg::USERAUTH_REQUEST, &payload)),
        Err(DecodeError::PasswordChange)
    );
}

#[test]
fn exporter_value_must_be_32_octets() {
    for len in [0usize, 31, 33] {
        for method in ["password", "keyboard-interactive"] {
            let mut payload = userauth_head(method);
            payload.extend(string(&vec![0x11; len]));
            payload.extend(string(b""));
            if method == "password" {
                // boolean FALSE sits between E and the password.
                payload.insert(payload.len() - 4, 0);
            } else {
                payload.extend(string(b""));
            }
            assert_eq!(
                decode_frame(&mut raw_frame(msg::USERAUTH_REQUEST, &payload)),
                Err(DecodeError::ExporterLength(len)),
                "{method} with E of {len} octets"
            );
        }
    }
}

#[test]
fn password_must_be_utf8_and_the_error_does_not_quote_it() {
    let mut payload = userauth_head("password");
    payload.extend(string(&[0x11; 32]));
    payload.push(0);
    payload.extend(string(&[0xff, b's', b'e', b'c']));
    let error =
        decode_frame(&mut raw_frame(msg::USERAUTH_REQUEST, &payload)).expect_err("not UTF-8");
    assert!(matches!(
        error,
        DecodeError::NotUtf8 {
            field: "password",
            ..
        }
    ));
    assert!(!error.to_string().contains("sec"));
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let request = PasswordRequest {
        user: "alice".into(),
        service: "ssh-connection".into(),
        exporter: vec![0; 32],
        password: "hunter2".to_string().into(),
    };
    assert!(!format!("{request:?}").contains("hunter2"));
    let frame = Frame::UserauthInfoResponse(InfoResponse {
        responses: vec!["hunter2".to_string().into()],
    });
    assert!(!format!("{frame:?}").contains("hunter2"));
}

#[test]
fn unknown_methods_decode_with_their_fields_unread() {
    let mut payload = userauth_head("hostbased");
    payload.extend_from_slice(b"anything at all");
    assert_eq!(
        decode_frame(&mut raw_frame(msg::USERAUTH_REQUEST, &payload)),
        Ok(Some(Frame::UserauthOtherMethod(OtherMethodRequest {
            user: "alice".into(),
            service: "ssh-connection".into(),
            method: "hostbased".into(),
        })))
    );
    // A known method's fields are still strict.
    let mut payload = userauth_head("keyboard-interactive");
    payload.extend(string(&[0x11; 32]));
    payload.extend(string(b""));
    payload.extend(string(b""));
    payload.push(0);
    assert!(matches!(
        decode_frame(&mut raw_frame(msg::USERAUTH_REQUEST, &payload)),
        Err(DecodeError::TrailingBytes { .. })
    ));
}

#[test]
fn too_many_prompts_or_responses_are_refused_before_allocating() {
    let count = (MAX_PROMPTS + 1) as u32;
    let mut payload = string(b"");
    payload.extend(string(b""));
    payload.extend(string(b""));
    payload.extend(count.to_be_bytes());
    assert_eq!(
        decode_frame(&mut raw_frame(msg::USERAUTH_INFO_REQUEST, &payload)),
        Err(DecodeError::TooManyPrompts {
            frame: msg::USERAUTH_INFO_REQUEST,
            count
        })
    );
    // A huge count with no data behind it: refused, not allocated.
    assert_eq!(
        decode_frame(&mut raw_frame(
            msg::USERAUTH_INFO_RESPONSE,
            &u32::MAX.to_be_bytes()
        )),
        Err(DecodeError::TooManyPrompts {
            frame: msg::USERAUTH_INFO_RESPONSE,
            count: u32::MAX
        })
    );
    // Exactly MAX_PROMPTS is fine.
    let full = Frame::UserauthInfoResponse(InfoResponse {
        responses: vec![String::new().into(); MAX_PROMPTS],
    });
    roundtrip(full);
    // And we do not send more.
    let over = Frame::UserauthInfoRequest(InfoRequest {
        prompts: vec![
            Prompt {
                text: String::new(),
                echo: false
            };
            MAX_PROMPTS + 1
        ],
        ..InfoRequest::default()
    });
    assert_eq!(
        encode_frame(&over),
        Err(EncodeError::TooManyPrompts(MAX_PROMPTS + 1))
    );
}

#[test]
fn info_request_echo_is_a_strict_boolean() {
    let mut payload = string(b"");
    payload.extend(string(b""));
    payload.extend(string(b""));
    payload.extend(1u32.to_be_bytes());
    payload.extend(string(b"Password: "));
    payload.push(2);
    assert!(matches!(
        decode_frame(&mut raw_frame(msg::USERAUTH_INFO_REQUEST, &payload)),
        Err(DecodeError::BadBool { field: "echo", .. })
    ));
}

#[test]
fn same_exporter_compares_whole_values() {
    assert!(same_exporter(&[1; 32], &[1; 32]));
    let mut other = [1; 32];
    other[31] = 2;
    assert!(!same_exporter(&other, &[1; 32]));
    assert!(!same_exporter(&[1; 31], &[1; 32]));
}
