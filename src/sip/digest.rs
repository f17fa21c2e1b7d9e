//! Digest authentication (RFC 3261 section 22, RFC 8760): HA1s, challenge
//! nonces, parsing `Authorization: Digest ...` and checking a response.
//!
//! Nonces are `<unix seconds, hex>-<random>.<HMAC-SHA256(key, "<ts>-<random>." realm)>`:
//! any node that holds the key (derived from the master key) validates them,
//! and they expire after `sip.nonce_ttl_secs`. MD5 is written out here (RFC
//! 1321): ring, the project's crypto, has no MD5, and MD5 is only used for
//! the legacy digest algorithm that phones still need.

use std::collections::HashMap;

/// A digest algorithm we offer and accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("md5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("sha-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(md5(data)),
            Algorithm::Sha256 => crate::crypto::sha256_hex(data),
        }
    }
}

/// `H(username:realm:password)`.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The expected `response` for qop=auth (or none, RFC 2069 style).
pub fn expected_response(
    alg: Algorithm,
    ha1: &str,
    method: &str,
    creds: &Credentials,
) -> Option<String> {
    let ha2 = alg.hash_hex(format!("{method}:{}", creds.uri).as_bytes());
    let text = match creds.qop.as_deref() {
        Some(q) if q.eq_ignore_ascii_case("auth") => format!(
            "{ha1}:{}:{}:{}:auth:{ha2}",
            creds.nonce,
            creds.nc.as_deref()?,
            creds.cnonce.as_deref()?
        ),
        Some(_) => return None,
        None => format!("{ha1}:{}:{ha2}", creds.nonce),
    };
    Some(alg.hash_hex(text.as_bytes()))
}

/// The fields of an `Authorization: Digest ...` header we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

/// Parses the value of an Authorization header. `None` when it is not a
/// digest, lacks a field, or names an algorithm we do not offer.
pub fn parse_authorization(value: &str) -> Option<Credentials> {
    let v = value.trim();
    let (scheme, rest) = v.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let params = parse_params(rest)?;
    let get = |k: &str| params.get(k).cloned();
    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(&a)?,
    };
    let nc = get("nc");
    if let Some(n) = &nc
        && (n.len() != 8 || !n.chars().all(|c| c.is_ascii_hexdigit()))
    {
        return None;
    }
    Some(Credentials {
        username: get("username")?,
        realm: get("realm")?,
        nonce: get("nonce")?,
        uri: get("uri")?,
        response: get("response")?.to_ascii_lowercase(),
        algorithm,
        qop: get("qop"),
        nc,
        cnonce: get("cnonce"),
    })
}

/// `k=v, k="quoted, with \" escapes"` into a map with lower-case keys.
fn parse_params(s: &str) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let key = s[start..i].trim().to_ascii_lowercase();
        if i >= b.len() || b[i] != b'=' || key.is_empty() {
            return None;
        }
        i += 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = String::new();
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    b'\\' if i + 1 < b.len() => {
                        v.push(b[i + 1] as char);
                        i += 2;
                    }
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    _ => {
                        // Keep multi-byte characters whole.
                        let ch = s[i..].chars().next()?;
                        v.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            if !closed {
                return None;
            }
            v
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            s[start..i].trim().to_owned()
        };
        if out.len() > 32 {
            return None;
        }
        out.insert(key, value);
    }
    Some(out)
}

/// Issues and checks nonces bound to this service's key.
#[derive(Clone)]
pub struct NonceKey {
    key: Vec<u8>,
    ttl_secs: u64,
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey([redacted])")
    }
}

/// What a nonce check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    Valid,
    /// Ours, but too old: the client may retry with a new one (stale=true).
    Stale,
    Invalid,
}

impl NonceKey {
    /// `master` is the service's master key; the nonce key is derived from it.
    pub fn new(master: &[u8], ttl_secs: u64) -> Self {
        let key = hex::decode(crate::crypto::hmac_sha256_hex(
            master,
            b"switchboard sip nonce",
        ))
        .expect("hex");
        Self { key, ttl_secs }
    }

    pub fn issue(&self, realm: &str, now_secs: u64) -> String {
        // A random part keeps nonces issued in the same second apart.
        let ts = format!(
            "{now_secs:x}-{}",
            hex::encode(crate::crypto::random_bytes(6))
        );
        let mac = crate::crypto::hmac_sha256_hex(&self.key, format!("{ts}.{realm}").as_bytes());
        format!("{ts}.{}", &mac[..32])
    }

    pub fn check(&self, nonce: &str, realm: &str, now_secs: u64) -> NonceState {
        let Some((ts, mac)) = nonce.split_once('.') else {
            return NonceState::Invalid;
        };
        let Some((secs, rand)) = ts.split_once('-') else {
            return NonceState::Invalid;
        };
        if secs.len() > 16 || rand.len() != 12 {
            return NonceState::Invalid;
        }
        let Ok(t) = u64::from_str_radix(secs, 16) else {
            return NonceState::Invalid;
        };
        let want = crate::crypto::hmac_sha256_hex(&self.key, format!("{ts}.{realm}").as_bytes());
        if !crate::crypto::ct_eq(&want.as_bytes()[..32], mac.as_bytes()) {
            return NonceState::Invalid;
        }
        if t > now_secs + 5 {
            return NonceState::Invalid;
        }
        if now_secs - t.min(now_secs) > self.ttl_secs {
            return NonceState::Stale;
        }
        NonceState::Valid
    }
}

/// MD5 (RFC 1321).
pub fn md5(input: &[u8]) -> [u8; 16] {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    // K[i] = floor(abs(sin(i + 1)) * 2^32)
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4294967296.0) as u32)
        .collect();
    let mut a0: u32 = 0x67452301;
    let mut b0: u32 = 0xefcdab89;
    let mut c0: u32 = 0x98badcfe;
    let mut d0: u32 = 0x10325476;
    let mut msg = input.to_vec();
    let bit_len = (input.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_le_bytes());
    for chunk in msg.chunks_exact(64) {
        let m: Vec<u32> = chunk
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let (mut a, mut b, mut c, mut d) = (a0, b0, c0, d0);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        a0 = a0.wrapping_add(a);
        b0 = b0.wrapping_add(b);
        c0 = c0.wrapping_add(c);
        d0 = d0.wrapping_add(d);
    }
    let mut out = [0u8; 16];
    for (i, v) in [a0, b0, c0, d0].iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_rfc_1321_vectors() {
        let cases = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex::encode(md5(input.as_bytes())), want, "{input:?}");
        }
    }

    #[test]
    fn rfc_2617_example_response() {
        // RFC 2617 section 3.5 (HTTP, qop=auth).
        let c = parse_authorization(
            r#"Digest username="Mufasa", realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        let h = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert_eq!(
            expected_response(Algorithm::Md5, &h, "GET", &c).unwrap(),
            c.response
        );
    }

    #[test]
    fn bad_headers_are_refused() {
        for bad in [
            "",
            "Basic abc",
            "Digest username=\"x",
            "Digest =x",
            "Digest username=a, realm=b, nonce=c, uri=d",
            "Digest username=a, realm=b, nonce=c, uri=d, response=e, algorithm=SHA-512",
            "Digest username=a, realm=b, nonce=c, uri=d, response=e, nc=1",
        ] {
            assert!(parse_authorization(bad).is_none(), "{bad:?}");
        }
        let ok = parse_authorization("digest Username=\"a\\\"b\",realm=r,nonce=n,uri=\"sip:x\",response=AB,algorithm=sha-256").unwrap();
        assert_eq!(ok.username, "a\"b");
        assert_eq!(ok.algorithm, Algorithm::Sha256);
        assert_eq!(ok.response, "ab");
    }

    #[test]
    fn nonces_expire_and_are_bound_to_key_and_realm() {
        let k = NonceKey::new(b"master", 300);
        let n = k.issue("demo.sip.test", 1_000_000);
        assert_eq!(k.check(&n, "demo.sip.test", 1_000_100), NonceState::Valid);
        assert_eq!(k.check(&n, "demo.sip.test", 1_000_400), NonceState::Stale);
        assert_eq!(
            k.check(&n, "other.sip.test", 1_000_100),
            NonceState::Invalid
        );
        let other = NonceKey::new(b"another", 300);
        assert_eq!(
            other.check(&n, "demo.sip.test", 1_000_100),
            NonceState::Invalid
        );
        assert_ne!(n, k.issue("demo.sip.test", 1_000_000), "nonces differ");
        for junk in ["", ".", "zz.zz", "ffffffffffffffffff.00", "1-2.3"] {
            assert_eq!(
                k.check(junk, "demo.sip.test", 1_000_100),
                NonceState::Invalid
            );
        }
    }
}
