"""Scheduled completions called exactly as the README shows: its curl commands (with this
server's base URL and key, and a due time that is still ahead) and the SDK's generic `post`."""

import json
import re
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from openai import OpenAI

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_scheduled_commands() -> list[str]:
    """The curl commands of the README's scheduled-completions block, continuation lines joined."""
    text = README.read_text()
    section = text.split("### Scheduled completions", 1)[1]
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\\\n\s*", "", block)
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]


def run(command: str, prism, **replacements: str) -> dict:
    command = command.replace("http://127.0.0.1:8080", prism.base)
    for old, new in replacements.items():
        command = command.replace(old, new)
    out = subprocess.run(
        ["bash", "-c", command],
        env={"KEY": prism.key, "PATH": "/usr/bin:/bin:/usr/local/bin"},
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return json.loads(out)


def rfc3339_in(seconds: float) -> str:
    at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_readme_curl_calls_create_list_get_and_cancel(prism):
    create, listing, get, cancel = readme_scheduled_commands()
    written = re.search(r'"scheduled_at":"([^"]+)"', create).group(1)
    due = rfc3339_in(3600)
    job = run(create, prism, **{written: due})
    assert job["object"] == "scheduled.job"
    assert job["status"] == "pending"
    assert job["scheduled_at"] == due
    assert job["metadata"] == {"team": "search"}
    job_id = job["id"]
    assert job_id.startswith("sched_")

    page = run(listing, prism)
    assert page["object"] == "list"
    assert job_id in [j["id"] for j in page["data"]]
    assert run(get, prism, **{"sched_01…": job_id})["id"] == job_id
    cancelled = run(cancel, prism, **{"sched_01…": job_id})
    assert cancelled["status"] == "cancelled"


def test_sdk_generic_post_schedules_a_completion_that_runs_on_time(prism):
    client = OpenAI(base_url=prism.base + "/v1", api_key=prism.key, max_retries=0)
    due = rfc3339_in(2)
    job = client.post(
        "/scheduled",
        cast_to=dict,
        body={
            "scheduled_at": due,
            "request": {
                "model": "gpt-sdk-scheduled",
                "messages": [{"role": "user", "content": "on time"}],
            },
        },
    )
    assert job["object"] == "scheduled.job"
    job_id = job["id"]
    deadline = time.monotonic() + 20
    while True:
        job = prism.get_json(f"/v1/scheduled/{job_id}")
        if job["status"] in ("completed", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, job
        time.sleep(0.5)
    assert job["status"] == "completed"
    assert job["result"]["choices"][0]["message"]["content"] == "on time"
    assert prism.upstream_hits("gpt-sdk-scheduled") == 1
