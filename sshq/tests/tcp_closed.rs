//! `Connection::closed` over TCP tells an orderly end from a failure, as the
//! transport trait promises: `None` after we close the connection, the
//! reason when the server dies under it.

mod common;

use sshq_core::error::TransportError;
use sshq_core::transport::Connection;

use common::clients::{step, tcp_client};
use common::{Lab, Listeners};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_it_ourselves_is_no_failure() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Tcp);
    let conn = tcp_client(&lab, &server).await;
    conn.close("disconnected by user").await;
    let why = step("closed", conn.closed()).await;
    assert!(why.is_none(), "an orderly close reported {why:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_is_reported_with_why() {
    let lab = Lab::new();
    let server = lab.start_sshqd_on("", Listeners::Tcp);
    let conn = tcp_client(&lab, &server).await;
    // SIGKILL: the kernel closes the socket without an SSH disconnect.
    drop(server);
    match step("closed", conn.closed()).await {
        Some(TransportError::ConnectionClosed(Some(why))) => {
            assert!(!why.is_empty(), "an empty reason");
        }
        other => panic!("a dead server must be a failure with a reason, got {other:?}"),
    }
}
