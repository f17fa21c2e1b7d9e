//! Small cryptographic helpers: random tokens, digests, constant-time
//! comparison, HMAC signatures and sealing of secrets that must be stored
//! recoverably (webhook signing secrets). All primitives come from `ring`,
//! the one crypto provider in the binary.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// `n` random bytes from the operating system.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut buf)
        .expect("the OS random number generator failed");
    buf
}

/// A URL-safe random token with `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(bytes))
}

/// Hex SHA-256 of `data`: how high-entropy tokens (sessions, API keys) are
/// stored. Low-entropy secrets (passwords) use argon2id instead.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// Constant-time equality for secrets.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Hex HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    hex::encode(ring::hmac::sign(&key, msg).as_ref())
}

/// Seals and opens small secrets with ChaCha20-Poly1305 under the server's
/// master key. The sealed form is `base64(nonce || ciphertext || tag)`.
#[derive(Clone)]
pub struct Sealer {
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a sealed secret could not be opened (wrong master key or corrupted data)")]
pub struct OpenError;

impl Sealer {
    /// `master` must be 32 bytes.
    pub fn new(master: &[u8]) -> Self {
        let key = UnboundKey::new(&aead::CHACHA20_POLY1305, master).expect("32-byte master key");
        Self {
            key: std::sync::Arc::new(LessSafeKey::new(key)),
        }
    }

    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce_bytes: [u8; 12] = random_bytes(12).try_into().expect("12 bytes");
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::empty(),
                &mut buf,
            )
            .expect("sealing cannot fail for small inputs");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let raw = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| OpenError)?;
        if raw.len() < 12 + 16 {
            return Err(OpenError);
        }
        let (nonce, rest) = raw.split_at(12);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| OpenError)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_tamper() {
        let s = Sealer::new(&[7u8; 32]);
        let sealed = s.seal(b"whsec_abc");
        assert_eq!(s.open(&sealed).unwrap(), b"whsec_abc");
        let other = Sealer::new(&[8u8; 32]);
        assert!(other.open(&sealed).is_err());
        let mut bad = sealed.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert!(s.open(std::str::from_utf8(&bad).unwrap()).is_err());
        assert!(s.open("short").is_err());
    }

    #[test]
    fn hmac_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
