//! An INVITE's SDP offer (`src/sip/sdp.rs`): parsed, negotiated, and our
//! answer to it built; the answer we build must itself be readable SDP.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_parsers::sdp;

fuzz_target!(|data: &[u8]| {
    let Ok(offer) = sdp::parse_offer(data) else {
        return;
    };
    let Ok(negotiated) = offer.negotiate() else {
        return;
    };
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 20000));
    let answer = sdp::answer(local, &negotiated, 1);
    let again = sdp::parse_offer(answer.as_bytes()).expect("our answer parses");
    assert_eq!(again.negotiate().map(|n| n.codec), Ok(negotiated.codec));
});
