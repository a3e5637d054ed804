#!/usr/bin/env python3
"""Writes the seed inputs of every target into fuzz/seeds/<target>/ from the project's real
examples: the recorded Lambda events in infra/events, the multipart body of the REST upload
fixture, and SDK-shaped chat, scheduled and batch bodies like the test suites send. cargo fuzz
cmin then merges them into fuzz/corpus/<target>/."""
import base64, json, os, pathlib

HERE = pathlib.Path(__file__).resolve().parent
EVENTS = HERE.parent.parent / "infra" / "events"

def write(target, name, data):
    out = HERE / target
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(data if isinstance(data, bytes) else data.encode())

def line(cid, model="gpt-4o-mini", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "Say hi"}], **extra}
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body})

# batch_planner: valid files (LF, CRLF, BOM, blank lines, long lines) and every kind of bad line.
write("batch_planner", "valid", "\n".join(line(f"r-{i}") for i in range(5)) + "\n")
write("batch_planner", "crlf_bom_blank", "\ufeff" + line("a") + "\r\n\r\n  \n" + line("b", temperature=0.2) + "\r\n")
write("batch_planner", "no_trailing_newline", line("a") + "\n" + line("b", model="gpt-4o"))
write("batch_planner", "long_line", line("long", messages_note="x" * 400) + "\n" + line("short") + "\n")
write("batch_planner", "bad_lines", "\n".join([
    "not json", "[]", "{}", '{"custom_id":"a","method":"GET","url":"/v1/embeddings","body":[]}',
    line("dup"), line("dup"), line(""), line("s", stream=True), line("m", model="no-such-model"),
    '{"custom_id":"k","custom_id":"k","method":"POST","url":"/v1/chat/completions","body":{}}',
    '{"custom_id":"e","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[]}}',
    '{"custom_id":"\\u00e9\\n","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt\\u002d4o","messages":[{}]}}',
]) + "\n")
write("batch_planner", "empty", "\n\n")

# chat_request: what the OpenAI SDK sends, and the shapes the route refuses.
chat = {"model": "gpt-4o-mini", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]}
write("chat_request", "sdk", json.dumps(chat))
write("chat_request", "stream", json.dumps({**chat, "stream": True, "stream_options": {"include_usage": True}}))
write("chat_request", "tools", json.dumps({**chat, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}], "temperature": 0.5, "n": 1}))
write("chat_request", "duplicate_nested", '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"a","content":"b"}]}')
write("chat_request", "duplicate_top", '{"model":"a","model":"b","messages":[{}]}')
write("chat_request", "bad_types", '{"model":1,"messages":{},"stream":"yes"}')
write("chat_request", "array", '[{"model":"gpt-4o-mini"}]')
write("chat_request", "escapes", '{"model":"gpt\\u002d4o","messages":[{"role":"user","content":"\\ud83d\\ude80"}],"stream":null}')

# scheduled_request: the create body, metadata, and bare RFC 3339 times.
sched = {"scheduled_at": "2026-04-05T10:00:00Z", "request": chat, "metadata": {"team": "research", "run": "7"}}
write("scheduled_request", "sdk", json.dumps(sched))
write("scheduled_request", "offset_millis", json.dumps({**sched, "scheduled_at": "2026-04-05T11:30:00.250+02:00"}))
write("scheduled_request", "no_offset", json.dumps({**sched, "scheduled_at": "2026-04-05T10:00:00"}))
write("scheduled_request", "past_far", json.dumps({**sched, "scheduled_at": "1999-01-01T00:00:00Z", "metadata": None}))
write("scheduled_request", "unknown_field", json.dumps({**sched, "priority": 1}))
write("scheduled_request", "metadata_bad", json.dumps({**sched, "metadata": {f"k{i}": "v" for i in range(17)}}))
write("scheduled_request", "metadata", json.dumps({"a": "b", "c": "d" * 10}))
write("scheduled_request", "time", "2026-04-05T09:00:00.123Z")

# multipart_upload: the boundary on the first line, then the body, as the SDK sends it.
event = json.loads((EVENTS / "rest-post-file-multipart.json").read_text())
body = base64.b64decode(event["body"]) if event.get("isBase64Encoded") else event["body"].encode()
boundary = b"----prism7MA4YWxkTrZu0gW"
write("multipart_upload", "sdk", boundary + b"\n" + body)
def part(name, value, filename=None):
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return b"--B\r\nContent-Disposition: " + disposition.encode() + b"\r\n\r\n" + value + b"\r\n"
jsonl = (line("a") + "\n").encode()
write("multipart_upload", "file_first_expiry", b"B\n" + part("file", jsonl, "in.jsonl") + part("purpose", b"batch")
      + part("expires_after[anchor]", b"created_at") + part("expires_after[seconds]", b"3600") + b"--B--\r\n")
write("multipart_upload", "missing_purpose", b"B\n" + part("file", jsonl, "x") + b"--B--\r\n")
write("multipart_upload", "two_files", b"B\n" + part("purpose", b"batch") + part("file", b"1", "a") + part("file", b"2", "b") + b"--B--\r\n")
write("multipart_upload", "not_utf8_unknown_part", b"B\n" + part("other", b"zz") + part("purpose", b"batch") + part("file", b"\xff\xfe", "f") + b"--B--\r\n")

# lambda_events: the recorded events themselves.
for path in sorted(EVENTS.glob("*.json")):
    write("lambda_events", path.stem, path.read_bytes())

# recurring_schedule: "cron\nzone\n<8 bytes: an instant past now>", and whole recurring bodies.
def fire(cron, zone, offset_ms=0):
    write("recurring_schedule", "expr_" + "".join(c if c.isalnum() else "_" for c in cron + "_" + zone),
          cron.encode() + b"\n" + zone.encode() + b"\n" + offset_ms.to_bytes(8, "little"))
fire("0 9 * * 1-5", "Europe/Berlin")
fire("30 2 * * *", "Europe/Berlin", 1000 * 3600 * 24 * 357)   # around the fall-back day
fire("30 2 * * *", "America/New_York", 1000 * 3600 * 24 * 340)
fire("*/15 * * * *", "UTC", 12345)
fire("0 0 L * *", "Asia/Kolkata")
fire("0 12 29 2 *", "Australia/Lord_Howe")
fire("0 8 ? * MON#2", "Pacific/Chatham")
fire("@daily", "UTC")
fire("*/5 * * * * *", "UTC")
fire("0 25 * * *", "UTC")
fire("0 9 1 * 1", "UTC")
rec = {"schedule": {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}, "request": chat, "metadata": {"report": "daily"}}
write("recurring_schedule", "sdk", json.dumps(rec))
write("recurring_schedule", "window", json.dumps({**rec, "schedule": {"cron": "*/10 * * * *", "timezone": "UTC",
      "start_at": "2026-04-06T00:00:00Z", "end_at": "2026-04-07T00:00:00+02:00", "max_runs": 3, "overlap": "allow", "catch_up": "skip"}}))
write("recurring_schedule", "seconds", json.dumps({**rec, "schedule": {"cron": "* * * * * *", "timezone": "UTC"}}))
write("recurring_schedule", "both", json.dumps({**rec, "scheduled_at": "2026-04-05T10:00:00Z"}))
write("recurring_schedule", "bad_zone", json.dumps({**rec, "schedule": {"cron": "0 9 * * *", "timezone": "Mars/Olympus"}}))
