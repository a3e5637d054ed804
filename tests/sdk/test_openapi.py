"""`GET /openapi.json`: served without a key on every backend, a valid OpenAPI 3.1 document
(checked by `openapi-spec-validator`), whose routes answer as described."""

import json
import urllib.error
import urllib.request

from openapi_spec_validator import OpenAPIV31SpecValidator, validate


def fetch_document(prism) -> tuple[dict, str]:
    # No Authorization header: the document is public.
    with urllib.request.urlopen(prism.base + "/openapi.json", timeout=10) as response:
        return json.load(response), response.headers["content-type"]


def test_the_document_is_served_without_a_key_and_validates_as_openapi_3_1(prism):
    document, content_type = fetch_document(prism)
    assert content_type == "application/json"
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)


def test_the_document_describes_prism_specific_routes_headers_and_the_error_shape(prism):
    document, _ = fetch_document(prism)
    paths = document["paths"]
    for path in ["/v1/async/{id}", "/v1/scheduled", "/v1/scheduled/{id}/pause", "/v1/uploads",
                 "/v1/batches/{id}/cancel", "/v1/webhook_endpoints", "/health", "/ready"]:
        assert path in paths, path
    completions = paths["/v1/chat/completions"]["post"]
    headers = {p["name"] for p in completions["parameters"] if p["in"] == "header"}
    assert headers == {"x-prism-async", "Idempotency-Key"}
    assert {"200", "202", "400", "401"} <= set(completions["responses"])
    assert "text/event-stream" in completions["responses"]["200"]["content"]
    assert completions["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    error = document["components"]["schemas"]["ErrorObject"]
    assert set(error["properties"]) == {"message", "type", "param", "code"}


def test_a_keyed_route_answers_401_in_the_documented_error_shape(prism):
    document, _ = fetch_document(prism)
    assert "401" in document["paths"]["/v1/batches"]["get"]["responses"]
    try:
        urllib.request.urlopen(prism.base + "/v1/batches", timeout=10)
        raise AssertionError("expected a 401")
    except urllib.error.HTTPError as error:
        assert error.code == 401
        assert set(json.load(error)["error"]) == {"message", "type", "param", "code"}
