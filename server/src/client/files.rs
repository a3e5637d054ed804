//! The Files API: upload a file (streamed from disk), read one, download its content to disk.

use std::path::Path;

use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, Response};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{Client, ClientError, FileObject, path_id};

/// Uploads the file at `path` with `purpose` (`batch` for batch input), streamed as it is read.
pub async fn upload(
    client: &Client,
    path: &Path,
    purpose: &str,
) -> Result<FileObject, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    let part = Part::file(path).await.map_err(io)?;
    let form = Form::new()
        .text("purpose", purpose.to_owned())
        .part("file", part);
    client
        .json(
            client.request(Method::POST, "/files").multipart(form),
            "a file",
        )
        .await
}

pub async fn get(client: &Client, id: &str) -> Result<FileObject, ClientError> {
    client
        .json(
            client.request(Method::GET, &format!("/files/{}", path_id(id)?)),
            "a file",
        )
        .await
}

/// Writes the content of file `id` to `to` as it arrives (following the redirect to S3 that
/// Prism on AWS answers for large files); returns the number of bytes written. The file is
/// created only once Prism has answered.
pub async fn download(client: &Client, id: &str, to: &Path) -> Result<u64, ClientError> {
    let response = content(client, id).await?;
    let mut file = tokio::fs::File::create(to)
        .await
        .map_err(|source| ClientError::Io {
            path: to.to_owned(),
            source,
        })?;
    write_body(client, response, &mut file, to).await
}

/// Copies the content of file `id` to `out` (named `out_name` in errors) as it arrives.
pub async fn copy_content(
    client: &Client,
    id: &str,
    out: &mut (impl AsyncWrite + Unpin),
    out_name: &Path,
) -> Result<u64, ClientError> {
    let response = content(client, id).await?;
    write_body(client, response, out, out_name).await
}

async fn content(client: &Client, id: &str) -> Result<Response, ClientError> {
    client
        .send(client.request(Method::GET, &format!("/files/{}/content", path_id(id)?)))
        .await
}

async fn write_body(
    client: &Client,
    response: Response,
    out: &mut (impl AsyncWrite + Unpin),
    out_name: &Path,
) -> Result<u64, ClientError> {
    let io = |source| ClientError::Io {
        path: out_name.to_owned(),
        source,
    };
    let mut written = 0;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|source| ClientError::Transport {
            url: client.base_url().to_owned(),
            source,
        })?;
        out.write_all(&chunk).await.map_err(io)?;
        written += chunk.len() as u64;
    }
    out.flush().await.map_err(io)?;
    Ok(written)
}
