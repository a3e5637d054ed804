"""Models and embeddings with the official `openai` SDK: `models.list()` and `models.retrieve`,
`embeddings.create` (the SDK asks for base64 and decodes it itself), and an embeddings batch of
10,000 lines, exactly as OpenAI's docs show them."""

import json
import math
import time

import openai
import pytest
from openai import OpenAI


def client_for(prism) -> OpenAI:
    return OpenAI(base_url=prism.base + "/v1", api_key=prism.key, max_retries=0)


def test_sdk_lists_and_retrieves_models(prism):
    client = client_for(prism)
    models = client.models.list()
    ids = [m.id for m in models]
    # The launcher's provider routes "*": the mock's own list, as the mock answers it.
    assert "text-embedding-3-small" in ids
    assert "gpt-4o-mini" in ids
    assert all(m.object == "model" for m in models)
    model = client.models.retrieve("text-embedding-3-small")
    assert model.id == "text-embedding-3-small"
    assert model.owned_by == "prism-testkit"
    with pytest.raises(openai.NotFoundError) as refused:
        client.models.retrieve("no-such-model")
    assert refused.value.code == "model_not_found"


def test_sdk_embeddings_are_deterministic_unit_vectors(prism):
    client = client_for(prism)
    first = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    assert [d.index for d in first.data] == [0, 1]
    vector = first.data[0].embedding
    assert len(vector) == 8
    assert math.isclose(sum(v * v for v in vector), 1.0, rel_tol=1e-4)
    assert first.data[0].embedding != first.data[1].embedding
    again = client.embeddings.create(model="text-embedding-3-small", input="alpha")
    assert again.data[0].embedding == vector
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="alpha", encoding_format="float", dimensions=16
    )
    assert len(floats.data[0].embedding) == 16
    assert first.usage.prompt_tokens == 2


def test_sdk_embeddings_batch_of_ten_thousand_lines(prism, tmp_path):
    client = client_for(prism)
    lines = 10_000
    path = tmp_path / "embeddings.jsonl"
    with path.open("w") as f:
        for i in range(lines):
            f.write(json.dumps({
                "custom_id": f"doc-{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "text-embedding-3-small", "input": f"document number {i}"},
            }) + "\n")
    batch_file = client.files.create(file=path.open("rb"), purpose="batch")
    batch = client.batches.create(
        input_file_id=batch_file.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert batch.endpoint == "/v1/embeddings"
    deadline = time.monotonic() + 600
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        assert time.monotonic() < deadline, batch
        time.sleep(1)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == lines
    assert batch.error_file_id is None
    content = client.files.content(batch.output_file_id).text.strip().split("\n")
    assert len(content) == lines
    seen = set()
    single = client.embeddings.create(
        model="text-embedding-3-small", input="document number 7", encoding_format="float"
    )
    for raw in content:
        line = json.loads(raw)
        seen.add(line["custom_id"])
        body = line["response"]["body"]
        assert body["object"] == "list"
        if line["custom_id"] == "doc-7":
            # A batch line embeds exactly as the same request sent alone.
            assert body["data"][0]["embedding"] == single.data[0].embedding
    assert seen == {f"doc-{i}" for i in range(lines)}
