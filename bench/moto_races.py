"""Shows that moto's DynamoDB loses acknowledged writes when requests run concurrently, and that
scripts/moto_server.py (one lock around DynamoDB requests) does not.

Starts raw `moto_server` and the wrapper on free loopback ports, and against each: fills a table
(so a snapshot takes a while), then 8 threads put 400 new items (conditional PutItem,
`attribute_not_exists`) while 4 threads send 40 TransactWriteItems whose condition fails, the way
a replayed Idempotency-Key does. moto snapshots the whole table before a transaction and puts
the snapshot back when its condition fails, so puts acknowledged meanwhile vanish.

    .venv/bin/python bench/moto_races.py [FILL_ITEMS]
"""

import os
import socket
import subprocess
import sys
import threading
import time

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.dirname(sys.executable)
TABLE = "race"
PUTTERS, PUTS_EACH, TRANSACTORS, TRANSACTIONS_EACH = 8, 50, 4, 10


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command, port):
    proc = subprocess.Popen(command + ["-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{command} did not start")


def race(endpoint, fill):
    client = boto3.client(
        "dynamodb", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(max_pool_connections=64, retries={"max_attempts": 1}))
    key = lambda pk, sk: {"pk": {"S": pk}, "sk": {"S": sk}}
    client.create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}])
    for i in range(fill):
        client.put_item(TableName=TABLE, Item={**key("fill", f"{i:06}"), "blob": {"S": "x" * 200}})
    client.put_item(TableName=TABLE, Item=key("taken", "k"))
    acknowledged, refused, errors = [0], [0], []
    lock = threading.Lock()

    def putter(t):
        for i in range(PUTS_EACH):
            try:
                client.put_item(TableName=TABLE, Item=key("w", f"{t}-{i}"),
                                ConditionExpression="attribute_not_exists(pk)")
                with lock:
                    acknowledged[0] += 1
            except Exception as e:  # an error is counted, not a lost write
                errors.append(type(e).__name__)

    def transactor():
        for _ in range(TRANSACTIONS_EACH):
            try:
                client.transact_write_items(TransactItems=[{"Put": {
                    "TableName": TABLE, "Item": key("taken", "k"),
                    "ConditionExpression": "attribute_not_exists(pk)"}}])
            except client.exceptions.TransactionCanceledException:
                with lock:
                    refused[0] += 1
            except Exception as e:
                errors.append(type(e).__name__)

    threads = [threading.Thread(target=putter, args=(t,)) for t in range(PUTTERS)]
    threads += [threading.Thread(target=transactor) for _ in range(TRANSACTORS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    present = client.query(TableName=TABLE, KeyConditionExpression="pk = :p", Select="COUNT",
                           ExpressionAttributeValues={":p": {"S": "w"}}, ConsistentRead=True)["Count"]
    return acknowledged[0], present, refused[0], errors


def main():
    fill = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    for name, command in [
        ("moto_server (threaded)", [os.path.join(VENV_BIN, "moto_server")]),
        ("scripts/moto_server.py (DynamoDB serialised)",
         [sys.executable, os.path.join(ROOT, "scripts", "moto_server.py")]),
    ]:
        port = free_port()
        proc = start(command, port)
        try:
            acked, present, refused, errors = race(f"http://127.0.0.1:{port}", fill)
        finally:
            proc.kill()
        print(f"{name}: {acked} puts acknowledged, {present} items present "
              f"({acked - present} lost), {refused} transactions refused, {len(errors)} errors "
              f"{sorted(set(errors))}")


if __name__ == "__main__":
    main()
