"""The finalizer's benchmark (bench/finalize.sh runs it): per size in LINES, a fresh
`prism serve --backend aws` over the emulator (its stack from `prism-provision`), a JSONL input
of that many lines of LINE_BYTES bytes sent with `POST /v1/files`, and a batch over it against
the zero-latency mock. While the batch runs, prism's RSS (VmRSS) is sampled every POLL_S; the
phases are told apart by the batch itself (lines running until every line is counted, then
finalizing until it ends). The emulator's calls of each phase are counted from its log
(scripts/moto_server.py with MOTO_LOG_CALLS=1 prints one line per call). The output is
downloaded and checked: every custom_id once, in input order. Prints one JSON object per size.
"""

import collections
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import benchlib
from benchlib import mock_provider, start_mock, status_kib, write_input

BIN = Path(os.environ["BIN"])
SIZES = [int(s) for s in os.environ.get("LINES", "10000 40000").split()]
LINE_BYTES = int(os.environ.get("LINE_BYTES", "1000"))
POLL_S = float(os.environ.get("POLL_S", "0.5"))
MOTO_LOG = Path(os.environ["MOTO_LOG"])
LEASE = os.environ.get("LEASE", "")
MODEL = "gpt-bench"


def api(base, key, method, path, body=None, content_type="application/json"):
    request = urllib.request.Request(base + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def upload(base, key, path):
    boundary = "prismbench"
    data = path.read_bytes()
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            f"Content-Type: application/jsonl\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return api(base, key, "POST", "/v1/files", body, f"multipart/form-data; boundary={boundary}")


def start_prism(work, mock_port):
    config = (mock_provider(mock_port)
              + "[http]\nmax_body_bytes = 220000000\n"
              + "[files]\nredirect_downloads_above = 6291456\n"
              + (f'[batches]\nlease = "{LEASE}"\n' if LEASE else ""))
    return benchlib.start_prism(BIN, work, config, stack=f"fin-{os.getpid()}-{int(time.time())}",
                                log_filter="warn,prism_core::batches::finalize=info")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def open_following_without_auth(request):
    """Opens a download; a redirect (the pre-signed S3 URL) is followed without the API key."""
    try:
        return urllib.request.build_opener(_NoRedirect).open(request, timeout=600)
    except urllib.error.HTTPError as error:
        if error.code in (301, 302, 303, 307, 308):
            return urllib.request.urlopen(error.headers["Location"], timeout=600)
        raise


CALL = re.compile(r"^call (\d+\.\d+) (.*)$")


def classify(what):
    if " " not in what:
        service, _, operation = what.partition(".")
        return f"{'dynamodb' if service.startswith('DynamoDB') else 'sqs'} {operation}"
    method, rest = what.split(" ", 1)
    path, _, query = rest.partition("?")
    if "/chunks/" in path:
        return f"s3 {method} part object"
    if "partNumber=" in query:
        return f"s3 {method} multipart part"
    if query.split("&")[0] in ("uploads", "uploads="):
        return f"s3 {method} multipart start"
    if "uploadId=" in query:
        return f"s3 {method} multipart {'complete' if method == 'POST' else 'abort'}"
    if path.startswith("/") and path.count("/") >= 2:
        return f"s3 {method} object"
    return f"{method} {path.split('/')[1] if path.count('/') else path}"


def calls_between(start, end):
    counts = collections.Counter()
    with MOTO_LOG.open(errors="replace") as f:
        for line in f:
            m = CALL.match(line)
            if m and start <= float(m.group(1)) <= end:
                counts[classify(m.group(2))] += 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def run(lines, input_path, mock_port):
    work = Path(tempfile.mkdtemp(prefix=f"prism-finalize-{lines}-"))
    prism, base, key = start_prism(work, mock_port)
    result = {"lines": lines, "line_bytes": LINE_BYTES, "input_bytes": input_path.stat().st_size,
              "lease": LEASE or "default", "work": str(work)}
    try:
        file = upload(base, key, input_path)
        batch = api(base, key, "POST", "/v1/batches", json.dumps(
            {"input_file_id": file["id"], "endpoint": "/v1/chat/completions",
             "completion_window": "24h"}).encode())
        start = time.time()
        samples = []  # (epoch, phase, rss KiB)
        all_lines_at = None
        while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(POLL_S)
            batch = api(base, key, "GET", f"/v1/batches/{batch['id']}")
            counts = batch.get("request_counts") or {}
            done = counts.get("completed", 0) + counts.get("failed", 0)
            if all_lines_at is None and counts.get("total") and done >= counts["total"]:
                all_lines_at = time.time()
            phase = "lines" if all_lines_at is None else "finalize"
            samples.append((time.time(), phase, status_kib(prism.pid, "VmRSS")))
        end = time.time()
        assert batch["status"] == "completed", batch
        all_lines_at = all_lines_at or end
        finalizing_at = batch.get("finalizing_at") or all_lines_at
        completed_at = batch.get("completed_at") or end
        rss = lambda phase: max((s[2] for s in samples if s[1] == phase), default=0)
        result.update(
            batch_s=round(end - start, 1),
            lines_s=round(all_lines_at - start, 1),
            # From the last line counted to the batch's end: waiting for the finalize claim,
            # then assembling the files.
            after_last_line_s=round(completed_at - all_lines_at, 1),
            assembling_s=completed_at - finalizing_at,
            rss_lines_peak_mib=round(rss("lines") / 1024, 1),
            rss_finalize_peak_mib=round(rss("finalize") / 1024, 1),
            rss_finalize_end_mib=round(samples[-1][2] / 1024, 1),
            prism_hwm_mib=round(status_kib(prism.pid, "VmHWM") / 1024, 1),
            calls_lines=calls_between(start, all_lines_at),
            calls_finalize=calls_between(all_lines_at, completed_at + 1),
            finalized_logged=(work / "prism.log").read_text(errors="replace").count("batch finalized"),
        )
        # The output through the download path (the pre-signed redirect above 6 MiB).
        request = urllib.request.Request(f"{base}/v1/files/{batch['output_file_id']}/content",
                                         headers={"Authorization": f"Bearer {key}"})
        expected, in_order, n = 0, True, 0
        with open_following_without_auth(request) as response:
            for raw in response:
                if not raw.strip():
                    continue
                custom_id = json.loads(raw)["custom_id"]
                in_order &= custom_id == f"r{expected}"
                expected += 1
                n += 1
        result.update(output_lines=n, output_complete_and_ordered=in_order and n == lines)
        result["rss_samples"] = [(round(t - start, 1), p, r) for t, p, r in samples[:: max(1, len(samples) // 200)]]
    finally:
        prism.terminate()
        prism.wait(timeout=60)
    return result


def main():
    work = Path(os.environ.get("INPUT_DIR", tempfile.gettempdir()))
    mock, mock_port = start_mock(BIN)
    try:
        for lines in SIZES:
            path = work / f"finalize-bench-{lines}x{LINE_BYTES}.jsonl"
            write_input(path, lines, LINE_BYTES, MODEL)
            print(json.dumps(run(lines, path, mock_port)), flush=True)
    finally:
        mock.terminate()


if __name__ == "__main__":
    sys.exit(main())
