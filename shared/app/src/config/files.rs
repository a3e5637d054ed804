//! `[files]`: the Files and Uploads APIs' limits, and when downloads redirect to S3.

use std::time::Duration;

use prism_core::files::service::FilePolicy;
use serde::Deserialize;

/// The Files API's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSection {
    /// Uploads above this many bytes are answered 413 (the AWS backend also caps them at
    /// `http.max_body_bytes`, Lambda's request payload limit).
    pub max_upload_bytes: u64,
    /// Downloads above this many bytes are answered with a redirect to a pre-signed S3 URL on
    /// the AWS backend (default: 6 MB, what a Lambda response carries unthrottled).
    pub redirect_downloads_above: Option<u64>,
    #[serde(with = "humantime_serde")]
    pub presigned_url_ttl: Duration,
    /// How long an upload (the Uploads API) takes parts and its complete: one hour, as on
    /// OpenAI (shorter in tests).
    #[serde(with = "humantime_serde")]
    pub upload_ttl: Duration,
}

impl Default for FileSection {
    fn default() -> Self {
        let policy = FilePolicy::default();
        Self {
            max_upload_bytes: policy.max_upload_bytes,
            redirect_downloads_above: None,
            presigned_url_ttl: policy.presigned_url_ttl,
            upload_ttl: policy.upload_ttl,
        }
    }
}

/// Lambda's response size that streams unthrottled; larger downloads are redirected to S3.
pub const AWS_REDIRECT_DOWNLOADS_ABOVE: u64 = 6 * 1024 * 1024;
