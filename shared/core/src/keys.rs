//! API keys: generation, hashing and the record stored in place of the key itself.

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Timestamp;
use crate::ids::{KeyId, TenantId};

pub const KEY_PREFIX: &str = "sk-prism-";
const KEY_BODY_LEN: usize = 40;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: KeyId,
    pub tenant: TenantId,
    /// Hex SHA-256 of the whole key. A fast hash suits keys of ~238 random bits.
    pub hash: String,
    /// The first characters of the key, shown in listings so an operator can tell keys apart.
    pub display_prefix: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A freshly minted key: the secret (shown once) and the record to store.
pub struct MintedKey {
    pub secret: String,
    pub record: ApiKeyRecord,
}

pub fn mint_key(id: KeyId, tenant: TenantId, now: Timestamp) -> MintedKey {
    let mut rng = rand::rng();
    let body: String = (0..KEY_BODY_LEN)
        .map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())]))
        .collect();
    let secret = format!("{KEY_PREFIX}{body}");
    let record = ApiKeyRecord {
        id,
        tenant,
        hash: hash_key(&secret),
        display_prefix: secret.chars().take(KEY_PREFIX.len() + 8).collect(),
        created_at: now,
        revoked_at: None,
    };
    MintedKey { secret, record }
}

pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The store found `record` by hash; this re-checks the hash in constant time, so the only
/// timing-visible step is the indexed lookup of a digest the caller cannot steer byte by byte.
pub fn key_matches(record: &ApiKeyRecord, presented_hash: &str) -> bool {
    record.revoked_at.is_none()
        && bool::from(record.hash.as_bytes().ct_eq(presented_hash.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdGenerator;

    #[test]
    fn minted_key_matches_its_record_until_revoked() {
        let ids = IdGenerator::new();
        let tenant = TenantId::parse("acme").unwrap();
        let minted = mint_key(ids.key_id(Timestamp(0)), tenant, Timestamp(0));
        assert!(minted.secret.starts_with(KEY_PREFIX));
        assert!(key_matches(&minted.record, &hash_key(&minted.secret)));
        assert!(!key_matches(&minted.record, &hash_key("sk-prism-other")));
        let mut revoked = minted.record.clone();
        revoked.revoked_at = Some(Timestamp(1));
        assert!(!key_matches(&revoked, &hash_key(&minted.secret)));
    }
}
