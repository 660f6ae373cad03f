# Pub/Sub topic, the worker's subscription with its dead-letter policy and
# ordering, and the dead-letter topic and subscription, as
# bus/pubsub.Provision (opsctl bus provision) makes them; Workload Identity
# service accounts for the server and the worker.

locals {
  # bus/pubsub DeadLetterSuffix: <subscription>.dlq names both.
  dead_letter_name = "${var.subscription_name}.dlq"
  # Pub/Sub allows 5 to 100 (bus/pubsub MinMaxDeliveryAttempts).
  max_delivery_attempts = max(5, min(100, var.max_receive_count))
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_pubsub_topic" "payments" {
  project = var.project_id
  name    = var.name
  labels  = var.labels
}

resource "google_pubsub_topic" "dead_letter" {
  project = var.project_id
  name    = local.dead_letter_name
  labels  = var.labels
}

resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = local.dead_letter_name
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s" # 7 days, Pub/Sub's maximum
  expiration_policy {
    ttl = "" # never expires
  }
  labels = var.labels
}

resource "google_pubsub_subscription" "worker" {
  project              = var.project_id
  name                 = var.subscription_name
  topic                = google_pubsub_topic.payments.id
  ack_deadline_seconds = var.visibility_timeout_seconds
  # Per payment key, as Provision (ordered=true) and QUEUE_TYPE=fifo expect.
  enable_message_ordering = true
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = local.max_delivery_attempts
  }
  expiration_policy {
    ttl = ""
  }
  labels = var.labels
  # No retry_policy: nacks follow the delays package bus asks for.
}

# --- Identities ------------------------------------------------------------------

resource "google_service_account" "payrail" {
  for_each     = var.service_accounts
  project      = var.project_id
  account_id   = each.value
  display_name = "payrail ${each.key} (Kubernetes ${var.kubernetes_namespace}/${each.value})"
}

resource "google_service_account_iam_member" "workload_identity" {
  for_each           = var.service_accounts
  service_account_id = google_service_account.payrail[each.key].name
  role               = "roles/iam.workloadIdentityUser"
  member             = "serviceAccount:${var.project_id}.svc.id.goog[${var.kubernetes_namespace}/${each.value}]"
}

# The server publishes commands; the worker republishes stale ones.
resource "google_pubsub_topic_iam_member" "publisher" {
  for_each = google_service_account.payrail
  project  = var.project_id
  topic    = google_pubsub_topic.payments.name
  role     = "roles/pubsub.publisher"
  member   = each.value.member
}

# The worker consumes, reads the subscription's dead-letter policy
# (roles/pubsub.viewer: pubsub.subscriptions.get), dead-letters explicitly
# and reads the dead letters (inspection, redrive).
resource "google_pubsub_subscription_iam_member" "worker" {
  for_each     = toset(["roles/pubsub.subscriber", "roles/pubsub.viewer"])
  project      = var.project_id
  subscription = google_pubsub_subscription.worker.name
  role         = each.value
  member       = google_service_account.payrail["worker"].member
}

resource "google_pubsub_topic_iam_member" "worker_dead_letter" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.payrail["worker"].member
}

resource "google_pubsub_subscription_iam_member" "worker_dead_letter" {
  project      = var.project_id
  subscription = google_pubsub_subscription.dead_letter.name
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.payrail["worker"].member
}

# Pub/Sub's service agent forwards undeliverable messages to the dead-letter topic.
locals {
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic_iam_member" "agent_dead_letter" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_worker" {
  project      = var.project_id
  subscription = google_pubsub_subscription.worker.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}
