package servicebus

import (
	"net/http"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"
)

// SetAdminTransport makes the driver's admin clients send their requests
// through t (a test peer's administration endpoint).
func SetAdminTransport(t interface {
	Do(*http.Request) (*http.Response, error)
}) {
	adminClientOptions = &admin.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: t}}
}
