package drivers

// The mock gateway (GATEWAY_URL=mock://).
import _ "github.com/payrail/payrail/gateway/mock"
