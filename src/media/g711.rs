//! ITU-T G.711 companding: mu-law (PCMU) and A-law (PCMA) encode and decode
//! between 8-bit codes and 16-bit linear PCM, plus direct mu-law <-> A-law
//! transcoding tables.
//!
//! Decoding uses tables built at compile time; encoding follows the
//! standard segment search (eight segments of sixteen steps). The transcoding
//! tables are derived through linear PCM (decode one law, encode the other),
//! which is what G.711's Appendix tables approximate. Every function is total:
//! there is no input they refuse.

/// Bias added before the mu-law segment search (33 in 14-bit units, << 2).
const ULAW_BIAS: i32 = 0x84;
/// Largest magnitude mu-law can represent after biasing.
const ULAW_CLIP: i32 = 32635;

/// Encodes one linear sample as a mu-law code.
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = sample as i32;
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    if pcm > ULAW_CLIP {
        pcm = ULAW_CLIP;
    }
    pcm += ULAW_BIAS;
    // Segment = position of the highest set bit above bit 7.
    let mut seg: i32 = 0;
    let mut top = pcm >> 8;
    while top != 0 {
        seg += 1;
        top >>= 1;
    }
    let code = ((seg << 4) | ((pcm >> (seg + 3)) & 0x0F)) as u8;
    code ^ mask
}

/// Decodes one mu-law code to linear PCM.
pub const fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let mut t = (((u & 0x0F) as i32) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

/// Encodes one linear sample as an A-law code.
pub const fn linear_to_alaw(sample: i16) -> u8 {
    // A-law works on 13-bit magnitudes.
    let mut pcm = (sample as i32) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    // Segment 0 and 1 share the same step; above that each doubles.
    let mut seg: i32 = 0;
    let mut top = pcm >> 5;
    while top != 0 {
        seg += 1;
        top >>= 1;
    }
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let shift = if seg < 2 { 1 } else { seg };
    let code = ((seg << 4) | ((pcm >> shift) & 0x0F)) as u8;
    code ^ mask
}

/// Decodes one A-law code to linear PCM.
pub const fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    if seg == 0 {
        t += 8;
    } else {
        t += 0x108;
        t <<= seg - 1;
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn build_decode(alaw: bool) -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if alaw {
            alaw_to_linear(i as u8)
        } else {
            ulaw_to_linear(i as u8)
        };
        i += 1;
    }
    table
}

const fn build_transcode(from_ulaw: bool) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = if from_ulaw {
            linear_to_alaw(ulaw_to_linear(i as u8))
        } else {
            linear_to_ulaw(alaw_to_linear(i as u8))
        };
        i += 1;
    }
    table
}

/// mu-law code -> linear PCM.
pub static ULAW_DECODE: [i16; 256] = build_decode(false);
/// A-law code -> linear PCM.
pub static ALAW_DECODE: [i16; 256] = build_decode(true);
/// mu-law code -> A-law code (derived through linear PCM).
pub static ULAW_TO_ALAW: [u8; 256] = build_transcode(true);
/// A-law code -> mu-law code (derived through linear PCM).
pub static ALAW_TO_ULAW: [u8; 256] = build_transcode(false);

/// Decodes a mu-law payload, appending linear samples to `out`.
pub fn decode_ulaw(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| ULAW_DECODE[c as usize]));
}

/// Decodes an A-law payload, appending linear samples to `out`.
pub fn decode_alaw(codes: &[u8], out: &mut Vec<i16>) {
    out.extend(codes.iter().map(|&c| ALAW_DECODE[c as usize]));
}

/// Encodes linear samples as mu-law, appending codes to `out`.
pub fn encode_ulaw(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| linear_to_ulaw(s)));
}

/// Encodes linear samples as A-law, appending codes to `out`.
pub fn encode_alaw(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| linear_to_alaw(s)));
}

/// Rewrites a mu-law payload as A-law in place.
pub fn ulaw_to_alaw_in_place(codes: &mut [u8]) {
    for c in codes {
        *c = ULAW_TO_ALAW[*c as usize];
    }
}

/// Rewrites an A-law payload as mu-law in place.
pub fn alaw_to_ulaw_in_place(codes: &mut [u8]) {
    for c in codes {
        *c = ALAW_TO_ULAW[*c as usize];
    }
}

/// The two G.711 laws, as carried by RTP static payload types 0 and 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// PCMU, payload type 0.
    Ulaw,
    /// PCMA, payload type 8.
    Alaw,
}

impl Law {
    /// The static RTP payload type (RFC 3551).
    pub const fn payload_type(self) -> u8 {
        match self {
            Law::Ulaw => 0,
            Law::Alaw => 8,
        }
    }

    /// The law for a static payload type, if it is G.711.
    pub const fn from_payload_type(pt: u8) -> Option<Law> {
        match pt {
            0 => Some(Law::Ulaw),
            8 => Some(Law::Alaw),
            _ => None,
        }
    }

    /// Decodes a payload of this law.
    pub fn decode(self, codes: &[u8], out: &mut Vec<i16>) {
        match self {
            Law::Ulaw => decode_ulaw(codes, out),
            Law::Alaw => decode_alaw(codes, out),
        }
    }

    /// Encodes samples in this law.
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        match self {
            Law::Ulaw => encode_ulaw(samples, out),
            Law::Alaw => encode_alaw(samples, out),
        }
    }

    /// Rewrites a payload of this law into `to`, in place.
    pub fn transcode_in_place(self, to: Law, codes: &mut [u8]) {
        match (self, to) {
            (Law::Ulaw, Law::Alaw) => ulaw_to_alaw_in_place(codes),
            (Law::Alaw, Law::Ulaw) => alaw_to_ulaw_in_place(codes),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        // (code, linear) pairs from the G.711 mu-law table.
        for (code, linear) in [
            (0xFF, 0),
            (0x7F, 0),
            (0x80, 32124),
            (0x00, -32124),
            (0xFE, 8),
            (0x7E, -8),
            (0xF0, 120),
            (0xEF, 132),
            (0x8F, 16764),
        ] {
            assert_eq!(ulaw_to_linear(code), linear, "code {code:#04x}");
        }
        for (sample, code) in [
            (0i16, 0xFF),
            (-1, 0x7F),
            (32767, 0x80),
            (-32768, 0x00),
            (32124, 0x80),
            (8, 0xFE),
            (-8, 0x7E),
        ] {
            assert_eq!(linear_to_ulaw(sample), code, "sample {sample}");
        }
    }

    #[test]
    fn alaw_known_values() {
        for (code, linear) in [
            (0xD5, 8),
            (0x55, -8),
            (0xAA, 32256),
            (0x2A, -32256),
            (0xD4, 24),
            (0xC5, 264),
        ] {
            assert_eq!(alaw_to_linear(code), linear, "code {code:#04x}");
        }
        for (sample, code) in [
            (0i16, 0xD5),
            (-1, 0x55),
            (32767, 0xAA),
            (-32768, 0x2A),
            (7, 0xD5),
            (-8, 0x55),
        ] {
            assert_eq!(linear_to_alaw(sample), code, "sample {sample}");
        }
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            let back = linear_to_alaw(alaw_to_linear(code));
            assert_eq!(back, code, "A-law {code:#04x}");
            let back = linear_to_ulaw(ulaw_to_linear(code));
            // 0x7F is mu-law's negative zero: it decodes to 0, which encodes as 0xFF.
            let want = if code == 0x7F { 0xFF } else { code };
            assert_eq!(back, want, "mu-law {code:#04x}");
        }
    }

    #[test]
    fn decode_is_monotonic_within_each_sign() {
        // Positive codes 0x80..=0xFF decrease in magnitude as the code rises.
        for c in 0x80..0xFFu8 {
            assert!(ulaw_to_linear(c) > ulaw_to_linear(c + 1));
        }
        // Encoding every 16-bit sample never moves away from the sample's side.
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_to_linear(linear_to_ulaw(s)) as i32;
            let a = alaw_to_linear(linear_to_alaw(s)) as i32;
            let s = s as i32;
            // The quantisation error is at most half a step of the top segment.
            assert!((u - s).abs() <= 1024, "mu {s} -> {u}");
            assert!((a - s).abs() <= 1024, "A {s} -> {a}");
        }
    }

    #[test]
    fn transcoding_tables_keep_the_value_close() {
        for code in 0..=255u8 {
            let lin = ulaw_to_linear(code) as i32;
            let via = alaw_to_linear(ULAW_TO_ALAW[code as usize]) as i32;
            // The error is at most one A-law step at that magnitude (1/16 of it, or 16 near zero).
            assert!(
                (via - lin).abs() <= (lin.abs() / 16).max(16),
                "{code:#04x}: {lin} vs {via}"
            );
            let lin = alaw_to_linear(code) as i32;
            let via = ulaw_to_linear(ALAW_TO_ULAW[code as usize]) as i32;
            assert!(
                (via - lin).abs() <= (lin.abs() / 16).max(16),
                "{code:#04x}: {lin} vs {via}"
            );
        }
        // A round trip through the other law lands on the same or a neighbouring code.
        for code in 0..=255u8 {
            let back = ALAW_TO_ULAW[ULAW_TO_ALAW[code as usize] as usize];
            let d = (ulaw_to_linear(back) as i32 - ulaw_to_linear(code) as i32).abs();
            assert!(
                d <= (ulaw_to_linear(code) as i32).abs() / 8 + 16,
                "{code:#04x}"
            );
        }
    }

    #[test]
    fn law_helpers() {
        assert_eq!(Law::from_payload_type(0), Some(Law::Ulaw));
        assert_eq!(Law::from_payload_type(8), Some(Law::Alaw));
        assert_eq!(Law::from_payload_type(9), None);
        let mut codes = Vec::new();
        Law::Ulaw.encode(&[0, 1000, -1000], &mut codes);
        Law::Ulaw.transcode_in_place(Law::Alaw, &mut codes);
        let mut lin = Vec::new();
        Law::Alaw.decode(&codes, &mut lin);
        assert!(
            (lin[1] - 1000).abs() < 64 && (lin[2] + 1000).abs() < 64,
            "{lin:?}"
        );
    }
}
