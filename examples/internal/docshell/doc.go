// Package docshell holds no code: its test runs the fenced shell blocks of
// the operator documentation (README.md, docs/runbooks.md,
// docs/operations.md) against the reference server and opsctl built from
// this tree, so that the commands the docs give cannot drift from the
// binaries. Blocks that cannot run on one machine (a cloud, a cluster, the
// test suite itself) are listed in the test with the reason.
package docshell
