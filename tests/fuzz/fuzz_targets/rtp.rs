//! Datagrams on a media port, handled the way `RtpSession`'s receiver does
//! (src/media/session.rs, `on_rtp_datagram`): RTCP goes to the compound
//! parser; RTP is parsed, re-serialised, ordered in a jitter buffer, and
//! the frames it releases are decoded as G.711 (both laws), run through the
//! in-band DTMF detector and the speech detector, or, for the event payload
//! type, fed to an RFC 4733 receiver. RTCP report blocks are taken along
//! the way. The input is several datagrams: each starts with a 2-byte
//! arrival time delta and a 1-byte length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_parsers::dtmf::{DtmfDetector, DtmfReceiver};
use switchboard_parsers::energy::{EnergyConfig, EnergyDetector};
use switchboard_parsers::g711::{decode_alaw, decode_ulaw};
use switchboard_parsers::jitter::{JitterBuffer, PacketMeta};
use switchboard_parsers::rtcp;
use switchboard_parsers::rtp::{self, RtpPacket};

const EVENT_PT: u8 = 101;

fuzz_target!(|data: &[u8]| {
    // The whole input as one datagram first (the plain case the seeds hit).
    one_datagram(data);

    let mut jitter: JitterBuffer<(u8, Vec<u8>)> = JitterBuffer::new(4);
    let mut dtmf = DtmfReceiver::new();
    let mut inband = DtmfDetector::default();
    let mut energy = EnergyDetector::new(EnergyConfig::default());
    let mut arrival = 0u32;
    let mut pcm = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        arrival = arrival.wrapping_add(u16::from_be_bytes([rest[0], rest[1]]) as u32);
        let len = (rest[2] as usize).min(rest.len() - 3);
        let datagram = &rest[3..3 + len];
        rest = &rest[3 + len..];
        if rtp::looks_like_rtcp(datagram) {
            let _ = rtcp::parse_compound(datagram);
            let _ = jitter.report_block();
            continue;
        }
        let Ok(packet) = RtpPacket::parse(datagram) else {
            continue;
        };
        let meta = PacketMeta {
            ssrc: packet.ssrc,
            sequence: packet.sequence,
            timestamp: packet.timestamp,
        };
        jitter.push(
            meta,
            arrival,
            (packet.payload_type, packet.payload.to_vec()),
        );
        while let Some(f) = jitter.pop() {
            let (pt, payload) = f.item;
            if pt == EVENT_PT {
                let _ = dtmf.on_payload(f.timestamp, &payload);
                continue;
            }
            pcm.clear();
            if pt == 8 {
                decode_alaw(&payload, &mut pcm);
            } else {
                decode_ulaw(&payload, &mut pcm);
            }
            let _ = inband.push(&pcm);
            energy.push(&pcm);
        }
        let _ = jitter.stats().lost();
    }
    let _ = jitter.report_block();
    let _ = jitter.drain();
    let _ = energy.finish();
});

fn one_datagram(data: &[u8]) {
    if let Ok(packets) = rtcp::parse_compound(data) {
        let _ = rtcp::build_compound(&packets);
    }
    if let Ok(packet) = RtpPacket::parse(data) {
        let _ = packet.len();
        if let Ok(bytes) = packet.to_bytes() {
            // What we serialise parses back to the same packet.
            let again = RtpPacket::parse(&bytes).expect("a serialised packet parses");
            assert_eq!(again.sequence, packet.sequence);
            assert_eq!(again.payload, packet.payload);
        }
    }
}
