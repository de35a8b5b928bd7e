//! One conformance suite for the transport trait (`sshq_core::transport`),
//! written once in `conformance/suite.rs` and run on both transports with
//! client and server built in this process over real loopback sockets
//! (`conformance/pairs.rs`): `tcp::CASE` on sshq-tcp (russh), `quic::CASE`
//! on sshq-quic.

mod common;
#[path = "conformance/pairs.rs"]
mod pairs;
#[path = "conformance/suite.rs"]
mod suite;

/// For each case, one test per transport, each on a fresh connection;
/// `case [tcp: ATTRIBUTE] [quic: ATTRIBUTE]` adds an attribute to one
/// transport's test only (a documented, known deviation from the trait).
macro_rules! on_both_transports {
    ($($case:ident $([tcp: $tcp_attr:meta])? $([quic: $quic_attr:meta])?),* $(,)?) => {
        mod tcp {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$tcp_attr])?
                async fn $case() {
                    let pair = crate::pairs::tcp().await;
                    crate::suite::$case(&pair.client, &pair.server).await;
                }
            )*
        }
        mod quic {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$quic_attr])?
                async fn $case() {
                    let pair = crate::pairs::quic().await;
                    crate::suite::$case(&pair.client, &pair.server).await;
                }
            )*
        }
    };
}

on_both_transports!(
    open_and_accept_both_ways,
    refused_open_reports_the_reason,
    requests_arrive_in_order_and_replies_find_their_request,
    eof_and_close_in_every_order,
    dropping_every_part_closes_the_channel,
    requests_after_our_eof,
    want_reply_requests_after_the_peers_eof,
    the_want_reply_flag_arrives_as_sent,
    a_stalled_reader_does_not_stall_other_channels,
    many_channels_at_once,
    global_requests_get_their_replies,
    abrupt_close_ends_everything,
);
