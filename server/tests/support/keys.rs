//! Tenants' API keys for a test, made and revoked with `prism keys` on the test's backend.

use std::path::Path;

use tokio::process::Command;

use super::{Backend, PRISM};

pub async fn create_key(data: &Path, tenant: &str) -> String {
    create_key_on(&Backend::Embedded, data, tenant).await
}

pub async fn create_key_on(backend: &Backend, data: &Path, tenant: &str) -> String {
    let out = Command::new(PRISM)
        .args(["keys", "create", "--tenant", tenant, "--data-dir"])
        .arg(data)
        .envs(backend.env())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        key.starts_with("sk-prism-"),
        "unexpected key output {key:?}"
    );
    key
}

/// `prism keys revoke` for `secret`, by the display prefix `keys list` shows.
pub async fn revoke_key_on(backend: &Backend, data: &Path, secret: &str) {
    let prefix: String = secret.chars().take("sk-prism-".len() + 8).collect();
    let out = Command::new(PRISM)
        .args(["keys", "revoke", &prefix, "--data-dir"])
        .arg(data)
        .envs(backend.env())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "keys revoke failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
