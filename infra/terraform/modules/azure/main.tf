# Service Bus namespace (Entra ID only: no shared keys), topic and the
# worker's subscription with its MaxDeliveryCount (sessions when FIFO);
# user-assigned identities federated with the Kubernetes service accounts.

resource "azurerm_resource_group" "payrail" {
  name     = "payrail-${var.name}"
  location = var.location
  tags     = var.tags
}

resource "azurerm_servicebus_namespace" "payrail" {
  name                = var.namespace_name
  location            = azurerm_resource_group.payrail.location
  resource_group_name = azurerm_resource_group.payrail.name
  sku                 = "Standard" # topics need Standard or Premium
  local_auth_enabled  = false      # Entra ID only: no connection strings to leak
  minimum_tls_version = "1.2"
  tags                = var.tags
}

resource "azurerm_servicebus_topic" "payments" {
  name                  = var.name
  namespace_id          = azurerm_servicebus_namespace.payrail.id
  support_ordering      = var.fifo
  partitioning_enabled  = false
  max_size_in_megabytes = 1024
}

resource "azurerm_servicebus_subscription" "worker" {
  name     = var.subscription_name
  topic_id = azurerm_servicebus_topic.payments.id
  # = the worker's delivery attempts; the driver's max_delivery_count URL
  # parameter (BUS_SUBSCRIPTION_URL) tells package bus the same number.
  max_delivery_count                   = var.max_receive_count
  lock_duration                        = "PT1M"
  requires_session                     = var.fifo
  dead_lettering_on_message_expiration = true
}

# --- Identities ------------------------------------------------------------------

resource "azurerm_user_assigned_identity" "payrail" {
  for_each            = var.service_accounts
  name                = each.value
  location            = azurerm_resource_group.payrail.location
  resource_group_name = azurerm_resource_group.payrail.name
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "payrail" {
  for_each            = var.service_accounts
  name                = "kubernetes-${each.value}"
  resource_group_name = azurerm_resource_group.payrail.name
  parent_id           = azurerm_user_assigned_identity.payrail[each.key].id
  issuer              = var.oidc_issuer_url
  subject             = "system:serviceaccount:${var.kubernetes_namespace}:${each.value}"
  audience            = ["api://AzureADTokenExchange"]
}

# The server sends to the topic; the worker receives (and settles,
# dead-letters) from its subscription and resends stale payments.
resource "azurerm_role_assignment" "server_send" {
  scope                = azurerm_servicebus_topic.payments.id
  role_definition_name = "Azure Service Bus Data Sender"
  principal_id         = azurerm_user_assigned_identity.payrail["server"].principal_id
}

resource "azurerm_role_assignment" "worker_send" {
  scope                = azurerm_servicebus_topic.payments.id
  role_definition_name = "Azure Service Bus Data Sender"
  principal_id         = azurerm_user_assigned_identity.payrail["worker"].principal_id
}

resource "azurerm_role_assignment" "worker_receive" {
  scope                = azurerm_servicebus_subscription.worker.id
  role_definition_name = "Azure Service Bus Data Receiver"
  principal_id         = azurerm_user_assigned_identity.payrail["worker"].principal_id
}
