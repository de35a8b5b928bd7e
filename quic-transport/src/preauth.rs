//! What a client may make the server hold before it has logged in.
//!
//! Until USERAUTH_SUCCESS the server reads only the control stream
//! (draft Section 7.7), so whatever else a client sends meanwhile only sits
//! in memory. The server therefore starts every connection with small
//! limits, [`restrict`], and raises them to the normal ones, [`lift`], once
//! the user has logged in (quinn then sends MAX_STREAMS and MAX_DATA).

use quinn::{TransportConfig, VarInt};

use crate::tls::{INITIAL_BIDI_STREAMS, MAX_CONCURRENT_BIDI_STREAMS, RECEIVE_WINDOW};

/// Bidirectional streams a client may open before logging in: the control
/// stream and four channels pipelined behind the first userauth request
/// (a session, say, plus forwardings the client asks for at once).
pub const PREAUTH_BIDI_STREAMS: u32 = 5;

/// Connection-level flow-control window before logging in: room for a few
/// userauth requests (a signed request is well under 8 KiB, even with an
/// RSA-8192 key) and pipelined opens and requests, not for bulk data,
/// which waits for the real window after login.
pub const PREAUTH_RECEIVE_WINDOW: u32 = 64 * 1024;

/// Applies the pre-authentication limits to a server's transport
/// configuration (they are the initial transport parameters).
// draft §7.7: before USERAUTH_SUCCESS the server advertises 5 bidirectional streams and a 64 KiB connection window
pub fn restrict(config: &mut TransportConfig) {
    config
        .max_concurrent_bidi_streams(VarInt::from_u32(PREAUTH_BIDI_STREAMS))
        .receive_window(VarInt::from_u32(PREAUTH_RECEIVE_WINDOW));
}

/// Raises a connection's limits to the normal ones once its client has
/// logged in. Stream credit goes to [`INITIAL_BIDI_STREAMS`]; the channel
/// accept loop raises it further as channels are opened
/// (`crate::channel_streams`).
pub fn lift(conn: &quinn::Connection) {
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(INITIAL_BIDI_STREAMS));
    conn.set_receive_window(VarInt::from_u32(RECEIVE_WINDOW));
}

/// Raises a QuicRelay tunnel's limits once it is handed to the relay, whose
/// target authenticates: to the full stream credit at once, as nothing
/// raises it later.
pub fn lift_tunnel(conn: &quinn::Connection) {
    conn.set_max_concurrent_bi_streams(VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS));
    conn.set_receive_window(VarInt::from_u32(RECEIVE_WINDOW));
}
