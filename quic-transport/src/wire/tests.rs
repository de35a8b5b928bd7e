use super::*;
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
