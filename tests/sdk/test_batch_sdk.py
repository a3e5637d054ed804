"""The Batch API with the official `openai` SDK, exactly as its docs show: write JSONL, upload it
with purpose "batch", create the batch, poll it, read the output file."""

import json
import time
from decimal import Decimal

from openai import OpenAI


def client_for(prism) -> OpenAI:
    return OpenAI(base_url=prism.base + "/v1", api_key=prism.key, max_retries=0)


def test_sdk_batch_flow_from_jsonl_to_output_lines(prism, tmp_path):
    client = client_for(prism)
    path = tmp_path / "requests.jsonl"
    with path.open("w") as f:
        for i in range(12):
            f.write(json.dumps({
                "custom_id": f"request-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"question {i}"}],
                },
            }) + "\n")

    batch_file = client.files.create(file=path.open("rb"), purpose="batch")
    assert batch_file.purpose == "batch"
    assert batch_file.status == "processed"
    batch = client.batches.create(
        input_file_id=batch_file.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "sdk-test"},
    )
    # The docs read the counts right away: they exist from the start.
    assert batch.request_counts.completed == 0
    assert batch.status == "validating"

    deadline = time.monotonic() + 60
    while True:
        batch = client.batches.retrieve(batch.id)
        print(f"{batch.status}: {batch.request_counts.completed}/{batch.request_counts.total}")
        if batch.status in ("completed", "failed", "expired", "cancelled"):
            break
        assert time.monotonic() < deadline, batch
        time.sleep(0.5)
    assert batch.status == "completed"
    assert batch.request_counts.total == 12
    assert batch.request_counts.completed == 12
    assert batch.error_file_id is None
    assert batch.metadata == {"job": "sdk-test"}

    content = client.files.content(batch.output_file_id).text
    answers = {}
    tokens_in = tokens_out = 0
    for line in content.strip().split("\n"):
        result = json.loads(line)
        answers[result["custom_id"]] = result["response"]["body"]["choices"][0]["message"]["content"]
        tokens_in += result["response"]["body"]["usage"]["prompt_tokens"]
        tokens_out += result["response"]["body"]["usage"]["completion_tokens"]
    assert answers == {f"request-{i}": f"question {i}" for i in range(12)}
    # Prism's one extension field, kept by the SDK as an unknown field: the cost at gpt-4o-mini's
    # standard prices (Prism ran the lines itself), exact to the picodollar.
    assert batch.usage.input_tokens == tokens_in
    cost = Decimal(batch.model_extra["prism"]["cost_usd"])
    assert cost == (tokens_in * Decimal("0.15") + tokens_out * Decimal("0.60")) / 10**6

    listed = client.batches.list(limit=10)
    assert batch.id in [b.id for b in listed.data]
    outputs = client.files.list(purpose="batch_output")
    assert batch.output_file_id in [f.id for f in outputs.data]
    deleted = client.files.delete(batch_file.id)
    assert deleted.deleted is True


def test_sdk_files_round_trip_and_errors(prism, tmp_path):
    import openai
    import pytest

    client = client_for(prism)
    path = tmp_path / "one.jsonl"
    path.write_text('{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{}}\n')
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    assert client.files.retrieve(uploaded.id).bytes == path.stat().st_size
    assert client.files.content(uploaded.id).read() == path.read_bytes()
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=path.open("rb"), purpose="fine-tune")
    assert refused.value.body["param"] == "purpose"
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-00000000000000000000000000")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_00000000000000000000000000")


def test_sdk_reads_content_through_the_aws_redirect(prism, tmp_path):
    import http.client
    from urllib.parse import urlparse

    client = client_for(prism)
    path = tmp_path / "large.jsonl"
    line = '{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{}}\n'
    path.write_text(line * 64)  # past the 1 KiB redirect threshold the session configures
    uploaded = client.files.create(file=path.open("rb"), purpose="batch")
    base = urlparse(prism.base)
    raw = http.client.HTTPConnection(base.hostname, base.port, timeout=10)
    raw.request(
        "GET",
        f"{base.path}/v1/files/{uploaded.id}/content",
        headers={"Authorization": f"Bearer {prism.key}"},
    )
    answer = raw.getresponse()
    if prism.backend in ("aws", "lambda"):
        assert answer.status == 307, answer.status
        assert "X-Amz-Signature" in answer.getheader("location")
    else:
        assert answer.status == 200
    # Either way the SDK hands back the bytes: it follows the redirect to S3 by itself.
    assert client.files.content(uploaded.id).read() == path.read_bytes()
