"""The Uploads API with the official `openai` SDK: `client.uploads.upload_file_chunked` sends a
batch input larger than one request carries on the AWS backend (parts of 4 MiB, the size the
413 of `POST /v1/files` names there), then a batch runs over the file and its output is whole."""

import hashlib
import json
import time

import openai
import pytest
from openai import OpenAI

PART_SIZE = 4 * 1024 * 1024
LINES = 1500


def client_for(prism) -> OpenAI:
    return OpenAI(base_url=prism.base + "/v1", api_key=prism.key, max_retries=0)


def write_input(path):
    # About 9 MB: more than Lambda's 6 MB request payload, so three parts of 4 MiB.
    filler = "x" * 6000
    with path.open("w") as f:
        for i in range(LINES):
            f.write(json.dumps({
                "custom_id": f"request-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"question {i} {filler}"}],
                },
            }) + "\n")


def test_upload_file_chunked_then_a_batch_over_the_file_completes_every_line(prism, tmp_path):
    client = client_for(prism)
    path = tmp_path / "large.jsonl"
    write_input(path)
    size = path.stat().st_size
    assert size > 2 * PART_SIZE
    md5 = hashlib.md5(path.read_bytes()).hexdigest()

    upload = client.uploads.upload_file_chunked(
        file=path, mime_type="application/jsonl", purpose="batch", part_size=PART_SIZE, md5=md5
    )
    assert upload.status == "completed"
    assert upload.bytes == size
    assert upload.file is not None
    assert upload.file.bytes == size
    assert upload.file.purpose == "batch"
    assert client.files.retrieve(upload.file.id).bytes == size

    batch = client.batches.create(
        input_file_id=upload.file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    deadline = time.monotonic() + 300
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(1)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    assert batch.request_counts.total == LINES
    assert batch.request_counts.completed == LINES
    assert batch.error_file_id is None
    seen = set()
    for line in client.files.content(batch.output_file_id).text.strip().split("\n"):
        result = json.loads(line)
        assert result["response"]["status_code"] == 200
        seen.add(result["custom_id"])
    assert seen == {f"request-{i}" for i in range(LINES)}


def test_sdk_sees_uploads_errors_as_its_typed_exceptions(prism):
    client = client_for(prism)
    with pytest.raises(openai.BadRequestError) as refused:
        client.uploads.create(bytes=10, filename="a.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    assert refused.value.param == "purpose"
    upload = client.uploads.create(bytes=3, filename="a.jsonl", mime_type="application/jsonl", purpose="batch")
    part = client.uploads.parts.create(upload.id, data=b"{}\n")
    assert part.object == "upload.part"
    with pytest.raises(openai.BadRequestError) as mismatch:
        client.uploads.complete(upload.id, part_ids=[part.id], md5="0" * 32)
    assert mismatch.value.param == "md5"
    cancelled = client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.ConflictError):
        client.uploads.parts.create(upload.id, data=b"{}\n")
    with pytest.raises(openai.NotFoundError):
        client.uploads.cancel("upload_00000000000000000000000000")
