//! Round-trip property tests for every codec: whatever is encoded reads
//! back the same, and no input, however made, panics a decoder.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use sshq_core::channel::{
    ChannelKind, ChannelRequest, ExitSignal, GlobalRequest, OpenFailure, OpenFailureReason,
    PtyRequest, WindowSize,
};

use super::*;

fn text() -> impl Strategy<Value = String> {
    vec(any::<char>(), 0..24).prop_map(String::from_iter)
}

/// E is always 32 octets (draft §7.2).
fn exporter() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), USERAUTH_EXPORTER_LEN)
}

fn blob() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..64)
}

/// A request or channel name no decoder knows, so it reads back as `Other`.
fn unknown_name(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    text().prop_filter("a known name", move |name| !known.contains(&name.as_str()))
}

const GLOBAL_NAMES: &[&str] = &[
    "tcpip-forward",
    "cancel-tcpip-forward",
    "streamlocal-forward@openssh.com",
    "cancel-streamlocal-forward@openssh.com",
];

const CHANNEL_REQUEST_NAMES: &[&str] = &[
    "pty-req",
    "env",
    "shell",
    "exec",
    "subsystem",
    "window-change",
    "signal",
    "exit-status",
    "exit-signal",
    "auth-agent-req@openssh.com",
];

fn window_size() -> impl Strategy<Value = WindowSize> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(cols, rows, pix_width, pix_height)| WindowSize {
            cols,
            rows,
            pix_width,
            pix_height,
        },
    )
}

fn global_request() -> impl Strategy<Value = GlobalRequest> {
    prop_oneof![
        (text(), any::<u32>())
            .prop_map(|(address, port)| GlobalRequest::TcpipForward { address, port }),
        (text(), any::<u32>())
            .prop_map(|(address, port)| GlobalRequest::CancelTcpipForward { address, port }),
        text().prop_map(|socket_path| GlobalRequest::StreamlocalForward { socket_path }),
        text().prop_map(|socket_path| GlobalRequest::CancelStreamlocalForward { socket_path }),
        unknown_name(GLOBAL_NAMES).prop_map(|name| GlobalRequest::Unknown { name }),
    ]
}

fn channel_kind() -> impl Strategy<Value = ChannelKind> {
    prop_oneof![
        Just(ChannelKind::Session),
        Just(ChannelKind::Agent),
        (text(), any::<u32>(), text(), any::<u32>()).prop_map(
            |(host, port, originator, originator_port)| ChannelKind::DirectTcpip {
                host,
                port,
                originator,
                originator_port,
            }
        ),
        (text(), any::<u32>(), text(), any::<u32>()).prop_map(
            |(connected_address, connected_port, originator, originator_port)| {
                ChannelKind::ForwardedTcpip {
                    connected_address,
                    connected_port,
                    originator,
                    originator_port,
                }
            }
        ),
        text().prop_map(|socket_path| ChannelKind::DirectStreamlocal { socket_path }),
        text().prop_map(|socket_path| ChannelKind::ForwardedStreamlocal { socket_path }),
    ]
}

fn channel_request() -> impl Strategy<Value = ChannelRequest> {
    // Mode opcodes 1..=159 carry a uint32; 0 ends the list and 160 and up
    // end parsing, so only these read back as sent.
    let modes = vec((1u8..160, any::<u32>()), 0..8);
    prop_oneof![
        (text(), window_size(), modes)
            .prop_map(|(term, size, modes)| ChannelRequest::Pty(PtyRequest { term, size, modes })),
        (text(), text()).prop_map(|(name, value)| ChannelRequest::Env { name, value }),
        Just(ChannelRequest::Shell),
        blob().prop_map(ChannelRequest::Exec),
        text().prop_map(ChannelRequest::Subsystem),
        window_size().prop_map(ChannelRequest::WindowChange),
        text().prop_map(ChannelRequest::Signal),
        any::<u32>().prop_map(ChannelRequest::ExitStatus),
        (text(), any::<bool>(), text()).prop_map(|(signal, core_dumped, message)| {
            ChannelRequest::ExitSignal(ExitSignal {
                signal,
                core_dumped,
                message,
            })
        }),
        Just(ChannelRequest::AgentForward),
        unknown_name(CHANNEL_REQUEST_NAMES).prop_map(|name| ChannelRequest::Unknown { name }),
    ]
}

fn open_failure_reason() -> impl Strategy<Value = OpenFailureReason> {
    prop_oneof![
        Just(OpenFailureReason::AdministrativelyProhibited),
        Just(OpenFailureReason::ConnectFailed),
        Just(OpenFailureReason::UnknownChannelType),
        Just(OpenFailureReason::ResourceShortage),
    ]
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (text(), text(), text(), blob(), blob()).prop_map(
            |(user, service, algorithm, public_key, signature)| {
                Frame::UserauthRequest(UserauthRequest {
                    user,
                    service,
                    algorithm,
                    public_key,
                    signature,
                })
            }
        ),
        (text(), any::<bool>())
            .prop_map(|(methods, partial)| Frame::UserauthFailure { methods, partial }),
        (text(), text(), exporter(), text()).prop_map(|(user, service, exporter, password)| {
            Frame::UserauthPassword(PasswordRequest {
                user,
                service,
                exporter,
                password: sshq_core::zeroize::Zeroizing::new(password),
            })
        }),
        (text(), text(), exporter(), text()).prop_map(|(user, service, exporter, submethods)| {
            Frame::UserauthKeyboardInteractive(KeyboardInteractiveRequest {
                user,
                service,
                exporter,
                submethods,
            })
        }),
        (text(), text(), "[a-z@.-]{1,20}")
            .prop_filter("a method name sshq/1 defines", |(_, _, m)| {
                !matches!(
                    m.as_str(),
                    "publickey" | "password" | "keyboard-interactive"
                )
            })
            .prop_map(|(user, service, method)| {
                Frame::UserauthOtherMethod(OtherMethodRequest {
                    user,
                    service,
                    method,
                })
            }),
        (text(), text(), vec((text(), any::<bool>()), 0..=4)).prop_map(
            |(name, instruction, prompts)| {
                Frame::UserauthInfoRequest(sshq_core::auth_methods::InfoRequest {
                    name,
                    instruction,
                    prompts: prompts
                        .into_iter()
                        .map(|(text, echo)| sshq_core::auth_methods::Prompt { text, echo })
                        .collect(),
                })
            }
        ),
        vec(text(), 0..=4).prop_map(|responses| {
            Frame::UserauthInfoResponse(InfoResponse {
                responses: responses
                    .into_iter()
                    .map(sshq_core::zeroize::Zeroizing::new)
                    .collect(),
            })
        }),
        Just(Frame::UserauthSuccess),
        (global_request(), any::<bool>()).prop_map(|(request, want_reply)| {
            Frame::GlobalRequest {
                request,
                want_reply,
            }
        }),
        proptest::option::of(any::<u32>())
            .prop_map(|bound_port| Frame::RequestSuccess { bound_port }),
        Just(Frame::RequestFailure),
        channel_kind().prop_map(Frame::ChannelOpen),
        Just(Frame::OpenConfirmation),
        (open_failure_reason(), text())
            .prop_map(|(reason, message)| Frame::OpenFailure(OpenFailure { reason, message })),
        blob().prop_map(|data| Frame::Data(Bytes::from(data))),
        (any::<u32>(), blob()).prop_map(|(data_type, data)| Frame::ExtendedData {
            data_type,
            data: Bytes::from(data),
        }),
        (channel_request(), any::<bool>()).prop_map(|(request, want_reply)| {
            Frame::ChannelRequest {
                request,
                want_reply,
            }
        }),
        Just(Frame::ChannelSuccess),
        Just(Frame::ChannelFailure),
    ]
}

/// A relay target the draft allows: 1 to 255 bytes of UTF-8, port 1..=65535.
fn udp_relay_target() -> impl Strategy<Value = UdpRelayTarget> {
    (vec(any::<char>(), 1..64), 1u16..=u16::MAX)
        .prop_map(|(host, port)| UdpRelayTarget {
            host: String::from_iter(host),
            port,
        })
        .prop_filter("host over 255 bytes", |t| t.host.len() <= 255)
}

proptest! {
    #[test]
    fn frames_round_trip(frame in frame()) {
        let encoded = encode_frame(&frame).expect("encodes");
        prop_assert_eq!(Frame::decode(&encoded), Ok(frame.clone()));
        // The streaming decoder agrees, and takes exactly one frame.
        let mut stream = BytesMut::from(&encoded[..]);
        stream.extend_from_slice(b"\x00\x00");
        prop_assert_eq!(decode_frame(&mut stream), Ok(Some(frame)));
        prop_assert_eq!(&stream[..], b"\x00\x00");
    }

    #[test]
    fn frames_with_bytes_after_them_are_refused(frame in frame(), extra in vec(any::<u8>(), 1..8)) {
        let mut encoded = encode_frame(&frame).expect("encodes").to_vec();
        encoded.extend_from_slice(&extra);
        prop_assert_eq!(
            Frame::decode(&encoded),
            Err(DecodeError::UnconsumedBytes { extra: extra.len() })
        );
    }

    #[test]
    fn data_headers_match_encoded_frames(data_type in proptest::option::of(any::<u32>()), data in blob()) {
        let frame = match data_type {
            None => Frame::Data(Bytes::from(data.clone())),
            Some(data_type) => Frame::ExtendedData { data_type, data: Bytes::from(data.clone()) },
        };
        let mut framed = data_header(data_type, data.len()).expect("header").to_vec();
        framed.extend_from_slice(&data);
        prop_assert_eq!(framed, encode_frame(&frame).expect("encodes").to_vec());
    }

    #[test]
    fn relay_targets_round_trip(target in udp_relay_target()) {
        let encoded = target.to_vec().expect("encodes");
        prop_assert_eq!(UdpRelayTarget::decode(&encoded), Ok(target));
        let header: [u8; udp_relay::TARGET_HEADER_LEN] = encoded[..4].try_into().expect("4 bytes");
        prop_assert_eq!(UdpRelayTarget::remaining_len(header), Ok(encoded.len() - 4));
    }

    #[test]
    fn datagrams_round_trip(payload in vec(any::<u8>(), 0..2048)) {
        let datagram = Datagram(Bytes::from(payload));
        let encoded = datagram.to_vec().expect("encodes");
        prop_assert_eq!(Datagram::decode(&encoded), Ok(datagram.clone()));
        let mut pending = BytesMut::from(&encoded[..]);
        prop_assert_eq!(Datagram::split_complete(&mut pending), Some(datagram.0));
        prop_assert!(pending.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in vec(any::<u8>(), 0..512)) {
        let _ = Frame::decode(&bytes);
        let _ = decode_frame(&mut BytesMut::from(&bytes[..]));
        let _ = UdpRelayTarget::decode(&bytes);
        let _ = Datagram::decode(&bytes);
        let _ = Datagram::split_complete(&mut BytesMut::from(&bytes[..]));
        if let Some(header) = bytes.get(..4).and_then(|h| <[u8; 4]>::try_from(h).ok()) {
            let _ = UdpRelayTarget::remaining_len(header);
        }
    }

    /// Mutated valid frames reach deeper into the decoders than random bytes.
    #[test]
    fn mutated_frames_never_panic(frame in frame(), flips in vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut bytes = encode_frame(&frame).expect("encodes").to_vec();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        let _ = Frame::decode(&bytes);
        let _ = decode_frame(&mut BytesMut::from(&bytes[..]));
    }
}

#[test]
fn frames_over_the_limit_are_not_encoded() {
    // Exactly at the limit: type byte + data.
    let at_limit = Frame::Data(Bytes::from(vec![0u8; MAX_FRAME_LEN - 1]));
    let encoded = encode_frame(&at_limit).expect("a frame of MAX_FRAME_LEN");
    assert_eq!(encoded.len(), 4 + MAX_FRAME_LEN);
    assert_eq!(Frame::decode(&encoded), Ok(at_limit));

    let over = Frame::ChannelRequest {
        request: ChannelRequest::Exec(vec![b'x'; MAX_FRAME_LEN]),
        want_reply: true,
    };
    assert!(matches!(
        encode_frame(&over),
        Err(EncodeError::FrameTooLong {
            frame: msg::CHANNEL_REQUEST,
            ..
        })
    ));
    // A failed encoding leaves the buffer as it was.
    let mut out = b"kept".to_vec();
    assert!(over.encode(&mut out).is_err());
    assert_eq!(out, b"kept");

    assert!(matches!(
        data_header(None, MAX_FRAME_LEN),
        Err(EncodeError::FrameTooLong { .. })
    ));
    assert!(data_header(None, MAX_FRAME_LEN - 1).is_ok());
    assert!(matches!(
        data_header(Some(1), MAX_FRAME_LEN - 4),
        Err(EncodeError::FrameTooLong { .. })
    ));
}

#[test]
fn relay_targets_and_datagrams_are_checked_both_ways() {
    let long_host = UdpRelayTarget {
        host: "h".repeat(256),
        port: 443,
    };
    assert_eq!(long_host.to_vec(), Err(EncodeError::TargetHostLength(256)));
    let no_host = UdpRelayTarget {
        host: String::new(),
        port: 443,
    };
    assert_eq!(no_host.to_vec(), Err(EncodeError::TargetHostLength(0)));
    let port_zero = UdpRelayTarget {
        host: "h".into(),
        port: 0,
    };
    assert_eq!(port_zero.to_vec(), Err(EncodeError::TargetPort));

    let bad: [(&[u8], DecodeError); 6] = [
        (b"\0\0\0\0\0\0\0\x16", DecodeError::TargetHostLength(0)),
        (b"\0\0\x01\x00", DecodeError::TargetHostLength(256)),
        (b"\0\0\0\x01h\0\x01\0\0", DecodeError::TargetPort(65536)),
        (b"\0\0\0\x01h\0\0\0\0", DecodeError::TargetPort(0)),
        (b"\0\0\0\x01\xff\0\0\0\x16", DecodeError::TargetHostNotUtf8),
        (b"\0\0\0\x01h\0\0", DecodeError::TargetTruncated),
    ];
    for (input, error) in bad {
        assert_eq!(UdpRelayTarget::decode(input), Err(error), "{input:?}");
    }
    assert_eq!(
        UdpRelayTarget::remaining_len([0, 0, 1, 0]),
        Err(DecodeError::TargetHostLength(256))
    );

    assert_eq!(
        Datagram::header(65536),
        Err(EncodeError::DatagramTooLong(65536))
    );
    assert_eq!(Datagram::header(65535), Ok([0xff, 0xff]));
    assert_eq!(
        Datagram::decode(b"\x00\x05hel"),
        Err(DecodeError::DatagramTruncated)
    );
    assert_eq!(
        Datagram::split_complete(&mut BytesMut::from(&b"\x00\x05hel"[..])),
        None
    );
}
