package opsctl

import (
	"context"
	"io"

	"github.com/spf13/cobra"
)

// CommandTree returns the command tree Run executes, for tests that walk
// it.
func CommandTree(env Env) *cobra.Command {
	c := &cli{Env: env, ctx: context.Background()}
	root := c.command()
	root.InitDefaultHelpCmd() // as Execute does
	return root
}

// SetTerminal replaces the terminal test of the progress bars until the
// returned function restores it.
func SetTerminal(f func(io.Writer) bool) (restore func()) {
	old := isTerminal
	isTerminal = f
	return func() { isTerminal = old }
}
