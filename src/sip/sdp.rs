//! SDP offer/answer (RFC 3264) for one audio stream: G.711 (PCMU or PCMA)
//! and RFC 4733 telephone-event. Anything else in the offer is ignored;
//! an offer we cannot read is refused.

use std::net::{IpAddr, SocketAddr};

use crate::media::g711::Law;

/// Media direction (RFC 3264 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// What we answer to an offer with this direction.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// What the caller offered for audio, as far as we care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Where to send RTP (None: the offer says 0.0.0.0, "hold").
    pub remote: Option<SocketAddr>,
    /// The offer's audio formats in its order of preference.
    pub formats: Vec<u8>,
    /// Format -> (encoding name, clock rate).
    pub rtpmap: Vec<(u8, String, u32)>,
    pub ptime: Option<u32>,
    pub direction: Direction,
}

/// What we agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Law,
    /// The telephone-event payload type, when offered.
    pub telephone_event: Option<u8>,
    pub ptime: u32,
    pub direction: Direction,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not an SDP we can read (400).
    #[error("malformed SDP: {0}")]
    Malformed(&'static str),
    /// Readable, but nothing in it we can take (488).
    #[error("not acceptable: {0}")]
    NotAcceptable(&'static str),
}

const MAX_SDP: usize = 8192;

/// Reads the first audio stream of an offer.
pub fn parse_offer(body: &[u8]) -> Result<Offer, SdpError> {
    if body.is_empty() {
        return Err(SdpError::NotAcceptable(
            "an offer in the INVITE is required",
        ));
    }
    if body.len() > MAX_SDP {
        return Err(SdpError::Malformed("too long"));
    }
    let text = std::str::from_utf8(body).map_err(|_| SdpError::Malformed("not UTF-8"))?;
    let mut session_c: Option<Option<IpAddr>> = None;
    let mut session_dir = Direction::SendRecv;
    let mut seen_v = false;
    // The first audio section: (port, formats, c=, rtpmap, ptime, direction).
    let mut audio: Option<(u16, Vec<u8>)> = None;
    let mut audio_c: Option<Option<IpAddr>> = None;
    let mut rtpmap = Vec::new();
    let mut ptime = None;
    let mut audio_dir: Option<Direction> = None;
    // 0: session level, 1: in the first audio section, 2: after it.
    let mut section = 0;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let Some((kind, value)) = line.split_once('=') else {
            return Err(SdpError::Malformed("a line without '='"));
        };
        if kind.len() != 1 {
            return Err(SdpError::Malformed("a line type longer than one letter"));
        }
        match kind {
            "v" => {
                if value.trim() != "0" {
                    return Err(SdpError::Malformed("v= must be 0"));
                }
                seen_v = true;
            }
            "m" => {
                if section == 1 {
                    section = 2;
                    continue;
                }
                if section == 2 {
                    continue;
                }
                let mut parts = value.split_whitespace();
                let media = parts.next().unwrap_or("");
                let port = parts.next().unwrap_or("");
                let proto = parts.next().unwrap_or("");
                if media != "audio" {
                    continue;
                }
                // "port/count": only the port matters.
                let port: u16 = port
                    .split('/')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or(SdpError::Malformed("bad m= port"))?;
                if !proto.eq_ignore_ascii_case("RTP/AVP") {
                    // SRTP, DTLS and friends: not for this endpoint.
                    return Err(SdpError::NotAcceptable("only RTP/AVP is supported"));
                }
                let mut formats = Vec::new();
                for f in parts {
                    formats.push(
                        f.parse::<u8>()
                            .map_err(|_| SdpError::Malformed("bad format"))?,
                    );
                    if formats.len() > 64 {
                        return Err(SdpError::Malformed("too many formats"));
                    }
                }
                audio = Some((port, formats));
                section = 1;
            }
            "c" => {
                let addr = parse_connection(value)?;
                match section {
                    0 => session_c = Some(addr),
                    1 => audio_c = Some(addr),
                    _ => {}
                }
            }
            "a" if section != 2 => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                let dir = match name {
                    "sendrecv" => Some(Direction::SendRecv),
                    "sendonly" => Some(Direction::SendOnly),
                    "recvonly" => Some(Direction::RecvOnly),
                    "inactive" => Some(Direction::Inactive),
                    _ => None,
                };
                if let Some(d) = dir {
                    if section == 0 {
                        session_dir = d;
                    } else {
                        audio_dir = Some(d);
                    }
                    continue;
                }
                if section != 1 {
                    continue;
                }
                match name {
                    "rtpmap" => {
                        let (pt, enc) = arg
                            .split_once(char::is_whitespace)
                            .ok_or(SdpError::Malformed("bad rtpmap"))?;
                        let pt: u8 = pt.parse().map_err(|_| SdpError::Malformed("bad rtpmap"))?;
                        let mut e = enc.trim().split('/');
                        let name = e.next().unwrap_or("").to_ascii_lowercase();
                        let rate: u32 = e
                            .next()
                            .and_then(|r| r.parse().ok())
                            .ok_or(SdpError::Malformed("bad rtpmap rate"))?;
                        if rtpmap.len() < 64 {
                            rtpmap.push((pt, name, rate));
                        }
                    }
                    "ptime" => {
                        ptime = arg
                            .trim()
                            .parse::<u32>()
                            .ok()
                            .filter(|p| (10..=200).contains(p))
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if !seen_v {
        return Err(SdpError::Malformed("no v= line"));
    }
    let Some((port, formats)) = audio else {
        return Err(SdpError::NotAcceptable("no audio stream"));
    };
    if port == 0 {
        return Err(SdpError::NotAcceptable("the audio stream is disabled"));
    }
    let ip = audio_c
        .or(session_c)
        .ok_or(SdpError::Malformed("no c= line for the audio stream"))?;
    Ok(Offer {
        remote: ip.map(|ip| SocketAddr::new(ip, port)),
        formats,
        rtpmap,
        ptime,
        direction: audio_dir.unwrap_or(session_dir),
    })
}

/// `IN IP4 <addr>` (or IP6); 0.0.0.0 means no address (RFC 3264 hold).
fn parse_connection(v: &str) -> Result<Option<IpAddr>, SdpError> {
    let mut p = v.split_whitespace();
    let (net, kind, addr) = (p.next(), p.next(), p.next());
    if net != Some("IN") || !matches!(kind, Some("IP4" | "IP6")) {
        return Err(SdpError::Malformed("bad c= line"));
    }
    // Multicast TTL suffixes ("/127") are dropped.
    let addr = addr
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse::<IpAddr>().ok())
        .ok_or(SdpError::Malformed("bad c= address"))?;
    Ok((!addr.is_unspecified()).then_some(addr))
}

impl Offer {
    fn name_of(&self, pt: u8) -> Option<(String, u32)> {
        if let Some((_, n, r)) = self.rtpmap.iter().find(|(p, _, _)| *p == pt) {
            return Some((n.clone(), *r));
        }
        match pt {
            0 => Some(("pcmu".into(), 8000)),
            8 => Some(("pcma".into(), 8000)),
            _ => None,
        }
    }

    /// The first G.711 law in the offer's order, and telephone-event.
    pub fn negotiate(&self) -> Result<Negotiated, SdpError> {
        let mut codec = None;
        let mut te = None;
        for &pt in &self.formats {
            match self.name_of(pt) {
                Some((n, 8000)) if n == "pcmu" && codec.is_none() => codec = Some(Law::Ulaw),
                Some((n, 8000)) if n == "pcma" && codec.is_none() => codec = Some(Law::Alaw),
                Some((n, 8000)) if n == "telephone-event" && te.is_none() => te = Some(pt),
                _ => {}
            }
        }
        let codec = codec.ok_or(SdpError::NotAcceptable("no common codec (PCMU, PCMA)"))?;
        Ok(Negotiated {
            codec,
            telephone_event: te,
            ptime: 20,
            direction: self.direction.answer(),
        })
    }
}

/// Our answer: one audio stream at `local`.
pub fn answer(local: SocketAddr, n: &Negotiated, session_id: u64) -> String {
    let (ip_kind, ip) = match local.ip() {
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    };
    let (pt, name) = match n.codec {
        Law::Ulaw => (0, "PCMU"),
        Law::Alaw => (8, "PCMA"),
    };
    let mut fmts = pt.to_string();
    if let Some(te) = n.telephone_event {
        fmts.push_str(&format!(" {te}"));
    }
    let mut s = format!(
        "v=0\r\no=switchboard {session_id} {session_id} IN {ip_kind} {ip}\r\ns=switchboard\r\nc=IN {ip_kind} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {fmts}\r\na=rtpmap:{pt} {name}/8000\r\n",
        port = local.port()
    );
    if let Some(te) = n.telephone_event {
        s.push_str(&format!(
            "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\n"
        ));
    }
    s.push_str(&format!(
        "a=ptime:{}\r\na={}\r\n",
        n.ptime,
        n.direction.attr()
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-11,16\r\n";

    #[test]
    fn reads_sipps_offer_and_answers_pcma() {
        let o = parse_offer(SIPP.as_bytes()).unwrap();
        assert_eq!(o.remote, Some("127.0.0.1:6000".parse().unwrap()));
        let n = o.negotiate().unwrap();
        assert_eq!(n.codec, Law::Alaw);
        assert_eq!(n.telephone_event, Some(101));
        let a = answer("10.0.0.1:20000".parse().unwrap(), &n, 7);
        assert!(a.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{a}");
        assert!(a.contains("c=IN IP4 10.0.0.1\r\n"));
        assert!(a.contains("a=sendrecv"));
    }

    #[test]
    fn prefers_the_offers_order_and_static_types() {
        let o = parse_offer(
            b"v=0\nc=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 18 0 8\na=ptime:30\na=sendonly\n",
        )
        .unwrap();
        let n = o.negotiate().unwrap();
        assert_eq!(n.codec, Law::Ulaw);
        assert_eq!(n.telephone_event, None);
        assert_eq!(o.ptime, Some(30));
        assert_eq!(n.direction, Direction::RecvOnly);
    }

    #[test]
    fn refuses_what_it_cannot_take() {
        let g729 =
            b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        assert!(matches!(
            parse_offer(g729).unwrap().negotiate(),
            Err(SdpError::NotAcceptable(_))
        ));
        // PCMU at the wrong rate is not PCMU.
        let wide =
            b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 96\r\na=rtpmap:96 PCMU/16000\r\n";
        assert!(parse_offer(wide).unwrap().negotiate().is_err());
        assert!(matches!(parse_offer(b""), Err(SdpError::NotAcceptable(_))));
        assert!(matches!(
            parse_offer(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 4000 RTP/AVP 96\r\n"),
            Err(SdpError::NotAcceptable(_))
        ));
        assert!(matches!(
            parse_offer(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
            Err(SdpError::Malformed(_))
        ));
        assert!(matches!(
            parse_offer(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n"),
            Err(SdpError::NotAcceptable(_))
        ));
        for junk in [
            &b"\xff\xfe"[..],
            b"hello",
            b"v=0\r\nc=IN IP4 nope\r\nm=audio 1 RTP/AVP 0",
            b"v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 99999 RTP/AVP 0",
            b"v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 5 RTP/AVP x",
        ] {
            assert!(parse_offer(junk).and_then(|o| o.negotiate()).is_err());
        }
    }

    #[test]
    fn hold_address_means_no_remote() {
        let o = parse_offer(b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap();
        assert_eq!(o.remote, None);
    }
}
