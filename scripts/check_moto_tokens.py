"""Checks scripts/moto_server.py's ClientRequestToken handling against the emulator at
AWS_ENDPOINT_URL (scripts/test.sh starts it): a transaction sent again under its token (the SDK's
retry after a lost answer) succeeds and applies nothing more, and a different transaction under
a used token fails with IdempotentParameterMismatchException and applies nothing, as on real
DynamoDB. Before the wrapper compared requests, the second one passed as applied without being
applied: an acknowledged write that was never made.

    .venv/bin/python scripts/check_moto_tokens.py
"""

import os
import sys
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main():
    client = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                          config=Config(retries={"max_attempts": 1}))
    table = f"tokens-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    token = str(uuid.uuid4())

    def put(pk):
        return [{"Put": {"TableName": table, "Item": {"pk": {"S": pk}}}}]

    def count():
        return client.scan(TableName=table, ConsistentRead=True)["Count"]

    try:
        client.transact_write_items(TransactItems=put("part-a"), ClientRequestToken=token)
        # The same request again: a retry, answered as then.
        client.transact_write_items(TransactItems=put("part-a"), ClientRequestToken=token)
        assert count() == 1, "a retried transaction was applied twice"
        try:
            client.transact_write_items(TransactItems=put("part-b"), ClientRequestToken=token)
        except ClientError as error:
            code = error.response["Error"]["Code"]
            assert code == "IdempotentParameterMismatchException", code
        else:
            sys.exit("another transaction under a used token was answered as applied")
        items = client.scan(TableName=table, ConsistentRead=True)["Items"]
        assert [i["pk"]["S"] for i in items] == ["part-a"], items
        # A fresh token applies as usual.
        client.transact_write_items(TransactItems=put("part-b"), ClientRequestToken=str(uuid.uuid4()))
        assert count() == 2
    finally:
        client.delete_table(TableName=table)
    print("moto_server.py: a retry under its token is answered as then; "
          "another request under it is refused (IdempotentParameterMismatchException)")


if __name__ == "__main__":
    main()
