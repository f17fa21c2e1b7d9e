//! RTCP (RFC 3550 section 6): sender reports, receiver reports and BYE,
//! parsed from and written to compound packets; other packet types (SDES,
//! APP, feedback) are kept as opaque bodies.
//!
//! [`parse_compound`] refuses a packet whose version is not 2, whose length
//! field runs past the datagram, whose report count does not fit its length,
//! or whose padding is inconsistent; it never panics.

use super::rtp::be32;
use thiserror::Error;

pub const SR: u8 = 200;
pub const RR: u8 = 201;
pub const SDES: u8 = 202;
pub const BYE: u8 = 203;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RtcpError {
    #[error("RTCP packet too short: {0} bytes")]
    TooShort(usize),
    #[error("RTCP version {0}, only version 2 is supported")]
    BadVersion(u8),
    #[error("RTCP length field says {declared} bytes but only {available} remain")]
    LengthOverrun { declared: usize, available: usize },
    #[error("RTCP packet type {packet_type} with count {count} does not fit {len} bytes")]
    CountOverrun {
        packet_type: u8,
        count: usize,
        len: usize,
    },
    #[error("RTCP padding is inconsistent")]
    BadPadding,
    #[error("RTCP BYE reason runs past the packet")]
    BadReason,
    #[error("RTCP packets carry at most 31 reports or sources, got {0}")]
    TooMany(usize),
    #[error("RTCP BYE reason longer than 255 bytes")]
    ReasonTooLong,
}

/// One reception report block (RFC 3550 section 6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction of packets lost since the last report, in 1/256ths.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed on the wire).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    pub ntp_timestamp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    pub reports: Vec<ReportBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverReport {
    pub ssrc: u32,
    pub reports: Vec<ReportBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bye {
    pub sources: Vec<u32>,
    pub reason: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    ReceiverReport(ReceiverReport),
    Bye(Bye),
    /// Any other packet type, with its count field and body (after the 4-byte header).
    Other {
        packet_type: u8,
        count: u8,
        body: Vec<u8>,
    },
}

/// Parses every packet of a compound RTCP datagram.
pub fn parse_compound(buf: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if buf.len() < 4 {
        return Err(RtcpError::TooShort(buf.len()));
    }
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtcpError::TooShort(rest.len()));
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let padded = rest[0] & 0x20 != 0;
        let count = rest[0] & 0x1F;
        let packet_type = rest[1];
        let len = (u16::from_be_bytes([rest[2], rest[3]]) as usize + 1) * 4;
        if len > rest.len() {
            return Err(RtcpError::LengthOverrun {
                declared: len,
                available: rest.len(),
            });
        }
        let mut body = &rest[4..len];
        if padded {
            let pad = *body.last().ok_or(RtcpError::BadPadding)? as usize;
            if pad == 0 || pad > body.len() {
                return Err(RtcpError::BadPadding);
            }
            body = &body[..body.len() - pad];
        }
        out.push(parse_one(packet_type, count, body)?);
        rest = &rest[len..];
    }
    Ok(out)
}

fn parse_one(packet_type: u8, count: u8, body: &[u8]) -> Result<RtcpPacket, RtcpError> {
    let n = count as usize;
    let overrun = || RtcpError::CountOverrun {
        packet_type,
        count: n,
        len: body.len(),
    };
    Ok(match packet_type {
        SR => {
            if body.len() < 24 + 24 * n {
                return Err(overrun());
            }
            RtcpPacket::SenderReport(SenderReport {
                ssrc: be32(body, 0),
                ntp_timestamp: ((be32(body, 4) as u64) << 32) | be32(body, 8) as u64,
                rtp_timestamp: be32(body, 12),
                packet_count: be32(body, 16),
                octet_count: be32(body, 20),
                reports: (0..n).map(|i| parse_block(&body[24 + 24 * i..])).collect(),
            })
        }
        RR => {
            if body.len() < 4 + 24 * n {
                return Err(overrun());
            }
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: be32(body, 0),
                reports: (0..n).map(|i| parse_block(&body[4 + 24 * i..])).collect(),
            })
        }
        BYE => {
            if body.len() < 4 * n {
                return Err(overrun());
            }
            let sources = (0..n).map(|i| be32(body, 4 * i)).collect();
            let after = &body[4 * n..];
            let reason = match after.first() {
                None => None,
                Some(&l) => {
                    let text = after.get(1..1 + l as usize).ok_or(RtcpError::BadReason)?;
                    Some(text.to_vec())
                }
            };
            RtcpPacket::Bye(Bye { sources, reason })
        }
        _ => RtcpPacket::Other {
            packet_type,
            count,
            body: body.to_vec(),
        },
    })
}

fn parse_block(b: &[u8]) -> ReportBlock {
    let lost = be32(b, 4);
    // Sign-extend the 24-bit cumulative loss.
    let cumulative_lost = ((lost << 8) as i32) >> 8;
    ReportBlock {
        ssrc: be32(b, 0),
        fraction_lost: (lost >> 24) as u8,
        cumulative_lost,
        highest_seq: be32(b, 8),
        jitter: be32(b, 12),
        last_sr: be32(b, 16),
        delay_since_last_sr: be32(b, 20),
    }
}

fn write_block(b: &ReportBlock, out: &mut Vec<u8>) {
    let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0x00FF_FFFF;
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    out.extend_from_slice(&(((b.fraction_lost as u32) << 24) | lost).to_be_bytes());
    out.extend_from_slice(&b.highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.last_sr.to_be_bytes());
    out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
}

impl RtcpPacket {
    /// Appends this packet (header included, padded to 32 bits) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), RtcpError> {
        let start = out.len();
        let (count, packet_type) = match self {
            RtcpPacket::SenderReport(sr) => {
                check_count(sr.reports.len())?;
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&sr.ssrc.to_be_bytes());
                out.extend_from_slice(&sr.ntp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.rtp_timestamp.to_be_bytes());
                out.extend_from_slice(&sr.packet_count.to_be_bytes());
                out.extend_from_slice(&sr.octet_count.to_be_bytes());
                sr.reports.iter().for_each(|b| write_block(b, out));
                (sr.reports.len(), SR)
            }
            RtcpPacket::ReceiverReport(rr) => {
                check_count(rr.reports.len())?;
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&rr.ssrc.to_be_bytes());
                rr.reports.iter().for_each(|b| write_block(b, out));
                (rr.reports.len(), RR)
            }
            RtcpPacket::Bye(bye) => {
                check_count(bye.sources.len())?;
                out.extend_from_slice(&[0; 4]);
                bye.sources
                    .iter()
                    .for_each(|s| out.extend_from_slice(&s.to_be_bytes()));
                if let Some(reason) = &bye.reason {
                    let l = u8::try_from(reason.len()).map_err(|_| RtcpError::ReasonTooLong)?;
                    out.push(l);
                    out.extend_from_slice(reason);
                }
                (bye.sources.len(), BYE)
            }
            RtcpPacket::Other {
                packet_type,
                count,
                body,
            } => {
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(body);
                ((*count & 0x1F) as usize, *packet_type)
            }
        };
        while !(out.len() - start).is_multiple_of(4) {
            out.push(0);
        }
        let words = (out.len() - start) / 4 - 1;
        let words = u16::try_from(words).map_err(|_| RtcpError::TooMany(words))?;
        out[start] = 0x80 | count as u8;
        out[start + 1] = packet_type;
        out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
        Ok(())
    }
}

fn check_count(n: usize) -> Result<(), RtcpError> {
    if n > 31 {
        Err(RtcpError::TooMany(n))
    } else {
        Ok(())
    }
}

/// Writes a compound packet.
pub fn build_compound(packets: &[RtcpPacket]) -> Result<Vec<u8>, RtcpError> {
    let mut out = Vec::new();
    for p in packets {
        p.write_to(&mut out)?;
    }
    Ok(out)
}

/// A minimal SDES packet carrying one CNAME (RFC 3550 requires one in every
/// compound packet).
pub fn sdes_cname(ssrc: u32, cname: &str) -> RtcpPacket {
    let mut body = ssrc.to_be_bytes().to_vec();
    let name = &cname.as_bytes()[..cname.len().min(255)];
    body.push(1); // CNAME
    body.push(name.len() as u8);
    body.extend_from_slice(name);
    body.push(0); // end of list; write_to pads to 32 bits with more zeros
    RtcpPacket::Other {
        packet_type: SDES,
        count: 1,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(ssrc: u32, lost: i32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 25,
            cumulative_lost: lost,
            highest_seq: 0x0001_0005,
            jitter: 42,
            last_sr: 7,
            delay_since_last_sr: 65536,
        }
    }

    #[test]
    fn compound_round_trips() {
        let packets = vec![
            RtcpPacket::SenderReport(SenderReport {
                ssrc: 1,
                ntp_timestamp: 0x0102_0304_0506_0708,
                rtp_timestamp: 160,
                packet_count: 50,
                octet_count: 8000,
                reports: vec![block(2, 3), block(3, -2)],
            }),
            sdes_cname(1, "leg-a@switchboard"),
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 1,
                reports: vec![],
            }),
            RtcpPacket::Bye(Bye {
                sources: vec![1],
                reason: Some(b"hangup".to_vec()),
            }),
        ];
        let bytes = build_compound(&packets).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let back = parse_compound(&bytes).unwrap();
        // SDES comes back with its zero padding.
        assert_eq!(back[0], packets[0]);
        assert_eq!(back[2], packets[2]);
        assert_eq!(back[3], packets[3]);
        assert!(matches!(
            &back[1],
            RtcpPacket::Other {
                packet_type: SDES,
                count: 1,
                ..
            }
        ));
    }

    #[test]
    fn negative_loss_is_sign_extended() {
        let bytes = build_compound(&[RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 9,
            reports: vec![block(2, -5)],
        })])
        .unwrap();
        let RtcpPacket::ReceiverReport(rr) = &parse_compound(&bytes).unwrap()[0] else {
            panic!("not an RR")
        };
        assert_eq!(rr.reports[0].cumulative_lost, -5);
    }

    #[test]
    fn refuses_malformed() {
        assert_eq!(parse_compound(&[0x80, 201]), Err(RtcpError::TooShort(2)));
        assert_eq!(
            parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::BadVersion(1))
        );
        assert_eq!(
            parse_compound(&[0x80, 201, 0, 5, 0, 0, 0, 0]),
            Err(RtcpError::LengthOverrun {
                declared: 24,
                available: 8
            })
        );
        // RR claiming one report block in a packet that only holds the SSRC.
        assert_eq!(
            parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 0]),
            Err(RtcpError::CountOverrun {
                packet_type: RR,
                count: 1,
                len: 4
            })
        );
        assert_eq!(
            parse_compound(&[0xA0, 201, 0, 1, 0, 0, 0, 9]),
            Err(RtcpError::BadPadding)
        );
        assert_eq!(
            parse_compound(&[0x81, 203, 0, 2, 0, 0, 0, 1, 9, b'x', 0, 0]),
            Err(RtcpError::BadReason)
        );
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_compound(&bytes);
        }

        #[test]
        fn mutated_reports_parse_or_error(idx in 0usize..64, val: u8) {
            let mut bytes = build_compound(&[RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 9, reports: vec![block(2, 1)],
            }), RtcpPacket::Bye(Bye { sources: vec![9], reason: None })]).unwrap();
            let i = idx % bytes.len();
            bytes[i] = val;
            let _ = parse_compound(&bytes);
        }
    }
}
