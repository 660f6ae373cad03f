#!/bin/sh
# LocalStack ready hook: the DynamoDB idempotency table, with the key schema
# (pk, a string hash key) and TTL attribute (ttl) of idempotency/dynamodb;
# infra/ tests check both against the driver. Use it with
#   IDEMPOTENCY_URL=dynamodb://payrail-idempotency?region=us-east-1&endpoint=http://localstack:4566
set -eu
awslocal dynamodb describe-table --table-name payrail-idempotency >/dev/null 2>&1 && exit 0
awslocal dynamodb create-table --table-name payrail-idempotency \
  --attribute-definitions AttributeName=pk,AttributeType=S \
  --key-schema AttributeName=pk,KeyType=HASH \
  --billing-mode PAY_PER_REQUEST
awslocal dynamodb update-time-to-live --table-name payrail-idempotency \
  --time-to-live-specification Enabled=true,AttributeName=ttl
