package drivers

// The in-memory bus (MESSAGE_BUS_ADAPTER=inmemory).
import _ "github.com/payrail/payrail/bus/inmemory"
