//! The server on in-memory input against a real temporary directory; the
//! OpenSSH clients drive it end to end in `tests/internal_sftp.rs`.

use super::*;

fn request(kind: u8, id: u32, fill: impl FnOnce(&mut Packet)) -> Vec<u8> {
    let mut packet = Packet::reply(kind, id);
    fill(&mut packet);
    packet.finish()
}

/// Runs the server over `requests` (after INIT) and splits the replies.
fn exchange(requests: &[Vec<u8>]) -> (Ending, Vec<Vec<u8>>) {
    let mut input = Packet::new(wire::FXP_INIT);
    input.u32(3);
    let mut bytes = input.finish();
    for r in requests {
        bytes.extend_from_slice(r);
    }
    let mut output = Vec::new();
    let ending =
        Server::new(Options::default(), "u".into(), "/".into()).run(&bytes[..], &mut output);
    let mut replies = Vec::new();
    let mut rest = &output[..];
    while rest.len() >= 4 {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        replies.push(rest[4..4 + len].to_vec());
        rest = &rest[4 + len..];
    }
    (ending, replies)
}

fn status_code(reply: &[u8]) -> u32 {
    assert_eq!(reply[0], wire::FXP_STATUS);
    u32::from_be_bytes([reply[5], reply[6], reply[7], reply[8]])
}

#[test]
fn write_then_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let path = path.as_os_str().as_bytes();
    let handle = 0u32.to_be_bytes();
    let (ending, replies) = exchange(&[
        request(wire::FXP_OPEN, 1, |p| {
            p.string(path)
                .u32(wire::FXF_WRITE | wire::FXF_CREAT)
                .attrs(&Attrs::default());
        }),
        request(wire::FXP_WRITE, 2, |p| {
            p.string(&handle).u64(3).string(b"abc");
        }),
        request(wire::FXP_CLOSE, 3, |p| {
            p.string(&handle);
        }),
        request(wire::FXP_OPEN, 4, |p| {
            p.string(path).u32(wire::FXF_READ).attrs(&Attrs::default());
        }),
        request(wire::FXP_READ, 5, |p| {
            p.string(&handle).u64(0).u32(u32::MAX);
        }),
        request(wire::FXP_READ, 6, |p| {
            p.string(&handle).u64(6).u32(10);
        }),
        request(wire::FXP_READ, 7, |p| {
            p.string(b"zz").u64(0).u32(10);
        }),
        request(wire::FXP_EXTENDED, 8, |p| {
            p.string(b"nothing@example.com");
        }),
        request(wire::FXP_STAT, 9, |p| {
            p.string(b"/nonexistent/x");
        }),
    ]);
    assert_eq!(ending, Ending::Closed);
    assert_eq!(replies[0][0], wire::FXP_VERSION);
    assert_eq!(replies[1][0], wire::FXP_HANDLE);
    assert_eq!(status_code(&replies[2]), Status::Ok as u32);
    assert_eq!(status_code(&replies[3]), Status::Ok as u32);
    assert_eq!(replies[5][0], wire::FXP_DATA);
    assert_eq!(&replies[5][5..], &[0, 0, 0, 6, 0, 0, 0, b'a', b'b', b'c']);
    assert_eq!(status_code(&replies[6]), Status::Eof as u32);
    assert_eq!(status_code(&replies[7]), Status::Failure as u32);
    assert_eq!(status_code(&replies[8]), Status::OpUnsupported as u32);
    assert_eq!(status_code(&replies[9]), Status::NoSuchFile as u32);
}

#[test]
fn protocol_errors_end_the_session() {
    // A request before INIT.
    let mut output = Vec::new();
    let stat = request(wire::FXP_STAT, 1, |p| {
        p.string(b"/");
    });
    let mut server = Server::new(Options::default(), "u".into(), "/".into());
    assert_eq!(server.run(&stat[..], &mut output), Ending::ProtocolError);
    // An oversized packet.
    let (ending, _) = exchange(&[((wire::MAX_MESSAGE + 1) as u32).to_be_bytes().to_vec()]);
    assert_eq!(ending, Ending::ProtocolError);
    // A truncated field.
    let (ending, _) = exchange(&[request(wire::FXP_STAT, 1, |p| {
        p.u32(50);
    })]);
    assert_eq!(ending, Ending::ProtocolError);
}

#[test]
fn read_only_refuses_writes() {
    let options = Options {
        read_only: true,
        ..Options::default()
    };
    let mut input = Packet::new(wire::FXP_INIT);
    input.u32(3);
    let mut bytes = input.finish();
    bytes.extend(request(wire::FXP_MKDIR, 1, |p| {
        p.string(b"/tmp/never-made-by-sftp-test")
            .attrs(&Attrs::default());
    }));
    let mut output = Vec::new();
    Server::new(options, "u".into(), "/".into()).run(&bytes[..], &mut output);
    let version_len = u32::from_be_bytes([output[0], output[1], output[2], output[3]]) as usize;
    let reply = &output[4 + version_len + 4..];
    assert_eq!(status_code(reply), Status::PermissionDenied as u32);
}
