# The operations guide's variables:
#   terraform apply -var="cloud_provider=aws" -var="region=us-east-1" -var="queue_type=standard"

variable "cloud_provider" {
  type        = string
  description = "Cloud to provision the message bus (and on AWS the DynamoDB idempotency table) in: aws, gcp or azure."
  validation {
    condition     = contains(["aws", "gcp", "azure"], var.cloud_provider)
    error_message = "cloud_provider must be aws, gcp or azure."
  }
}

variable "region" {
  type        = string
  description = "Region (AWS, GCP) or location (Azure) of every resource, such as us-east-1, europe-west1 or westeurope."
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*[a-z0-9]$", var.region))
    error_message = "region must be a region name such as us-east-1, europe-west1 or westeurope."
  }
}

variable "queue_type" {
  type        = string
  default     = "standard"
  description = "standard, or fifo for ordered delivery per payment: an SNS FIFO topic and SQS FIFO queues (AWS), message ordering (GCP), sessions (Azure). Set QUEUE_TYPE to the same value."
  validation {
    condition     = contains(["standard", "fifo"], var.queue_type)
    error_message = "queue_type must be standard or fifo."
  }
}

variable "name" {
  type        = string
  default     = "payments"
  description = "Base name: the topic and the queue (AWS; the dead-letter queue is <name>-dlq, .fifo added on FIFO, as opsctl bus provision names them), the topic (GCP, Azure)."
  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,71}$", var.name))
    error_message = "name must be 1 to 71 letters, digits, - or _ (SQS allows 80 characters with -dlq.fifo)."
  }
}

variable "subscription_name" {
  type        = string
  default     = "payments-worker"
  description = "The worker's subscription (GCP, Azure); PAYMENTS_SUBSCRIPTION. The GCP dead-letter topic and subscription are <subscription_name>.dlq."
  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_.-]{0,49}$", var.subscription_name))
    error_message = "subscription_name must start with a letter and have at most 50 letters, digits, _ . or -."
  }
}

variable "max_receive_count" {
  type        = number
  default     = 3
  description = "Deliveries of a message before the broker dead-letters it (SQS maxReceiveCount, Service Bus MaxDeliveryCount; Pub/Sub max_delivery_attempts, at least 5). Default: the worker's PAYMENTS_MAX_ATTEMPTS default; keep it >= PAYMENTS_MAX_ATTEMPTS."
  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000 && floor(var.max_receive_count) == var.max_receive_count
    error_message = "max_receive_count must be a whole number from 1 to 1000."
  }
}

variable "visibility_timeout_seconds" {
  type        = number
  default     = 30
  description = "The worker's ack deadline: SQS VisibilityTimeout, Pub/Sub ack_deadline_seconds (10 to 600)."
  validation {
    condition     = var.visibility_timeout_seconds >= 10 && var.visibility_timeout_seconds <= 600 && floor(var.visibility_timeout_seconds) == var.visibility_timeout_seconds
    error_message = "visibility_timeout_seconds must be a whole number from 10 to 600."
  }
}

variable "idempotency_table_name" {
  type        = string
  default     = "payrail-idempotency"
  description = "AWS: the DynamoDB idempotency table (IDEMPOTENCY_URL=dynamodb://<table>?region=<region>)."
  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{3,255}$", var.idempotency_table_name))
    error_message = "idempotency_table_name must be 3 to 255 letters, digits, _ . or -."
  }
}

variable "kubernetes_namespace" {
  type        = string
  default     = "payrail"
  description = "Namespace of the infra/k8s overlays: the workload identities trust its service accounts payrail-server and payrail-worker."
  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a DNS label."
  }
}

variable "eks_oidc_provider_arn" {
  type        = string
  default     = null
  description = "AWS: the EKS cluster's IAM OIDC provider ARN, trusted by the IRSA roles of the server and the worker."
  validation {
    condition     = var.cloud_provider != "aws" || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.eks_oidc_provider_arn))
    error_message = "cloud_provider=aws needs eks_oidc_provider_arn, arn:aws:iam::<account>:oidc-provider/<issuer>."
  }
}

variable "gcp_project_id" {
  type        = string
  default     = null
  description = "GCP: the project (PUBSUB_PROJECT_ID); GKE Workload Identity uses its pool <project>.svc.id.goog."
  validation {
    condition     = var.cloud_provider != "gcp" || can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.gcp_project_id))
    error_message = "cloud_provider=gcp needs gcp_project_id, a project ID such as my-project-123."
  }
}

variable "azure_subscription_id" {
  type        = string
  default     = null
  description = "Azure: the subscription to create the resources in."
  validation {
    condition     = var.cloud_provider != "azure" || can(regex("^[0-9a-fA-F-]{36}$", var.azure_subscription_id))
    error_message = "cloud_provider=azure needs azure_subscription_id, a GUID."
  }
}

variable "azure_servicebus_namespace" {
  type        = string
  default     = null
  description = "Azure: the Service Bus namespace name, globally unique (<name>.servicebus.windows.net)."
  validation {
    condition     = var.cloud_provider != "azure" || can(regex("^[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]$", var.azure_servicebus_namespace))
    error_message = "cloud_provider=azure needs azure_servicebus_namespace, 6 to 50 letters, digits or -, starting with a letter."
  }
}

variable "aks_oidc_issuer_url" {
  type        = string
  default     = null
  description = "Azure: the AKS cluster's OIDC issuer URL, trusted by the federated credentials of the server's and the worker's managed identities."
  validation {
    condition     = var.cloud_provider != "azure" || can(regex("^https://", var.aks_oidc_issuer_url))
    error_message = "cloud_provider=azure needs aks_oidc_issuer_url, an https:// URL."
  }
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Tags (labels on GCP) set on every resource that takes them."
}
