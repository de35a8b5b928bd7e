//! What a connection's path looks like, for `-v` and measurements.

use std::time::Duration;

/// A snapshot of a QUIC connection's path statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathStats {
    /// The current smoothed round-trip time.
    pub rtt: Duration,
    /// The current maximum UDP payload size.
    pub mtu: u16,
    pub sent_packets: u64,
    pub lost_packets: u64,
    pub congestion_events: u64,
}

impl PathStats {
    pub(crate) fn of(conn: &quinn::Connection) -> PathStats {
        let path = conn.stats().path;
        PathStats {
            rtt: path.rtt,
            mtu: path.current_mtu,
            sent_packets: path.sent_packets,
            lost_packets: path.lost_packets,
            congestion_events: path.congestion_events,
        }
    }
}
