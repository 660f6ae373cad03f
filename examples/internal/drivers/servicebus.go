//go:build (payrail_full || payrail_servicebus) && !payrail_no_servicebus

package drivers

// The Azure Service Bus bus (MESSAGE_BUS_ADAPTER=servicebus; credentials from
// SERVICEBUS_CONNECTION_STRING, or Entra ID with the URL's namespace=).
import _ "github.com/payrail/payrail/bus/servicebus"
