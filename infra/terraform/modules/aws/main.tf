# SNS topic -> SQS queue (raw delivery) with its dead-letter queue, and the
# DynamoDB idempotency table; IRSA roles for the server and the worker.
# Names as bus/snssqs ProvisionOptions.Names makes them (opsctl bus provision).

locals {
  suffix     = var.fifo ? ".fifo" : ""
  topic_name = "${var.name}${local.suffix}"
  queue_name = "${var.name}${local.suffix}"
  dlq_name   = "${var.name}-dlq${local.suffix}"
  oidc_host  = replace(var.oidc_provider_arn, "/^arn:[^:]+:iam::[0-9]+:oidc-provider\\//", "")
}

resource "aws_sns_topic" "payments" {
  name                        = local.topic_name
  fifo_topic                  = var.fifo
  content_based_deduplication = false
}

resource "aws_sqs_queue" "dead_letter" {
  name                      = local.dlq_name
  fifo_queue                = var.fifo
  message_retention_seconds = 1209600 # 14 days, the maximum
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "payments" {
  name                       = local.queue_name
  fifo_queue                 = var.fifo
  visibility_timeout_seconds = var.visibility_timeout_seconds
  receive_wait_time_seconds  = 20
  sqs_managed_sse_enabled    = true
  # maxReceiveCount = the worker's delivery attempts (PAYMENTS_MAX_ATTEMPTS
  # default): package bus dead-letters a failing message itself on its last
  # attempt, with the reason; SQS moves it only if consumers crash.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead_letter.arn
    maxReceiveCount     = var.max_receive_count
  })
}

resource "aws_sqs_queue_redrive_allow_policy" "dead_letter" {
  queue_url = aws_sqs_queue.dead_letter.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.payments.arn]
  })
}

# SNS may deliver to the queue only from this topic.
resource "aws_sqs_queue_policy" "payments" {
  queue_url = aws_sqs_queue.payments.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "sns.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.payments.arn
      Condition = { ArnEquals = { "aws:SourceArn" = aws_sns_topic.payments.arn } }
    }]
  })
}

resource "aws_sns_topic_subscription" "payments" {
  topic_arn            = aws_sns_topic.payments.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.payments.arn
  raw_message_delivery = true
}

# The key schema and TTL attribute of idempotency/dynamodb (CreateTable).
resource "aws_dynamodb_table" "idempotency" {
  name         = var.idempotency_table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}

# --- IAM: one IRSA role per binary ---------------------------------------------

data "aws_iam_policy_document" "assume" {
  for_each = var.service_accounts
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:sub"
      values   = ["system:serviceaccount:${var.kubernetes_namespace}:${each.value}"]
    }
    condition {
      test     = "StringEquals"
      variable = "${local.oidc_host}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "payrail" {
  for_each           = var.service_accounts
  name               = each.value
  assume_role_policy = data.aws_iam_policy_document.assume[each.key].json
}

locals {
  # The idempotency store's calls (idempotency/dynamodb).
  idempotency_actions = [
    "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem",
    "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem",
  ]
}

# The server publishes commands to the topic and keeps idempotency keys.
data "aws_iam_policy_document" "server" {
  statement {
    sid       = "PublishCommands"
    actions   = ["sns:Publish", "sns:GetTopicAttributes"]
    resources = [aws_sns_topic.payments.arn]
  }
  statement {
    sid       = "IdempotencyKeys"
    actions   = local.idempotency_actions
    resources = [aws_dynamodb_table.idempotency.arn]
  }
}

# The worker consumes the queue, dead-letters to the DLQ and republishes
# stale payments (recovery sweep) to the topic.
data "aws_iam_policy_document" "worker" {
  statement {
    sid = "ConsumeCommands"
    actions = [
      "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
    ]
    resources = [aws_sqs_queue.payments.arn]
  }
  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }
  statement {
    sid       = "RepublishStale"
    actions   = ["sns:Publish", "sns:GetTopicAttributes"]
    resources = [aws_sns_topic.payments.arn]
  }
  statement {
    sid       = "IdempotencyKeys"
    actions   = local.idempotency_actions
    resources = [aws_dynamodb_table.idempotency.arn]
  }
}

resource "aws_iam_role_policy" "server" {
  name   = "payrail-server"
  role   = aws_iam_role.payrail["server"].id
  policy = data.aws_iam_policy_document.server.json
}

resource "aws_iam_role_policy" "worker" {
  name   = "payrail-worker"
  role   = aws_iam_role.payrail["worker"].id
  policy = data.aws_iam_policy_document.worker.json
}
