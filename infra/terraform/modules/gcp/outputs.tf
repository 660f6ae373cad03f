output "env" {
  description = "Environment variables of examples/server and examples/worker."
  value = {
    MESSAGE_BUS_ADAPTER   = "pubsub"
    PUBSUB_PROJECT_ID     = var.project_id
    PAYMENTS_TOPIC        = google_pubsub_topic.payments.name
    PAYMENTS_SUBSCRIPTION = google_pubsub_subscription.worker.name
  }
}

output "service_account_annotations" {
  description = "Kubernetes service account => GKE Workload Identity annotation."
  value = {
    for k, sa in var.service_accounts : sa => { "iam.gke.io/gcp-service-account" = google_service_account.payrail[k].email }
  }
}
