//! Standard Webhooks signing: `webhook-signature` is `v1,<base64 HMAC-SHA256 of
//! "{id}.{timestamp}.{body}">` under each signing secret, space-separated during a rotation.
//! Secrets are `whsec_` + base64 of 32 random bytes; the key is the decoded bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2_11::Sha256;

const SECRET_PREFIX: &str = "whsec_";

/// A fresh signing secret.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The key bytes of a secret: base64-decoded after `whsec_` (as every Standard Webhooks
/// verifier reads it); a secret without the prefix is used as raw bytes.
fn key_bytes(secret: &str) -> Vec<u8> {
    match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => STANDARD
            .decode(encoded)
            .unwrap_or_else(|_| encoded.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// One `v1,<base64>` signature.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key_bytes(secret));
    // HMAC accepts keys of any length, so the error arm is unreachable; an empty signature
    // would only fail verification.
    let Ok(mut mac) = mac else {
        return String::from("v1,");
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The three headers of one delivery attempt: `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` (one signature per secret, space-separated).
pub fn headers(
    secrets: &[&str],
    id: &str,
    timestamp: i64,
    body: &str,
) -> [(&'static str, String); 3] {
    let signature = secrets
        .iter()
        .map(|secret| sign(secret, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ");
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_reference_vector() {
        // The Standard Webhooks spec's own example (libraries' shared test vector).
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_rotation_signs_with_every_secret_space_separated() {
        let [id, ts, sig] = headers(&["whsec_YQ==", "whsec_Yg=="], "evt_1", 5, "{}");
        assert_eq!(id, ("webhook-id", "evt_1".to_owned()));
        assert_eq!(ts, ("webhook-timestamp", "5".to_owned()));
        let parts: Vec<&str> = sig.1.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign("whsec_YQ==", "evt_1", 5, "{}"));
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn new_secrets_are_prefixed_32_random_bytes() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(key_bytes(&a).len(), 32);
    }
}
