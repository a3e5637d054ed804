//! The `KeyStore` contract: keys are found by hash until revoked.

use super::*;

pub async fn keys_are_found_by_hash_until_revoked(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    assert!(p.keys.is_empty().await.unwrap());
    let minted = mint_key(ids.key_id(now), tenant("alpha"), now);
    p.keys.insert(&minted.record).await.unwrap();
    assert!(!p.keys.is_empty().await.unwrap());
    let found = p
        .keys
        .find_by_hash(&hash_key(&minted.secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, minted.record);
    assert!(
        p.keys
            .find_by_hash(&hash_key("sk-prism-other"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(p.keys.list().await.unwrap().len(), 1);
    assert!(p.keys.revoke(minted.record.id.as_str(), now).await.unwrap());
    assert!(!p.keys.revoke(minted.record.id.as_str(), now).await.unwrap());
    let revoked = p
        .keys
        .find_by_hash(&hash_key(&minted.secret))
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.revoked_at.is_some());
}
