//go:build race

package payments

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = true
