//! The `BlobStore` contract: streamed puts (multipart past 5 MiB) and reads, and nothing left by
//! a failed upload.

use super::*;

fn chunks(total: usize, chunk: usize) -> Vec<bytes::Bytes> {
    (0..total.div_ceil(chunk))
        .map(|i| {
            let len = chunk.min(total - i * chunk);
            bytes::Bytes::from(vec![b'a' + (i % 26) as u8; len])
        })
        .collect()
}

pub async fn blobs_stream_in_and_out_and_a_failed_upload_leaves_nothing(p: Ports) {
    // Over 5 MiB, so S3 takes the multipart path, in chunks that do not align with its parts.
    let parts = chunks(12 * 1024 * 1024 + 17, 100_003);
    let expected: Vec<u8> = parts.iter().flat_map(|c| c.iter().copied()).collect();
    // An `unfold`, as every checked upload stream is: polled again after its end, it panics.
    let body = futures::stream::unfold(parts.into_iter(), |mut rest| async move {
        rest.next().map(|chunk| (Ok(chunk), rest))
    })
    .boxed();
    let written = p.blobs.put_stream("files/alpha/big", body).await.unwrap();
    assert_eq!(written, expected.len() as u64);
    let mut read = Vec::new();
    let mut stream = p.blobs.get("files/alpha/big").await.unwrap();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        read == expected,
        "read back {} bytes of {}",
        read.len(),
        expected.len()
    );

    let small = futures::stream::iter([Ok(bytes::Bytes::from_static(b"{\"a\":1}\n"))]).boxed();
    assert_eq!(
        p.blobs
            .put_stream("files/alpha/small", small)
            .await
            .unwrap(),
        8
    );

    for size in [1024, 7 * 1024 * 1024] {
        // Fails after `size` bytes: nothing may be left under the key.
        let failing = futures::stream::iter(chunks(size, 64 * 1024).into_iter().map(Ok))
            .chain(futures::stream::once(async { Err(UploadError::NotUtf8) }))
            .boxed();
        let key = format!("files/alpha/failed-{size}");
        assert!(matches!(
            p.blobs.put_stream(&key, failing).await,
            Err(UploadError::NotUtf8)
        ));
        assert!(
            p.blobs.get(&key).await.is_err(),
            "a failed upload left bytes under {key}"
        );
    }
    p.blobs.delete("files/alpha/big").await.unwrap();
    p.blobs.delete("files/alpha/big").await.unwrap(); // deleting nothing is not an error
    assert!(p.blobs.get("files/alpha/big").await.is_err());
}
