"""The official `openai` Python SDK against `prism serve`, used exactly as our README shows."""

import time

import openai
import pytest
from openai import OpenAI


def client_for(prism) -> OpenAI:
    return OpenAI(base_url=prism.base + "/v1", api_key=prism.key, max_retries=0)


def test_sdk_async_submit_returns_the_job_id_and_polling_reaches_completed(prism):
    client = client_for(prism)
    response = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "What is 2+2?"}],
        extra_headers={"x-prism-async": "true"},
    )
    job_id = response.id
    assert job_id.startswith("job_")
    assert response.choices is None  # the 202 body is a job, not a completion

    deadline = time.monotonic() + 20
    while True:
        job = prism.get_json(f"/v1/async/{job_id}")
        if job["status"] in ("completed", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "completed", job
    assert job["result"]["choices"][0]["message"]["content"] == "What is 2+2?"


def test_sdk_sync_completion_parses_into_a_chat_completion(prism):
    completion = client_for(prism).chat.completions.create(
        model="gpt-4o-mini-sync",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}],
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "hello"
    assert completion._request_id is not None


def test_sdk_stream_yields_every_chunk(prism):
    stream = client_for(prism).chat.completions.create(
        model="gpt-4o-mini-stream",
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "one two three"


def test_sdk_raises_bad_request_for_async_streaming_and_does_not_retry(prism):
    client = OpenAI(base_url=prism.base + "/v1", api_key=prism.key)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="gpt-4o-mini-nostream",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            extra_headers={"x-prism-async": "true"},
        )
    assert raised.value.code == "streaming_unsupported"
    assert raised.value.request_id.startswith("req_")
    assert prism.upstream_hits("gpt-4o-mini-nostream") == 0


def test_sdk_raises_authentication_error_for_a_bad_key(prism):
    client = OpenAI(base_url=prism.base + "/v1", api_key="sk-prism-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
