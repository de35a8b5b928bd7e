//! The user authentication requests beyond `publickey` (draft §7.2) and the
//! keyboard-interactive frames (draft §7.2, RFC 4256), as wire types.
//!
//! Passwords and keyboard-interactive answers are secrets: they live in
//! [`Zeroizing`] strings and their `Debug` output shows only how many there
//! are, so that a frame logged at debug level never carries one.

use std::fmt;

use sshq_core::zeroize::Zeroizing;

use super::{Frame, UserauthRequest};

/// USERAUTH_REQUEST for method `password` (draft §7.2): RFC 4252 §8's
/// fields with the exporter value E of draft §7.3 first, so that a
/// password sent for one connection is refused on any other.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordRequest {
    pub user: String,
    pub service: String,
    /// E as the client computed it (32 octets).
    pub exporter: Vec<u8>,
    pub password: Zeroizing<String>,
}

impl fmt::Debug for PasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordRequest")
            .field("user", &self.user)
            .field("service", &self.service)
            .field("exporter", &self.exporter)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// USERAUTH_REQUEST for method `keyboard-interactive` (draft §7.2, RFC
/// 4256 §3.1), with E first as for passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyboardInteractiveRequest {
    pub user: String,
    pub service: String,
    pub exporter: Vec<u8>,
    /// RFC 4256's submethods hint; sshq's server ignores it.
    pub submethods: String,
}

/// USERAUTH_REQUEST naming a method sshq/1 does not define (`none`,
/// `hostbased`, ...): answered with USERAUTH_FAILURE, as SSH servers
/// answer methods they do not offer, so an SSH-style client that tries
/// them learns the list. The fields after the method name are not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherMethodRequest {
    pub user: String,
    pub service: String,
    pub method: String,
}

/// USERAUTH_INFO_RESPONSE (RFC 4256 §3.4): one answer per prompt of the
/// outstanding USERAUTH_INFO_REQUEST.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct InfoResponse {
    pub responses: Vec<Zeroizing<String>>,
}

impl fmt::Debug for InfoResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "InfoResponse({} responses, redacted)",
            self.responses.len()
        )
    }
}

/// A USERAUTH_REQUEST of any method: what the server's control machine
/// hands its driver, and what the client's sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest {
    PublicKey(UserauthRequest),
    Password(PasswordRequest),
    KeyboardInteractive(KeyboardInteractiveRequest),
    Other(OtherMethodRequest),
}

impl AuthRequest {
    pub fn user(&self) -> &str {
        match self {
            AuthRequest::PublicKey(r) => &r.user,
            AuthRequest::Password(r) => &r.user,
            AuthRequest::KeyboardInteractive(r) => &r.user,
            AuthRequest::Other(r) => &r.user,
        }
    }

    pub fn service(&self) -> &str {
        match self {
            AuthRequest::PublicKey(r) => &r.service,
            AuthRequest::Password(r) => &r.service,
            AuthRequest::KeyboardInteractive(r) => &r.service,
            AuthRequest::Other(r) => &r.service,
        }
    }

    /// The method name as the request carried it (peer text: escape it
    /// before logging).
    pub fn method_name(&self) -> &str {
        match self {
            AuthRequest::PublicKey(_) => "publickey",
            AuthRequest::Password(_) => "password",
            AuthRequest::KeyboardInteractive(_) => "keyboard-interactive",
            AuthRequest::Other(r) => &r.method,
        }
    }

    /// The frame that carries this request.
    pub fn into_frame(self) -> Frame {
        match self {
            AuthRequest::PublicKey(r) => Frame::UserauthRequest(r),
            AuthRequest::Password(r) => Frame::UserauthPassword(r),
            AuthRequest::KeyboardInteractive(r) => Frame::UserauthKeyboardInteractive(r),
            AuthRequest::Other(r) => Frame::UserauthOtherMethod(r),
        }
    }

    /// The request a frame carries; the frame itself back if it is no
    /// USERAUTH_REQUEST.
    pub fn from_frame(frame: Frame) -> Result<AuthRequest, Frame> {
        match frame {
            Frame::UserauthRequest(r) => Ok(AuthRequest::PublicKey(r)),
            Frame::UserauthPassword(r) => Ok(AuthRequest::Password(r)),
            Frame::UserauthKeyboardInteractive(r) => Ok(AuthRequest::KeyboardInteractive(r)),
            Frame::UserauthOtherMethod(r) => Ok(AuthRequest::Other(r)),
            other => Err(other),
        }
    }
}

impl From<UserauthRequest> for AuthRequest {
    fn from(request: UserauthRequest) -> Self {
        AuthRequest::PublicKey(request)
    }
}

/// Compares a request's exporter value with this connection's in time
/// that does not depend on where they differ (the length is public).
pub fn same_exporter(received: &[u8], ours: &[u8]) -> bool {
    if received.len() != ours.len() {
        return false;
    }
    let difference = received
        .iter()
        .zip(ours)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}
