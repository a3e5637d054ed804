//! A bound on the multipart bytes the parser must hold at once. multer streams a part's data, but
//! buffers a part's head (and the preamble before the first boundary) until it sees its end, with
//! no limit of its own: a 200 MB filename would be held whole. This guard watches the raw body on
//! its way into multer and fails it once a head runs past [`MAX_PART_HEAD_BYTES`].

/// Longest preamble plus part head (boundary line and part headers), in bytes. Real heads are a
/// few hundred bytes; a filename is capped at 255 bytes anyway.
pub const MAX_PART_HEAD_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("a multipart part header is longer than {MAX_PART_HEAD_BYTES} bytes")]
pub struct PartHeadTooLong;

/// Follows the body byte by byte: in the preamble, until the first boundary; in a head, until the
/// blank line that ends it; in data, until the delimiter (`CRLF--boundary`) of the next head.
pub struct HeadGuard {
    delimiter: Vec<u8>,
    /// KMP failure function of `delimiter`.
    fallback: Vec<usize>,
    stage: Stage,
    /// Bytes of the current preamble or head.
    head_bytes: usize,
    /// How much of the pattern looked for (`CRLFCRLF` or the delimiter) has matched.
    matched: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Preamble,
    Head,
    Data,
}

const HEAD_END: &[u8] = b"\r\n\r\n";

impl HeadGuard {
    pub fn new(boundary: &str) -> Self {
        let delimiter = [b"\r\n--", boundary.as_bytes()].concat();
        let mut fallback = vec![0; delimiter.len()];
        let mut k = 0;
        for i in 1..delimiter.len() {
            while k > 0 && delimiter[i] != delimiter[k] {
                k = fallback[k - 1];
            }
            if delimiter[i] == delimiter[k] {
                k += 1;
            }
            fallback[i] = k;
        }
        Self {
            delimiter,
            fallback,
            stage: Stage::Preamble,
            head_bytes: 0,
            // The body's start counts as a line start: the first boundary has no CRLF before it.
            matched: 2,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), PartHeadTooLong> {
        for &byte in chunk {
            if self.stage != Stage::Data {
                self.head_bytes += 1;
                if self.head_bytes > MAX_PART_HEAD_BYTES {
                    return Err(PartHeadTooLong);
                }
            }
            if self.stage == Stage::Head {
                // In CRLFCRLF, a mismatched byte can only restart a match if it is a CR.
                self.matched = if byte == HEAD_END[self.matched] {
                    self.matched + 1
                } else {
                    usize::from(byte == b'\r')
                };
                if self.matched == HEAD_END.len() {
                    self.stage = Stage::Data;
                    self.matched = 0;
                }
                continue;
            }
            while self.matched > 0 && byte != self.delimiter[self.matched] {
                self.matched = self.fallback[self.matched - 1];
            }
            if byte == self.delimiter[self.matched] {
                self.matched += 1;
            }
            if self.matched == self.delimiter.len() {
                self.stage = Stage::Head;
                self.head_bytes = 0;
                self.matched = 0;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(filename_len: usize, data: &[u8]) -> Vec<u8> {
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"".to_vec();
        body.extend(std::iter::repeat_n(b'f', filename_len));
        body.extend_from_slice(b"\"\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        body
    }

    fn feed_in_chunks(body: &[u8], size: usize) -> Result<(), PartHeadTooLong> {
        let mut guard = HeadGuard::new("XyZ");
        body.chunks(size).try_for_each(|chunk| guard.feed(chunk))
    }

    #[test]
    fn ordinary_parts_pass_however_the_body_is_split() {
        // Data much longer than the head limit, with near-misses of both patterns in it.
        let data = b"line\r\n\r-\r\n--Xy\r\n--XyQ\r\n".repeat(2_000);
        let body = body(255, &data);
        for size in [1, 2, 3, 7, 64, 4096, body.len()] {
            assert!(feed_in_chunks(&body, size).is_ok(), "chunks of {size}");
        }
    }

    #[test]
    fn a_head_past_the_limit_is_refused_however_the_body_is_split() {
        let body = body(MAX_PART_HEAD_BYTES, b"{}");
        for size in [1, 5, 4096, body.len()] {
            assert!(feed_in_chunks(&body, size).is_err(), "chunks of {size}");
        }
    }

    #[test]
    fn a_preamble_without_a_boundary_is_refused_even_with_blank_lines() {
        let mut body = b"\r\n\r\n".to_vec();
        body.resize(MAX_PART_HEAD_BYTES + 1, b'x');
        assert!(feed_in_chunks(&body, 1024).is_err());
    }
}
