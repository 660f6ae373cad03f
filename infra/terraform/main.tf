# One root module for the three clouds: cloud_provider selects the module
# that is created (count = 1) and whose environment the outputs carry.

locals {
  # The Kubernetes service accounts of infra/k8s/base/serviceaccounts.yaml.
  service_accounts = {
    server = "payrail-server"
    worker = "payrail-worker"
  }
}

module "aws" {
  source = "./modules/aws"
  count  = var.cloud_provider == "aws" ? 1 : 0

  region                     = var.region
  fifo                       = var.queue_type == "fifo"
  name                       = var.name
  max_receive_count          = var.max_receive_count
  visibility_timeout_seconds = var.visibility_timeout_seconds
  idempotency_table_name     = var.idempotency_table_name
  oidc_provider_arn          = var.eks_oidc_provider_arn
  kubernetes_namespace       = var.kubernetes_namespace
  service_accounts           = local.service_accounts
}

module "gcp" {
  source = "./modules/gcp"
  count  = var.cloud_provider == "gcp" ? 1 : 0

  project_id                 = var.gcp_project_id
  fifo                       = var.queue_type == "fifo"
  name                       = var.name
  subscription_name          = var.subscription_name
  max_receive_count          = var.max_receive_count
  visibility_timeout_seconds = var.visibility_timeout_seconds
  kubernetes_namespace       = var.kubernetes_namespace
  service_accounts           = local.service_accounts
  labels                     = { for k, v in var.tags : lower(k) => lower(v) }
}

module "azure" {
  source = "./modules/azure"
  count  = var.cloud_provider == "azure" ? 1 : 0

  location             = var.region
  fifo                 = var.queue_type == "fifo"
  name                 = var.name
  subscription_name    = var.subscription_name
  max_receive_count    = var.max_receive_count
  namespace_name       = var.azure_servicebus_namespace
  oidc_issuer_url      = var.aks_oidc_issuer_url
  kubernetes_namespace = var.kubernetes_namespace
  service_accounts     = local.service_accounts
  tags                 = var.tags
}

locals {
  # The environment of examples/server and examples/worker for the chosen
  # cloud: variable name => value.
  env = merge(
    { QUEUE_TYPE = var.queue_type },
    try(module.aws[0].env, {}),
    try(module.gcp[0].env, {}),
    try(module.azure[0].env, {}),
  )
}
