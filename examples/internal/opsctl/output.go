package opsctl

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// format is the value of -o/--output.
type format string

const (
	formatTable format = "table"
	formatJSON  format = "json"
)

func (f *format) String() string { return string(*f) }
func (f *format) Type() string   { return "json|table" }

func (f *format) Set(s string) error {
	switch format(s) {
	case formatTable, formatJSON:
		*f = format(s)
		return nil
	}
	return fmt.Errorf("want json or table")
}

// jsonAlias is --json, kept from before -o: true means -o json.
type jsonAlias struct{ f *format }

func (a jsonAlias) String() string { return strconv.FormatBool(*a.f == formatJSON) }
func (a jsonAlias) Type() string   { return "bool" }

func (a jsonAlias) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*a.f = formatTable
	if b {
		*a.f = formatJSON
	}
	return nil
}

// fixedCompletion completes a flag from a fixed list.
func fixedCompletion(values ...cobra.Completion) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}

// addOutput adds -o/--output (and, with alias, the older --json) to cmd.
func addOutput(cmd *cobra.Command, f *format, alias bool) {
	*f = formatTable
	cmd.Flags().VarP(f, "output", "o", "output format: table (for people) or json (stable, for scripts)")
	_ = cmd.RegisterFlagCompletionFunc("output", fixedCompletion("table", "json"))
	if alias {
		cmd.Flags().Var(jsonAlias{f}, "json", "same as -o json")
		cmd.Flags().Lookup("json").NoOptDefVal = "true"
	}
}

// writeJSON writes v as one indented JSON object.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONLines writes each of vs to w as a JSON object on a line.
func writeJSONLines[T any](w io.Writer, vs []T) error {
	enc := json.NewEncoder(w)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

// table returns an aligned table writer on w; Flush writes it.
func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// apply is the pair --apply / --dry-run of a command that changes
// something: a dry run unless --apply or --dry-run=false.
type apply struct {
	cmd        *cobra.Command
	apply, dry bool
}

// addApply adds --apply and --dry-run to cmd; what says what --apply does.
func addApply(cmd *cobra.Command, what string) *apply {
	a := &apply{cmd: cmd}
	cmd.Flags().BoolVar(&a.apply, "apply", false, what+" (default: dry run, print what would be done)")
	cmd.Flags().BoolVar(&a.dry, "dry-run", true, "print what would be done and change nothing; --dry-run=false is --apply")
	return a
}

// resolve reports whether to apply; --apply with --dry-run is a usage
// error.
func (a *apply) resolve() (bool, error) {
	applySet, drySet := a.cmd.Flags().Changed("apply"), a.cmd.Flags().Changed("dry-run")
	switch {
	case applySet && drySet && a.apply == a.dry:
		return false, usagef("--apply=%t contradicts --dry-run=%t", a.apply, a.dry)
	case drySet:
		return !a.dry, nil
	}
	return a.apply, nil
}

// isTerminal reports whether w is a terminal (tests replace it).
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress returns a progress bar of total steps (-1: unknown, a spinner
// with a count) on stderr, drawn only when stderr is a terminal, and
// cleared when finished.
func (c *cli) progress(total int, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(c.Stderr),
		progressbar.OptionSetVisibility(isTerminal(c.Stderr)),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(total > 0),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}
