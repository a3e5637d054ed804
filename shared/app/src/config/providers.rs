//! `[[providers]]`: where each model is routed, with which key, and how its batch lines run.

use prism_core::batches::modes::{BatchMode, FlexFallback};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub name: String,
    pub base_url: String,
    /// The environment variable holding the provider's key; the key itself never appears here.
    pub api_key_env: Option<String>,
    /// A Secrets Manager secret (name or ARN) holding the key; read by the AWS backend.
    pub api_key_secret: Option<String>,
    #[serde(default = "match_everything")]
    pub models: Vec<String>,
    /// How this provider runs batch lines: `gateway` (default), `native` or `flex`.
    #[serde(default, deserialize_with = "batch_mode")]
    pub batch: BatchMode,
    /// A flex line refused with "resource unavailable": `retry` (default) or `standard`.
    #[serde(default, deserialize_with = "flex_fallback")]
    pub flex_fallback: FlexFallback,
}

fn match_everything() -> Vec<String> {
    vec!["*".to_owned()]
}

/// Named by core's one list of modes, so config accepts exactly the modes there are.
fn batch_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BatchMode, D::Error> {
    let name = String::deserialize(d)?;
    BatchMode::parse(&name).ok_or_else(|| {
        let names: Vec<&str> = BatchMode::ALL.iter().map(|m| m.as_str()).collect();
        serde::de::Error::custom(format!(
            "unknown batch mode '{name}', expected one of {}",
            names.join(", ")
        ))
    })
}

fn flex_fallback<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FlexFallback, D::Error> {
    let name = String::deserialize(d)?;
    FlexFallback::parse(&name).ok_or_else(|| {
        let names: Vec<&str> = FlexFallback::ALL.iter().map(|f| f.as_str()).collect();
        serde::de::Error::custom(format!(
            "unknown flex_fallback '{name}', expected one of {}",
            names.join(", ")
        ))
    })
}

pub(super) fn default_providers() -> Vec<ProviderSection> {
    vec![ProviderSection {
        name: "openai".to_owned(),
        base_url: "https://api.openai.com/v1".to_owned(),
        api_key_env: Some("OPENAI_API_KEY".to_owned()),
        api_key_secret: None,
        models: match_everything(),
        batch: BatchMode::Gateway,
        flex_fallback: FlexFallback::Retry,
    }]
}
