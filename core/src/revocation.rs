//! Proof that a `revoked` answer came from the device's own server (issue 8.5).
//!
//! A phone wipes its data when its server says the device was revoked. Without a proof, anyone
//! between the phone and the server (a captive portal, a proxy) could send that answer and wipe
//! a village's phones. So the server's 401 `revoked` carries
//! `proof = HMAC-SHA256(key = SHA-256(device secret), "gridcase revoked v1" ‖ device ‖ nonce)`.
//! The key is what the server stores (the secret's hash) and what the phone can compute from its
//! token; someone who lacks the secret cannot make a proof. The nonce is derived from the request
//! body ([`request_nonce`]) and sent in the [`NONCE_HEADER`], so an old proof does not verify
//! for a new request.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::identity::{IdentityError, device_of_token};

/// The request header that carries the nonce the proof must cover.
pub const NONCE_HEADER: &str = "gridcase-nonce";

/// Nonces are at most this many characters (lowercase hex); longer ones are ignored.
pub const MAX_NONCE_LEN: usize = 64;

const CONTEXT: &[u8] = b"gridcase revoked v1";

type HmacSha256 = Hmac<Sha256>;

/// The key of a device's revocation proofs: SHA-256 of its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct RevocationKey {
    device: String,
    key: [u8; 32],
}

impl std::fmt::Debug for RevocationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationKey")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl RevocationKey {
    /// The key of the device named by `token` (`<device>.<secret>`).
    pub fn of_token(token: &str) -> Result<RevocationKey, IdentityError> {
        let device = device_of_token(token)?.to_ascii_lowercase();
        let secret = &token[device.len() + 1..];
        Ok(RevocationKey {
            device,
            key: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    fn mac(&self, nonce: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        for part in [CONTEXT, self.device.as_bytes(), nonce.as_bytes()] {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The proof the server sends with a `revoked` answer to a request that carried `nonce`.
    pub fn proof(&self, nonce: &str) -> String {
        hex(&self.mac(nonce).finalize().into_bytes())
    }

    /// Whether `proof` is this device's proof for `nonce` (compared in constant time).
    pub fn verifies(&self, nonce: &str, proof: &str) -> bool {
        match unhex(proof) {
            Some(bytes) => self.mac(nonce).verify_slice(&bytes).is_ok(),
            None => false,
        }
    }
}

/// The nonce of a request: the first 16 bytes of SHA-256 of its body, in hex. The body carries
/// the device time and the cursor, so each request has its own.
pub fn request_nonce(body: &[u8]) -> String {
    hex(&Sha256::digest(body)[..16])
}

/// Whether a nonce header is one the server answers with a proof: 1 to [`MAX_NONCE_LEN`]
/// lowercase hex digits.
pub fn is_valid_nonce(nonce: &str) -> bool {
    (1..=MAX_NONCE_LEN).contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef.secretsecretsecret42";

    #[test]
    fn only_the_secret_makes_a_proof_and_only_for_its_nonce() {
        let key = RevocationKey::of_token(TOKEN).unwrap();
        let nonce = request_nonce(b"request one");
        assert!(is_valid_nonce(&nonce));
        let proof = key.proof(&nonce);
        assert!(key.verifies(&nonce, &proof));
        assert!(!key.verifies(&request_nonce(b"request two"), &proof));
        let other = RevocationKey::of_token("0123456789abcdef0123456789abcdef.anothersecretsecret")
            .unwrap();
        assert!(!other.verifies(&nonce, &proof));
        assert!(!key.verifies(&nonce, &other.proof(&nonce)));
        let mut flipped = proof.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            "",
            "00",
            "zz",
            &flipped,
            &proof[..62],
            &format!("{proof}00"),
        ] {
            assert!(!key.verifies(&nonce, bad), "{bad}");
        }
        // The key is SHA-256 of the secret: what the server stores, not the token itself.
        assert_eq!(
            key.key,
            <[u8; 32]>::from(Sha256::digest(b"secretsecretsecret42"))
        );
    }

    #[test]
    fn nonces_are_short_lowercase_hex() {
        assert_eq!(request_nonce(b"x").len(), 32);
        for bad in ["", "ABC", "12 3", "g", &"a".repeat(65), "é"] {
            assert!(!is_valid_nonce(bad), "{bad}");
        }
    }
}
