# Every output but the last is named after the environment variable of
# examples/server and examples/worker it feeds (docs/deploy.md; infra tests
# check each name against the configuration loader). Those that do not
# apply to the chosen cloud are null. Put them in the overlay's ConfigMap:
#   terraform output -json | jq -r 'to_entries[] | select(.value.value != null and (.value.value | type) == "string") | "\(.key)=\(.value.value)"'

output "MESSAGE_BUS_ADAPTER" {
  description = "sns-sqs (aws), pubsub (gcp) or servicebus (azure)."
  value       = lookup(local.env, "MESSAGE_BUS_ADAPTER", null)
}

output "QUEUE_TYPE" {
  description = "standard or fifo, as queue_type."
  value       = lookup(local.env, "QUEUE_TYPE", null)
}

output "PAYMENTS_TOPIC_ARN" {
  description = "AWS: the SNS topic the server publishes to."
  value       = lookup(local.env, "PAYMENTS_TOPIC_ARN", null)
}

output "PAYMENTS_QUEUE_URL" {
  description = "AWS: the SQS queue the worker consumes."
  value       = lookup(local.env, "PAYMENTS_QUEUE_URL", null)
}

output "AWS_REGION" {
  description = "AWS: the region, read by the AWS SDK."
  value       = lookup(local.env, "AWS_REGION", null)
}

output "IDEMPOTENCY_URL" {
  description = "AWS: the DynamoDB idempotency table."
  value       = lookup(local.env, "IDEMPOTENCY_URL", null)
}

output "PUBSUB_PROJECT_ID" {
  description = "GCP: the project of the topic and subscription."
  value       = lookup(local.env, "PUBSUB_PROJECT_ID", null)
}

output "PAYMENTS_TOPIC" {
  description = "GCP, Azure: the topic."
  value       = lookup(local.env, "PAYMENTS_TOPIC", null)
}

output "PAYMENTS_SUBSCRIPTION" {
  description = "GCP, Azure: the worker's subscription."
  value       = lookup(local.env, "PAYMENTS_SUBSCRIPTION", null)
}

output "BUS_TOPIC_URL" {
  description = "Azure: the topic URL with the namespace, for Entra ID authentication."
  value       = lookup(local.env, "BUS_TOPIC_URL", null)
}

output "BUS_SUBSCRIPTION_URL" {
  description = "Azure: the subscription URL with the namespace and the subscription's MaxDeliveryCount."
  value       = lookup(local.env, "BUS_SUBSCRIPTION_URL", null)
}

# Not an environment variable: the annotations of the Kubernetes service
# accounts payrail-server and payrail-worker (IRSA role ARN, GKE service
# account, Azure client ID) for the overlay's patches.
output "kubernetes_service_account_annotations" {
  description = "service account name => annotations binding it to its cloud identity."
  value = coalesce(
    try(module.aws[0].service_account_annotations, null),
    try(module.gcp[0].service_account_annotations, null),
    try(module.azure[0].service_account_annotations, null),
  )
}
