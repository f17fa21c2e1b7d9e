//! RTP packets (RFC 3550 section 5.1) and sequence-number arithmetic.
//!
//! [`RtpPacket::parse`] borrows the payload and header extension from the
//! datagram; it refuses (never panics on) anything shorter than the fixed
//! header, a version other than 2, a CSRC list or extension running past the
//! end, and padding that is zero or longer than what remains.
//! [`RtpPacket::write_to`] serialises and refuses more than 15 CSRCs or
//! an extension that is not a whole number of 32-bit words.

use thiserror::Error;

/// Length of the fixed RTP header.
pub const HEADER_LEN: usize = 12;

/// Why a datagram is not an RTP packet we accept, or a packet cannot be written.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RtpError {
    #[error("RTP packet too short: {0} bytes, the fixed header needs 12")]
    TooShort(usize),
    #[error("RTP version {0}, only version 2 is supported")]
    BadVersion(u8),
    #[error("RTP CSRC list ({count} entries) runs past the end of a {len}-byte packet")]
    CsrcOverrun { count: usize, len: usize },
    #[error("RTP header extension runs past the end of the packet")]
    ExtensionOverrun,
    #[error("RTP padding of {pad} bytes does not fit the {available} bytes after the header")]
    BadPadding { pad: usize, available: usize },
    #[error("RTP packets carry at most 15 CSRCs, got {0}")]
    TooManyCsrc(usize),
    #[error("RTP header extension must be whole 32-bit words (at most 65535), got {0} bytes")]
    BadExtensionLength(usize),
    #[error("RTP payload type {0} does not fit 7 bits")]
    BadPayloadType(u8),
}

/// An RTP header extension (RFC 3550 section 5.3.1): a profile-defined id and
/// its data, a whole number of 32-bit words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extension<'a> {
    pub profile: u16,
    pub data: &'a [u8],
}

/// One RTP packet, borrowing its payload from the datagram it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub csrc: Vec<u32>,
    pub extension: Option<Extension<'a>>,
    pub payload: &'a [u8],
    /// Bytes of padding after the payload (0 = the P bit is clear).
    pub padding: u8,
}

impl<'a> RtpPacket<'a> {
    /// A plain packet: no CSRCs, no extension, no padding.
    pub fn new(
        payload_type: u8,
        sequence: u16,
        timestamp: u32,
        ssrc: u32,
        payload: &'a [u8],
    ) -> Self {
        RtpPacket {
            marker: false,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrc: Vec::new(),
            extension: None,
            payload,
            padding: 0,
        }
    }

    /// Parses one datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < HEADER_LEN {
            return Err(RtpError::TooShort(buf.len()));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = buf[0] & 0x20 != 0;
        let has_extension = buf[0] & 0x10 != 0;
        let csrc_count = (buf[0] & 0x0F) as usize;
        let marker = buf[1] & 0x80 != 0;
        let payload_type = buf[1] & 0x7F;
        let sequence = u16::from_be_bytes([buf[2], buf[3]]);
        let timestamp = be32(buf, 4);
        let ssrc = be32(buf, 8);

        let mut offset = HEADER_LEN + 4 * csrc_count;
        if offset > buf.len() {
            return Err(RtpError::CsrcOverrun {
                count: csrc_count,
                len: buf.len(),
            });
        }
        let csrc = (0..csrc_count)
            .map(|i| be32(buf, HEADER_LEN + 4 * i))
            .collect();

        let extension = if has_extension {
            let head = buf
                .get(offset..offset + 4)
                .ok_or(RtpError::ExtensionOverrun)?;
            let profile = u16::from_be_bytes([head[0], head[1]]);
            let words = u16::from_be_bytes([head[2], head[3]]) as usize;
            let start = offset + 4;
            let data = buf
                .get(start..start + 4 * words)
                .ok_or(RtpError::ExtensionOverrun)?;
            offset = start + 4 * words;
            Some(Extension { profile, data })
        } else {
            None
        };

        let mut end = buf.len();
        let mut padding = 0u8;
        if has_padding {
            let pad = buf[buf.len() - 1];
            let available = end - offset;
            if pad == 0 || pad as usize > available {
                return Err(RtpError::BadPadding {
                    pad: pad as usize,
                    available,
                });
            }
            padding = pad;
            end -= pad as usize;
        }
        Ok(RtpPacket {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrc,
            extension,
            payload: &buf[offset..end],
            padding,
        })
    }

    /// Length of the serialised packet.
    pub fn len(&self) -> usize {
        HEADER_LEN
            + 4 * self.csrc.len()
            + self.extension.map_or(0, |e| 4 + e.data.len())
            + self.payload.len()
            + self.padding as usize
    }

    /// True when the packet carries no payload.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// Appends the serialised packet to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), RtpError> {
        if self.csrc.len() > 15 {
            return Err(RtpError::TooManyCsrc(self.csrc.len()));
        }
        if self.payload_type > 0x7F {
            return Err(RtpError::BadPayloadType(self.payload_type));
        }
        if let Some(ext) = self.extension
            && (ext.data.len() % 4 != 0 || ext.data.len() / 4 > u16::MAX as usize)
        {
            return Err(RtpError::BadExtensionLength(ext.data.len()));
        }
        out.reserve(self.len());
        let mut b0 = 0x80 | self.csrc.len() as u8;
        if self.padding > 0 {
            b0 |= 0x20;
        }
        if self.extension.is_some() {
            b0 |= 0x10;
        }
        out.push(b0);
        out.push(((self.marker as u8) << 7) | self.payload_type);
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in &self.csrc {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some(ext) = self.extension {
            out.extend_from_slice(&ext.profile.to_be_bytes());
            out.extend_from_slice(&((ext.data.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(ext.data);
        }
        out.extend_from_slice(self.payload);
        if self.padding > 0 {
            out.extend(std::iter::repeat_n(0u8, self.padding as usize - 1));
            out.push(self.padding);
        }
        Ok(())
    }

    /// The serialised packet.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RtpError> {
        let mut out = Vec::with_capacity(self.len());
        self.write_to(&mut out)?;
        Ok(out)
    }
}

/// True when a datagram on a muxed port looks like RTCP (RFC 5761 section 4:
/// second byte 192..=223), so it should go to the RTCP parser instead.
pub fn looks_like_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf[0] >> 6 == 2 && (192..=223).contains(&buf[1])
}

pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// Signed distance from `b` to `a` in sequence space (`a - b`, wrapping):
/// positive when `a` is newer.
pub fn seq_diff(a: u16, b: u16) -> i16 {
    a.wrapping_sub(b) as i16
}

/// True when `a` comes after `b`, allowing for wrap-around.
pub fn seq_newer(a: u16, b: u16) -> bool {
    seq_diff(a, b) > 0
}

/// Extends 16-bit sequence numbers into a 64-bit count that keeps growing
/// across wrap-arounds (the RFC 3550 "cycles" counter), tolerating
/// reordering of up to half the sequence space.
#[derive(Debug, Clone, Default)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended value of `seq`, relative to the highest one seen so far.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            // Start one cycle up so that early reordering cannot go below zero.
            let ext = (1u64 << 16) | seq as u64;
            self.highest = Some(ext);
            return ext;
        };
        let diff = seq_diff(seq, highest as u16) as i64;
        let ext = (highest as i64 + diff).max(0) as u64;
        if ext > highest {
            self.highest = Some(ext);
        }
        ext
    }

    /// The highest extended sequence number seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_plain_packet() {
        // Marker set, PCMA, as in SIPp's g711a.pcap.
        let mut buf = vec![
            0x80, 0x88, 0xE6, 0xFD, 0, 0, 0, 0xF0, 0xDE, 0xE0, 0xEE, 0x8F,
        ];
        buf.extend_from_slice(&[0xD5; 160]);
        let p = RtpPacket::parse(&buf).unwrap();
        assert!(p.marker);
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.sequence, 0xE6FD);
        assert_eq!(p.timestamp, 0xF0);
        assert_eq!(p.ssrc, 0xDEE0EE8F);
        assert_eq!(p.payload.len(), 160);
        assert_eq!(p.to_bytes().unwrap(), buf);
    }

    #[test]
    fn full_header_round_trips() {
        let ext = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let payload = [9u8; 20];
        let p = RtpPacket {
            marker: true,
            payload_type: 101,
            sequence: 65535,
            timestamp: u32::MAX,
            ssrc: 0x1234_5678,
            csrc: vec![1, 2, 3],
            extension: Some(Extension {
                profile: 0xBEDE,
                data: &ext,
            }),
            payload: &payload,
            padding: 3,
        };
        let bytes = p.to_bytes().unwrap();
        assert_eq!(bytes.len(), p.len());
        assert_eq!(bytes[0], 0x80 | 0x20 | 0x10 | 3);
        assert_eq!(RtpPacket::parse(&bytes).unwrap(), p);
    }

    #[track_caller]
    fn refuse(buf: &[u8], want: RtpError) {
        assert_eq!(RtpPacket::parse(buf), Err(want));
    }

    #[test]
    fn refuses_malformed_packets() {
        let ok = [0x80u8, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        refuse(&ok[..11], RtpError::TooShort(11));
        refuse(&[], RtpError::TooShort(0));
        let mut v1 = ok;
        v1[0] = 0x40;
        refuse(&v1, RtpError::BadVersion(1));
        let mut cc = ok;
        cc[0] = 0x82;
        refuse(&cc, RtpError::CsrcOverrun { count: 2, len: 12 });
        let mut x = ok.to_vec();
        x[0] = 0x90;
        refuse(&x, RtpError::ExtensionOverrun);
        x.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0]); // says 2 words, has 1
        refuse(&x, RtpError::ExtensionOverrun);
        let mut p = ok.to_vec();
        p[0] = 0xA0;
        p.push(0);
        refuse(
            &p,
            RtpError::BadPadding {
                pad: 0,
                available: 1,
            },
        );
        *p.last_mut().unwrap() = 2;
        refuse(
            &p,
            RtpError::BadPadding {
                pad: 2,
                available: 1,
            },
        );
        *p.last_mut().unwrap() = 1;
        assert_eq!(RtpPacket::parse(&p).unwrap().payload, &[] as &[u8]);
    }

    #[test]
    fn refuses_unwritable_packets() {
        let mut p = RtpPacket::new(0, 0, 0, 0, &[]);
        p.csrc = vec![0; 16];
        assert_eq!(p.to_bytes(), Err(RtpError::TooManyCsrc(16)));
        let mut p = RtpPacket::new(128, 0, 0, 0, &[]);
        assert_eq!(p.to_bytes(), Err(RtpError::BadPayloadType(128)));
        p.payload_type = 0;
        p.extension = Some(Extension {
            profile: 0,
            data: &[1, 2, 3],
        });
        assert_eq!(p.to_bytes(), Err(RtpError::BadExtensionLength(3)));
    }

    #[test]
    fn rtcp_demux() {
        assert!(looks_like_rtcp(&[0x80, 200]));
        assert!(looks_like_rtcp(&[0x81, 201]));
        assert!(!looks_like_rtcp(&[0x80, 0x08]));
        assert!(!looks_like_rtcp(&[0x80, 0x88]));
        assert!(!looks_like_rtcp(&[0x80]));
    }

    #[test]
    fn sequence_arithmetic_wraps() {
        assert!(seq_newer(0, 65535));
        assert!(seq_newer(5, 65530));
        assert!(!seq_newer(65530, 5));
        assert!(!seq_newer(7, 7));
        assert_eq!(seq_diff(2, 65534), 4);
        assert_eq!(seq_diff(65534, 2), -4);

        let mut ext = SeqExtender::new();
        let base = ext.extend(65534);
        assert_eq!(ext.extend(65535), base + 1);
        assert_eq!(ext.extend(0), base + 2);
        assert_eq!(
            ext.extend(65535),
            base + 1,
            "late packet from before the wrap"
        );
        assert_eq!(ext.extend(1), base + 3);
        assert_eq!(ext.highest(), Some(base + 3));
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_error(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(p) = RtpPacket::parse(&bytes) {
                // Whatever parses writes back to the same bytes, except padding content.
                let out = p.to_bytes().unwrap();
                prop_assert_eq!(out.len(), bytes.len());
                let body = bytes.len() - p.padding as usize;
                prop_assert_eq!(&out[..body], &bytes[..body]);
            }
        }

        #[test]
        fn valid_headers_round_trip(
            marker: bool, pt in 0u8..128, seq: u16, ts: u32, ssrc: u32,
            csrc in proptest::collection::vec(any::<u32>(), 0..16),
            ext in proptest::option::of((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..3).prop_map(|w| w.repeat(4)))),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            padding in 0u8..8,
        ) {
            let p = RtpPacket {
                marker, payload_type: pt, sequence: seq, timestamp: ts, ssrc, csrc,
                extension: ext.as_ref().map(|(profile, data)| Extension { profile: *profile, data }),
                payload: &payload, padding,
            };
            let bytes = p.to_bytes().unwrap();
            prop_assert_eq!(RtpPacket::parse(&bytes).unwrap(), p);
        }
    }
}
