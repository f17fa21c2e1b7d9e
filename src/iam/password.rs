//! argon2id password hashing. Hashing is deliberately slow, so it runs on
//! the blocking pool, never on the async executor.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use super::domain::Password;

#[derive(Clone, Debug)]
pub struct Hasher {
    params: Params,
    /// A hash of a random password, verified against when the account does
    /// not exist so that the response time does not reveal which accounts do.
    dummy: String,
}

impl Hasher {
    pub fn new(memory_kib: u32, iterations: u32) -> Self {
        let params = Params::new(memory_kib, iterations, 1, None)
            .expect("argon2 parameters validated by config");
        let mut h = Self {
            params,
            dummy: String::new(),
        };
        h.dummy = h.hash_blocking(&crate::crypto::random_token(24));
        h
    }

    fn argon(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    fn hash_blocking(&self, password: &str) -> String {
        let salt = crate::crypto::random_bytes(16);
        self.argon()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .expect("argon2 hashing with valid parameters")
            .to_string()
    }

    /// The PHC string (`$argon2id$v=19$m=...`) for a new password.
    pub async fn hash(&self, password: &Password) -> String {
        let this = self.clone();
        let pw = password.clone();
        tokio::task::spawn_blocking(move || this.hash_blocking(pw.expose()))
            .await
            .expect("hashing task panicked")
    }

    /// Checks `password` against `phc`, or against a dummy hash when there is
    /// no account, taking the same time either way.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let this = self.clone();
        let pw = password.to_owned();
        let (phc, real) = match phc {
            Some(p) => (p.to_owned(), true),
            None => (self.dummy.clone(), false),
        };
        let ok = tokio::task::spawn_blocking(move || {
            // Bound the work an attacker can cause with a huge password.
            if pw.len() > 4 * Password::MAX {
                return false;
            }
            this.argon()
                .verify_password(pw.as_bytes(), phc.as_str())
                .is_ok()
        })
        .await
        .expect("verification task panicked");
        ok && real
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = Hasher::new(8192, 1);
        let pw = Password::parse("correct horse battery").unwrap();
        let phc = h.hash(&pw).await;
        assert!(phc.starts_with("$argon2id$v=19$m=8192,t=1,p=1$"), "{phc}");
        assert!(h.verify("correct horse battery", Some(&phc)).await);
        assert!(!h.verify("wrong horse battery", Some(&phc)).await);
        assert!(!h.verify("correct horse battery", None).await);
        assert!(!h.verify("anything", Some("not a phc string")).await);
        // Two hashes of one password differ (random salt).
        assert_ne!(phc, h.hash(&pw).await);
    }
}
