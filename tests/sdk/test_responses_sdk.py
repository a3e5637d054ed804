"""The Responses API with the official `openai` Python SDK: `responses.create` sync and
streamed, background mode (`retrieve`, `cancel`), and a background stream broken off and resumed
with `starting_after`, losing and repeating no event."""

import time

from openai import OpenAI


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
