//! A datagram as the SIP endpoint receives it: rsipstack's parser
//! (`SipMessage::try_from(&[u8])`, what its UDP and TCP transports call),
//! the Via `received` update the transport applies, then what our inspector
//! does with the message: header count, serialised size, the scanner check
//! on User-Agent, and for requests the RFC 3261 checks of
//! `src/sip/sanity.rs`. Nothing here may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rsipstack::sip::SipMessage;
use rsipstack::sip::transport::Transport;
use rsipstack::transport::SipConnection;
use switchboard_parsers::{guard, sanity};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = SipMessage::try_from(data) else {
        return;
    };
    let from = std::net::SocketAddr::from(([192, 0, 2, 1], 5060));
    let Ok(msg) = SipConnection::update_msg_received(msg, from, Transport::Udp) else {
        return;
    };
    let headers = match &msg {
        SipMessage::Request(r) => &r.headers,
        SipMessage::Response(r) => &r.headers,
    };
    let _ = headers.iter().count();
    let _ = headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("User-Agent"))
        .any(|h| guard::is_scanner(h.value()));
    let _ = msg.to_string().len();
    if let SipMessage::Request(req) = &msg {
        let _ = sanity::check(req);
    }
});
