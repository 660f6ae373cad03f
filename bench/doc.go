// Package bench compares payrail's hot paths with raw baselines measured in
// the same run: the trivial net/http JSON handler, raw go-redis, pgx and
// sarama round trips, and Watermill's GoChannel. It is its own module so
// that the baselines never enter the SDK's go.mod.
//
// Everything is in the tests; the ratio table is printed by
//
//	PAYRAIL_BENCH=full go test -count=1 -run '^TestTable$' -v ./bench
//
// (PAYRAIL_BENCH=tiny for a run of a few seconds; see README.md).
package bench
