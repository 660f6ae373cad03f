output "env" {
  description = "Environment variables of examples/server and examples/worker."
  value = {
    MESSAGE_BUS_ADAPTER = "sns-sqs"
    PAYMENTS_TOPIC_ARN  = aws_sns_topic.payments.arn
    PAYMENTS_QUEUE_URL  = aws_sqs_queue.payments.url
    AWS_REGION          = var.region
    IDEMPOTENCY_URL     = "dynamodb://${aws_dynamodb_table.idempotency.name}?region=${var.region}"
  }
}

output "service_account_annotations" {
  description = "Kubernetes service account => IRSA annotation."
  value = {
    for k, sa in var.service_accounts : sa => { "eks.amazonaws.com/role-arn" = aws_iam_role.payrail[k].arn }
  }
}
