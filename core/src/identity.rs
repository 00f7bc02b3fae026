//! Device identity: tokens and the Automerge actor ids bound to a device.
//!
//! A device token is `<device id>.<secret>`: the phone reads its device id from it, and the
//! server stores only a hash of the secret. A device's actor ids are its 16-byte device id
//! followed by 4 bytes chosen when the store was created, so the server can check that a change
//! was written by the device that sent it, and two installs on one device never share an actor
//! (sharing one would make Automerge see two different changes with the same sequence number).

use automerge::ActorId;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("a device token looks like `<32 hex digits>.<secret>`")]
    MalformedToken,
}

/// The device id inside a token, as 32 lowercase hex digits.
pub fn device_of_token(token: &str) -> Result<&str, IdentityError> {
    let (device, secret) = token.split_once('.').ok_or(IdentityError::MalformedToken)?;
    let hex = device.len() == 32 && device.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex || secret.len() < 16 || secret.len() > 128 {
        return Err(IdentityError::MalformedToken);
    }
    Ok(device)
}

fn device_bytes(device: &str) -> Option<[u8; 16]> {
    if device.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in device.as_bytes().chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// The actor id for `device` (32 hex digits) and this store's `nonce`.
pub fn actor_for(device: &str, nonce: [u8; 4]) -> Option<ActorId> {
    let mut bytes = device_bytes(device)?.to_vec();
    bytes.extend_from_slice(&nonce);
    Some(ActorId::from(bytes))
}

/// Whether `actor` is one of `device`'s.
pub fn actor_belongs_to(actor: &ActorId, device: &str) -> bool {
    match device_bytes(device) {
        Some(prefix) => actor.to_bytes().len() == 20 && actor.to_bytes()[..16] == prefix,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEVICE: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn token_names_its_device() {
        let token = format!("{DEVICE}.s3cretS3cretS3cret");
        assert_eq!(device_of_token(&token), Ok(DEVICE));
        for bad in [
            "",
            "abc",
            "nodot",
            &format!("{DEVICE}."),
            &format!("xyz.{}", "s".repeat(20)),
        ] {
            assert_eq!(
                device_of_token(bad),
                Err(IdentityError::MalformedToken),
                "{bad}"
            );
        }
    }

    #[test]
    fn actors_are_bound_to_devices() {
        let actor = actor_for(DEVICE, [1, 2, 3, 4]).unwrap();
        assert!(actor_belongs_to(&actor, DEVICE));
        assert!(!actor_belongs_to(
            &actor,
            "f123456789abcdef0123456789abcdef"
        ));
        assert!(!actor_belongs_to(&ActorId::from(vec![0u8; 16]), DEVICE));
        assert!(actor_for("short", [0; 4]).is_none());
    }
}
