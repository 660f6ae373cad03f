locals {
  fqdn     = "${azurerm_servicebus_namespace.payrail.name}.servicebus.windows.net"
  sessions = var.fifo ? "&sessions=true" : ""
}

output "env" {
  description = "Environment variables of examples/server and examples/worker."
  value = {
    MESSAGE_BUS_ADAPTER   = "servicebus"
    PAYMENTS_TOPIC        = azurerm_servicebus_topic.payments.name
    PAYMENTS_SUBSCRIPTION = azurerm_servicebus_subscription.worker.name
    BUS_TOPIC_URL         = "servicebus://${azurerm_servicebus_topic.payments.name}?namespace=${local.fqdn}"
    BUS_SUBSCRIPTION_URL  = "servicebus://${azurerm_servicebus_topic.payments.name}?namespace=${local.fqdn}&subscription=${azurerm_servicebus_subscription.worker.name}&max_delivery_count=${var.max_receive_count}${local.sessions}"
  }
}

output "service_account_annotations" {
  description = "Kubernetes service account => Azure Workload Identity annotation."
  value = {
    for k, sa in var.service_accounts : sa => { "azure.workload.identity/client-id" = azurerm_user_assigned_identity.payrail[k].client_id }
  }
}
