package config

// The tests of this package open every driver (examples/internal/alldrivers).
import _ "github.com/payrail/payrail/examples/internal/alldrivers"
