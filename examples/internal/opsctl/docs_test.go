package opsctl_test

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/payrail/payrail/examples/internal/opsctl"
)

// repoRoot is the repository's root, from this package's directory.
const repoRoot = "../../.."

// documented are the files that show opsctl invocations: the README, the
// docs (runbooks, operations guide, this CLI's own page...), the compose
// file and the Dockerfile.
func documented(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append(files, filepath.Join(repoRoot, "README.md"), filepath.Join(repoRoot, "compose.yaml"),
		filepath.Join(repoRoot, "Dockerfile"), filepath.Join(repoRoot, ".env.example"))
}

var (
	fence      = regexp.MustCompile("(?ms)^\\s*```[^\n]*\n(.*?)^\\s*```")
	inlineCode = regexp.MustCompile("`([^`]+)`")
	execForm   = regexp.MustCompile(`\["/usr/local/bin/opsctl"((?:,\s*"[^"]*")*)\]`)
	quoted     = regexp.MustCompile(`"([^"]*)"`)
	// invocation is opsctl (a path ending in it) and what follows it.
	invocation = regexp.MustCompile(`(?:^|[\s/])opsctl((?:[ \t]+[^\s]+)*)`)
)

// invocations returns the opsctl command lines of a file: in Markdown, the
// ones in code blocks and inline code; in compose.yaml, the exec-form
// commands; in the Dockerfile and .env.example, the ones in comments.
func invocations(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	var lines []string
	switch {
	case strings.HasSuffix(path, ".md"):
		for _, m := range fence.FindAllStringSubmatch(text, -1) {
			lines = append(lines, strings.Split(m[1], "\n")...)
		}
		for _, m := range inlineCode.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
			lines = append(lines, strings.ReplaceAll(m[1], "\n", " "))
		}
	case strings.HasSuffix(path, ".yaml"):
		for _, m := range execForm.FindAllStringSubmatch(text, -1) {
			var args []string
			for _, q := range quoted.FindAllStringSubmatch(m[1], -1) {
				args = append(args, q[1])
			}
			lines = append(lines, "opsctl "+strings.Join(args, " "))
		}
	default: // comments: inline code in .env.example, whole lines in the Dockerfile
		text = regexp.MustCompile(`(?m)^#\s?`).ReplaceAllString(text, "")
		for _, m := range inlineCode.FindAllStringSubmatch(text, -1) {
			lines = append(lines, strings.ReplaceAll(m[1], "\n", " "))
		}
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, "/usr/local/bin/opsctl ") {
				lines = append(lines, l)
			}
		}
	}
	var out [][]string
	for _, l := range lines {
		for _, m := range invocation.FindAllStringSubmatch(l, -1) {
			var args []string
			for _, tok := range strings.Fields(m[1]) {
				if strings.HasPrefix(tok, "#") || strings.ContainsAny(tok, "`…;&>") || tok == "|" || strings.HasPrefix(tok, "(") {
					break // a comment, an elision, the end of the command
				}
				if tok = strings.Trim(tok, "[]"); tok != "" {
					args = append(args, tok)
				}
			}
			if len(args) > 0 {
				out = append(out, args)
			}
		}
	}
	return out
}

// placeholders stand for values in the synopses (--limit N, --timeout D).
var placeholders = map[string]bool{"N": true, "D": true, "M": true, "T": true, "KEY": true, "URL": true}

// TestDocumentedInvocations parses every opsctl invocation the README, the
// docs, the compose file and the Dockerfile show, against the command tree:
// it must name a command (not a group), with flags that exist and take
// such values, and the right number of arguments; its --help must work.
// Docs cannot drift from the CLI unnoticed.
func TestDocumentedInvocations(t *testing.T) {
	seen := 0
	for _, path := range documented(t) {
		for _, args := range invocations(t, path) {
			seen++
			what := filepath.Base(path) + ": opsctl " + strings.Join(args, " ")
			root := opsctl.CommandTree(opsctl.Env{})
			cmd, rest, err := root.Find(args)
			onlyFlags := len(rest) > 0 && !slices.ContainsFunc(rest, func(a string) bool { return !strings.HasPrefix(a, "-") })
			if err != nil || (cmd == root && !onlyFlags) || (cmd != root && cmd.HasSubCommands()) {
				t.Errorf("%s: names no command (found %q, %v)", what, cmd.CommandPath(), err)
				continue
			}
			// Sample values for the placeholders, by the flag's type.
			for i := 1; i < len(rest); i++ {
				name, _, hasValue := strings.Cut(strings.TrimLeft(rest[i-1], "-"), "=")
				f := cmd.Flags().Lookup(name)
				if !strings.HasPrefix(rest[i-1], "--") || hasValue || f == nil || !placeholders[rest[i]] {
					continue
				}
				switch f.Value.Type() {
				case "int":
					rest[i] = "1"
				case "duration":
					rest[i] = "1s"
				}
			}
			err = cmd.ParseFlags(rest)
			if err != nil && !errors.Is(err, pflag.ErrHelp) {
				t.Errorf("%s: %v", what, err)
				continue
			}
			if err == nil && cmd.ValidateArgs(cmd.Flags().Args()) != nil { // (a request for help takes none)
				t.Errorf("%s: %v", what, cmd.ValidateArgs(cmd.Flags().Args()))
			}
			sampled := append(append(pathArgs(cmd), rest...), "--help")
			code, out, errOut := run(t, map[string]string{}, sampled...)
			if code != opsctl.ExitOK || !strings.Contains(out, "Usage:") {
				t.Errorf("%s --help: exit %d\n%s", what, code, errOut)
			}
		}
	}
	if seen < 40 {
		t.Errorf("found only %d documented invocations; is the extraction broken?", seen)
	}
	t.Logf("%d documented invocations checked", seen)
}

// TestReferenceCoversTheTree checks that docs/opsctl.md has a section for
// every command and mentions every flag.
func TestReferenceCoversTheTree(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "opsctl.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, c := range commands(opsctl.CommandTree(opsctl.Env{})) {
		if c.HasSubCommands() || c.Name() == "help" {
			continue
		}
		path := strings.Join(pathArgs(c), " ")
		if c.Name() != "completion" && !strings.Contains(doc, "\n### "+path+"\n") {
			t.Errorf("docs/opsctl.md has no section ### %s", path)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name != "help" && !strings.Contains(doc, "--"+f.Name) {
				t.Errorf("docs/opsctl.md does not mention %s --%s", path, f.Name)
			}
		})
	}
}
