//! The one-stream lab baseline (`sshq_quic::one_stream`) between a real
//! client and server on loopback: many channels, at once, on one QUIC
//! stream, with their data intact and their ends in order; and a clear
//! failure, not a hang, when only one side runs the baseline.

#[allow(dead_code)]
mod lab;

use std::time::Duration;

use lab::{normal_echo, step, Fixture};
use sshq_core::channel::ChannelKind;
use sshq_core::transport::{Channel, ChannelControl, Connection};
use sshq_quic::one_stream::ChannelMapping;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ONE: ChannelMapping = ChannelMapping::OneStream;

/// `len` bytes that differ per channel, so that a byte delivered to the
/// wrong channel or out of order shows.
fn pattern(channel: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ channel.wrapping_mul(37))
        .collect()
}

#[tokio::test]
async fn channels_share_the_carrier_and_keep_their_bytes() {
    let fixture = Fixture::with_mapping(3, None, ONE);
    let (_endpoint, session) = fixture.normal_with(ONE).await;
    // Eight channels at once, two of them bulk (2 MiB, several windows'
    // worth of the carrier's flow control), the others small.
    let mut echoes = Vec::new();
    for channel in 0..8u8 {
        let len = if channel < 2 {
            2 << 20
        } else {
            1000 + usize::from(channel)
        };
        let sent = pattern(channel, len);
        let parts = step("open", session.open_channel(ChannelKind::Session))
            .await
            .expect("open a channel on the carrier")
            .split();
        echoes.push(tokio::spawn(async move {
            let (mut data_in, mut data_out) = (parts.data_in, parts.data_out);
            let writer = {
                let sent = sent.clone();
                tokio::spawn(async move {
                    data_out.write_all(&sent).await.expect("write");
                    data_out.shutdown().await.expect("EOF");
                })
            };
            let mut back = Vec::new();
            data_in.read_to_end(&mut back).await.expect("read the echo");
            writer.await.expect("writer");
            (channel, back == sent, back.len())
        }));
    }
    for echo in echoes {
        let (channel, same, len) = step("echo", echo).await.expect("echo task");
        assert!(
            same,
            "channel {channel}: its echo ({len} bytes) differs from what it sent"
        );
    }
    assert!(
        fixture.server.wait_events(|e| e.channels == 8).await,
        "the server accepted every channel"
    );
    // Channels opened after others ended still work (stream ids go on).
    normal_echo(&session, b"after the others").await;
}

#[tokio::test]
async fn a_client_without_the_baseline_cannot_use_such_a_server() {
    let fixture = Fixture::with_mapping(3, None, ONE);
    let (_endpoint, session) = fixture.normal().await;
    // The server reads the client's first channel stream as its carrier:
    // the OPEN frame is no carrier frame, and the carrier breaks.
    let opened = session.open_channel(ChannelKind::Session).await;
    let parts = opened.expect("the open is only queued").split();
    let mut back = Vec::new();
    let read = step("read", parts.data_in.take(1).read_to_end(&mut back)).await;
    assert!(
        read.is_err() || back.is_empty(),
        "no channel comes up: {read:?}, {back:?}"
    );
    assert!(
        step("opened", parts.control.opened()).await.is_err(),
        "the open fails"
    );
}

#[tokio::test]
async fn a_baseline_client_fails_cleanly_against_an_ordinary_server() {
    let fixture = Fixture::new(3, None);
    let (_endpoint, session) = fixture.normal_with(ONE).await;
    let parts = step("open", session.open_channel(ChannelKind::Session))
        .await
        .expect("the first open starts the carrier")
        .split();
    // The server takes the carrier for a channel and resets it: the
    // channel fails instead of waiting forever.
    let opened = tokio::time::timeout(Duration::from_secs(10), parts.control.opened()).await;
    assert!(
        matches!(opened, Ok(Err(_))),
        "the open fails within 10 s: {opened:?}"
    );
}
