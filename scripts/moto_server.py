"""moto's server with DynamoDB requests taken one at a time.

moto handles each request on its own thread, and its DynamoDB backend is not safe for that:
TransactWriteItems snapshots the whole table (copy.deepcopy) before it starts and, when any
condition fails, puts that snapshot back, discarding every write other threads acknowledged in
between; a conditional write checks and then writes without a lock; and the deep copy itself can
fail with an HTML 500 while another thread changes the table. Real DynamoDB is atomic per item
and per transaction, and Prism's AWS adapter relies on it, so the emulator suites and benchmarks
run moto through this wrapper: one lock around every DynamoDB request. S3, SQS (whose long polls
must not hold a lock) and the rest stay concurrent. `bench/moto_races.py` shows the lost writes
with and without it.

It also honours TransactWriteItems' ClientRequestToken, which moto ignores: real DynamoDB answers
a transaction sent again with the token of one that succeeded (the AWS SDK's own retry after a
lost answer) with success and applies nothing; moto would apply it twice. A different
transaction under a used token is not a retry: DynamoDB refuses it with
IdempotentParameterMismatchException (400), and so does this wrapper, so two transactions that
ever shared a token fail loudly instead of the second passing as applied. The requests and
answers of successful transactions are kept for 10 minutes, as DynamoDB keeps tokens.

With MOTO_LOG_CALLS=1 it prints one line per request, `call <epoch seconds> <what>` (the
X-Amz-Target of DynamoDB and SQS calls, or the method, path and query of S3's), so a benchmark can
count the calls of a time window (bench/finalize.sh does).

Under the lock a transaction also no longer copies the whole table: it keeps a copy of each item
it touches and puts those back if it is cancelled. moto's whole-table copy costs O(table) per
transaction (0.13 s on 3,000 items) and leaks its copy when a condition fails (about 500 MB
after 200 failed transactions on 3,000 items, plain moto as well).

Arguments: the host and port, as moto_server's -H and -p.
"""

import argparse
import copy
import io
import json
import os
import threading
import time

from werkzeug.serving import run_simple

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

DYNAMODB = threading.Lock()
TOKEN_SECONDS = 600
# ClientRequestToken -> (when, request, status, headers, body) of a transaction that succeeded;
# the request parsed, so that a retry is told from another transaction under the same token.
TRANSACTIONS = {}
LOG_CALLS = os.environ.get("MOTO_LOG_CALLS") == "1"
MISMATCH_TYPE = "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException"


def log_call(environ, target):
    if not LOG_CALLS:
        return
    if target:
        what = target
    else:
        query = environ.get("QUERY_STRING", "")
        what = f'{environ.get("REQUEST_METHOD", "")} {environ.get("PATH_INFO", "")}' + (f"?{query}" if query else "")
    # One write per line: threads' lines never interleave.
    os.write(1, f"call {time.time():.3f} {what}\n".encode())


def serialize_dynamodb(app):
    def wrapped(environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        log_call(environ, target)
        if not target.startswith("DynamoDB_"):
            return app(environ, start_response)
        with DYNAMODB:
            if not target.endswith(".TransactWriteItems"):
                # The whole answer is built inside the lock.
                return list(app(environ, start_response))
            return transact_once(app, environ, start_response)

    return wrapped


def transact_once(app, environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        request = json.loads(body)
        token = request.get("ClientRequestToken")
    except (ValueError, AttributeError):
        request, token = None, None
    now = time.monotonic()
    for old in [t for t, kept in TRANSACTIONS.items() if now - kept[0] > TOKEN_SECONDS]:
        del TRANSACTIONS[old]
    if token in TRANSACTIONS:
        _, then, status, headers, answer = TRANSACTIONS[token]
        if then != request:
            print(f"TransactWriteItems token {token} seen before with another request: "
                  "IdempotentParameterMismatchException", flush=True)
            mismatch = json.dumps({
                "__type": MISMATCH_TYPE,
                "message": "Request has the same client token as a previous request, "
                           "but the requests are not the same.",
            }).encode()
            start_response("400 Bad Request", [
                ("Content-Type", "application/x-amz-json-1.0"),
                ("Content-Length", str(len(mismatch))),
                ("x-amzn-ErrorType", "IdempotentParameterMismatchException"),
            ])
            return [mismatch]
        print(f"TransactWriteItems token {token} seen before: answered as then", flush=True)
        start_response(status, headers)
        return [answer]
    seen = {}

    def remember(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, list(headers)
        return start_response(status, headers, exc_info)

    answer = b"".join(app(environ, remember))
    if token and seen.get("status", "").startswith("200"):
        TRANSACTIONS[token] = (now, request, seen["status"], seen["headers"], answer)
    return [answer]


class _TableCopyIsItself:
    """`copy` for moto's DynamoDB module: its whole-table snapshot becomes the table itself
    (`transact_item_level` restores the touched items instead); every other copy is a copy."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


def transact_item_level(original):
    def transact_write_items(self, transact_items):
        saved = []
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = self.get_table(op["TableName"])
                key = op["Item"] if op_type == "Put" else op["Key"]
                hash_key, range_key = self.get_keys_value(table, key)
            except Exception:  # moto itself answers a malformed transaction
                continue
            item = table.get_item(hash_key, range_key)
            saved.append((table, hash_key, range_key, copy.deepcopy(item)))
        try:
            return original(self, transact_items)
        except Exception:
            # Cancelled: every touched item back as it was, in reverse order.
            for table, hash_key, range_key, item in reversed(saved):
                if item is None:
                    if table.get_item(hash_key, range_key) is not None:
                        table.delete_item(hash_key, range_key)
                elif range_key is not None:
                    table.items[hash_key][range_key] = item
                else:
                    table.items[hash_key] = item
            raise

    return transact_write_items


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    # moto builds some URLs (SQS queue URLs) from it, as its own server sets it.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    dynamodb_models.copy = _TableCopyIsItself()
    DynamoDBBackend.transact_write_items = transact_item_level(
        DynamoDBBackend.transact_write_items
    )
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        serialize_dynamodb(app),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
