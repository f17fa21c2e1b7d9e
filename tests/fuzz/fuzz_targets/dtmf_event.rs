//! RFC 4733 telephone-event payloads: each record of the input is a 4-byte
//! RTP timestamp and a payload (1-byte length), decoded and fed to one
//! `DtmfReceiver`, as the media session does for the event payload type.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_parsers::dtmf::{DtmfReceiver, TelephoneEvent, event_packets};

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = TelephoneEvent::parse(data) {
        // Re-serialising keeps what was parsed.
        let again = TelephoneEvent::parse(&event.to_bytes()).expect("4 bytes parse");
        assert_eq!(again, event);
        let _ = event.digit();
    }
    let mut receiver = DtmfReceiver::new();
    let mut rest = data;
    while rest.len() >= 5 {
        let timestamp = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let len = (rest[4] as usize).min(rest.len() - 5);
        let payload = &rest[5..5 + len];
        rest = &rest[5 + len..];
        if let Some(press) = receiver.on_payload(timestamp, payload) {
            assert_eq!(press.timestamp, timestamp);
            // The packets a sender makes of it decode to the same press.
            let duration = u32::from(payload.get(2).copied().unwrap_or(0)) << 8;
            for p in event_packets(press.digit, timestamp, duration, 160, 10) {
                let e = TelephoneEvent::parse(&p.payload).expect("4 bytes parse");
                assert_eq!(e.digit(), Some(press.digit));
            }
        }
    }
});
