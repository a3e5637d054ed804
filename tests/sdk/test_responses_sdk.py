"""The Responses API with the official `openai` Python SDK: `responses.create` sync and
streamed, background mode (`retrieve`, `cancel`), a background stream broken off and resumed
with `starting_after`, losing and repeating no event, and `/v1/responses` as a batch endpoint."""

import json
import time

from openai import OpenAI
from openai.types.responses import Response


def client_for(prism) -> OpenAI:
    return OpenAI(base_url=prism.base + "/v1", api_key=prism.key, max_retries=0)


def wait_for(client, response_id, statuses, within=30):
    deadline = time.monotonic() + within
    while True:
        response = client.responses.retrieve(response_id)
        if response.status in statuses:
            return response
        assert time.monotonic() < deadline, response
        time.sleep(0.2)


def test_sdk_responses_create_returns_the_output_text(prism):
    response = client_for(prism).responses.create(model="gpt-4o-mini-resp", input="hello there")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "hello there"


def test_sdk_streamed_responses_yield_typed_events(prism):
    client = client_for(prism)
    with client.responses.create(
        model="gpt-4o-mini-resp-stream", input="one two three", stream=True
    ) as stream:
        events = list(stream)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "one two three"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_sdk_background_response_is_retrieved_until_completed(prism):
    client = client_for(prism)
    created = client.responses.create(
        model="gpt-4o-mini-bg", input="run without me", background=True
    )
    assert created.id.startswith("resp_")
    assert created.status in ("queued", "in_progress")
    done = wait_for(client, created.id, ("completed", "failed"))
    assert done.status == "completed", done
    assert done.id == created.id
    assert done.output_text == "run without me"


def test_sdk_background_response_cancel_is_idempotent(prism):
    client = client_for(prism)
    created = client.responses.create(model="mock-hang-sdk", input="never", background=True)
    first = client.responses.cancel(created.id)
    assert first.status == "cancelled"
    again = client.responses.cancel(created.id)
    assert again.status == "cancelled"
    assert client.responses.retrieve(created.id).status == "cancelled"


def test_sdk_background_stream_resumes_with_starting_after(prism):
    client = client_for(prism)
    text = "a stream the client leaves and picks up again later"
    stream = client.responses.create(
        model="mock-drip-150-sdk", input=text, background=True, stream=True
    )
    first = []
    for event in stream:
        first.append(event)
        if len(first) == 4:
            break
    stream.close()
    response_id = first[0].response.id
    assert response_id.startswith("resp_")
    last = first[-1].sequence_number

    rest = list(
        client.responses.retrieve(response_id, stream=True, starting_after=last)
    )
    events = first + rest
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text
    assert wait_for(client, response_id, ("completed",)).output_text == text


def test_sdk_responses_batch_writes_a_response_object_per_line(prism, tmp_path):
    client = client_for(prism)
    lines = 50
    path = tmp_path / "responses.jsonl"
    with path.open("w") as f:
        for i in range(lines):
            f.write(json.dumps({
                "custom_id": f"r-{i}",
                "method": "POST",
                "url": "/v1/responses",
                "body": {"model": "gpt-4o-mini-resp-batch", "input": f"answer number {i}"},
            }) + "\n")
    batch_file = client.files.create(file=path.open("rb"), purpose="batch")
    batch = client.batches.create(
        input_file_id=batch_file.id, endpoint="/v1/responses", completion_window="24h"
    )
    assert batch.endpoint == "/v1/responses"
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == lines
    content = client.files.content(batch.output_file_id).text.strip().split("\n")
    assert len(content) == lines
    input_tokens = output_tokens = 0
    for raw in content:
        line = json.loads(raw)
        # Each line's body is a Responses object the SDK's own type reads.
        response = Response.model_validate(line["response"]["body"])
        assert response.status == "completed"
        assert response.output_text == "answer number " + line["custom_id"][2:]
        input_tokens += response.usage.input_tokens
        output_tokens += response.usage.output_tokens
    assert batch.usage.input_tokens == input_tokens > 0
    assert batch.usage.output_tokens == output_tokens > 0
