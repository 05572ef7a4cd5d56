//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL uses it, without channel binding: the client
//! proves it knows the password without sending it, and checks that the server knows the
//! verifier too (a server that skips the final check is refused).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{hmac, pbkdf2};
use sha2::{Digest, Sha256};
use std::num::NonZeroU32;

/// Most PBKDF2 iterations we compute: PostgreSQL's default is 4096; a server asking for
/// billions would pin a CPU for minutes.
pub const MAX_ITERATIONS: u32 = 1_000_000;

/// The exchange after the client's first message.
pub struct Scram {
    password: String,
    client_first_bare: String,
    nonce: String,
    /// Set once the proof is sent: the signature the server must return.
    server_signature: Option<Vec<u8>>,
}

impl Scram {
    /// Starts with a nonce (printable, no ','), returns the state and the client-first message.
    pub fn start(password: &str, nonce: &str) -> (Scram, Vec<u8>) {
        // PostgreSQL takes the user from the startup message; the SCRAM user name is empty.
        let client_first_bare = format!("n=,r={nonce}");
        let first = format!("n,,{client_first_bare}").into_bytes();
        let s = Scram {
            password: password.to_string(),
            client_first_bare,
            nonce: nonce.to_string(),
            server_signature: None,
        };
        (s, first)
    }

    /// Takes server-first, returns client-final.
    pub fn server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(msg).map_err(|_| "server-first is not UTF-8")?;
        let (mut r, mut s, mut i) = (None, None, None);
        for part in text.split(',') {
            match part.split_at_checked(2) {
                Some(("r=", v)) => r = Some(v),
                Some(("s=", v)) => s = Some(v),
                Some(("i=", v)) => i = Some(v),
                _ => {}
            }
        }
        let (Some(r), Some(s), Some(i)) = (r, s, i) else {
            return Err("server-first lacks the nonce, salt or iteration count".into());
        };
        if !r.starts_with(&self.nonce) || r.len() == self.nonce.len() {
            return Err("the server's nonce does not extend ours".into());
        }
        let salt = B64.decode(s).map_err(|_| "the salt is not base64")?;
        let iterations: u32 = i.parse().map_err(|_| "bad iteration count")?;
        let iterations = NonZeroU32::new(iterations)
            .filter(|n| n.get() <= MAX_ITERATIONS)
            .ok_or_else(|| format!("iteration count {iterations} out of 1..={MAX_ITERATIONS}"))?;

        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted_key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&salted_key, b"Client Key");
        let stored_key = Sha256::digest(client_key.as_ref());
        let without_proof = format!("c=biws,r={r}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let client_sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &stored_key),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_sig.as_ref())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac::sign(&salted_key, b"Server Key");
        let server_sig = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        self.server_signature = Some(server_sig.as_ref().to_vec());
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final: the server proved it holds the verifier.
    pub fn server_final(&self, msg: &[u8]) -> Result<(), String> {
        let text = std::str::from_utf8(msg).map_err(|_| "server-final is not UTF-8")?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(format!("the server refused the proof: {e}"));
        }
        let expected = self
            .server_signature
            .as_ref()
            .ok_or("server-final before server-first")?;
        let v = text
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or("server-final lacks the signature")?;
        let got = B64
            .decode(v)
            .map_err(|_| "the server signature is not base64")?;
        if !crate::secret::ct_eq(&got, expected) {
            return Err("the server's signature is wrong: it does not know the password".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's example exchange (user "user", password "pencil").
    #[test]
    fn rfc7677_example() {
        let (mut s, first) = Scram::start("pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(first, b"n,,n=,r=rOprNGfwEbeRWgbNEkqO");
        // The RFC's client-first-bare names the user; PostgreSQL's does not, so put it back
        // to reproduce the RFC's proof.
        s.client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO".into();
        let final_msg = s
            .server_first(
                b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                  s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(final_msg).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(s.server_final(b"v=AAAA").is_err());
        assert!(s.server_final(b"e=invalid-proof").is_err());
    }

    #[test]
    fn refuses_a_nonce_it_did_not_start_or_too_many_iterations() {
        let (mut s, _) = Scram::start("pw", "abc");
        assert!(s.server_first(b"r=xyz123,s=AAAA,i=4096").is_err());
        assert!(s.server_first(b"r=abc123,s=AAAA,i=4000000000").is_err());
        assert!(s.server_first(b"r=abc123,s=AAAA").is_err());
    }
}
