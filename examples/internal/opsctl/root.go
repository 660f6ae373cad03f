package opsctl

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// annotConfig marks a command that needs the configuration: the root's
// PersistentPreRunE loads it first (help, completion and probe run
// without one).
const annotConfig = "opsctl/config"

// needsConfig marks cmd as needing the configuration and returns it.
func needsConfig(cmd *cobra.Command) *cobra.Command {
	if cmd.Annotations == nil {
		cmd.Annotations = map[string]string{}
	}
	cmd.Annotations[annotConfig] = "true"
	return cmd
}

const rootLong = `opsctl is payrail's operations CLI. It reads the same environment (and .env
file) as examples/server and examples/worker: IDEMPOTENCY_URL, PAYMENTS_STORE_URL,
MESSAGE_BUS_ADAPTER and the bus variables.

Commands that change something (keys purge, keys release, db migrate, bus provision,
bus dlq redrive, events redeliver) are dry runs unless --apply (or --dry-run=false) is given.

Output: -o table (the default, for people) or -o json (stable, for scripts: one
object per line for lists, one object otherwise). Diagnostics and progress bars go to
stderr; progress bars only when stderr is a terminal.

Exit status: 0 done (or, dry run, would be done); 1 failed or refused, nothing
changed; 2 usage or configuration error; 3 partly done (some items changed, others
failed: the output says which). See docs/opsctl.md.`

// command builds the command tree of one run.
func (c *cli) command() *cobra.Command {
	root := &cobra.Command{
		Use:   "opsctl",
		Short: "payrail's operations CLI: idempotency keys, schemas, message bus, webhook events, deployment checks",
		Long:  rootLong,
		Example: `  opsctl keys ls --stuck
  opsctl keys release --merchant acme order-1001 --apply
  opsctl db migrate --apply
  opsctl bus dlq redrive -o json
  opsctl completion bash > /etc/bash_completion.d/opsctl`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			c.ctx = cmd.Context()
			if cmd.Annotations[annotConfig] == "true" {
				return c.loadConfig()
			}
			return nil
		},
	}
	root.SetOut(c.Stdout)
	root.SetErr(c.Stderr)
	root.SetIn(strings.NewReader(""))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usagef("%v", err) })
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetHelpCommand(helpCommand())
	group(root)

	keys := group(&cobra.Command{
		Use:   "keys",
		Short: "Inspect and clean the idempotency keys of IDEMPOTENCY_URL",
		Long: `Inspect and clean the idempotency store that IDEMPOTENCY_URL names (redis://, postgres://,
dynamodb://; memory:// lives inside the server process and cannot be inspected from
outside). See the runbook "clean orphan keys only if safe" in docs/operations.md.`,
		Example: `  opsctl keys ls --stuck
  opsctl keys show --merchant acme order-1001`,
	})
	keys.AddCommand(c.keysListCommand(), c.keysShowCommand(), c.keysPurgeCommand(), c.keysReleaseCommand())

	db := group(&cobra.Command{
		Use:     "db",
		Short:   "PostgreSQL schemas of the idempotency and payment stores",
		Long:    `Apply the PostgreSQL schemas of IDEMPOTENCY_URL and PAYMENTS_STORE_URL (postgres:// ones only).`,
		Example: `  opsctl db migrate --apply`,
	})
	db.AddCommand(c.dbMigrateCommand())

	bus := group(&cobra.Command{
		Use:   "bus",
		Short: "Provision the message bus, read its counts, inspect and redrive its dead letters",
		Long: `Commands on the message bus that MESSAGE_BUS_ADAPTER (or BUS_TOPIC_URL and
BUS_SUBSCRIPTION_URL) configures: kafka, pubsub, servicebus or sns-sqs. The in-memory
bus lives inside the server process and cannot be reached from outside.`,
		Example: `  opsctl bus provision --apply
  opsctl bus stats
  opsctl bus dlq ls`,
	})
	dlq := group(&cobra.Command{
		Use:   "dlq",
		Short: "Inspect and redrive the dead-letter queue of the worker's subscription",
		Long: `Inspect and redrive the dead-letter queue of the worker's subscription, on any bus
with a dead-letter queue. See the runbook "messages stuck in the queue" in
docs/runbooks.md.`,
		Example: `  opsctl bus dlq ls --limit 20
  opsctl bus dlq redrive            # dry run: what would happen to each dead letter
  opsctl bus dlq redrive --apply`,
	})
	dlq.AddCommand(c.dlqListCommand(), c.dlqRedriveCommand())
	bus.AddCommand(c.busProvisionCommand(), c.busStatsCommand(), dlq)

	events := group(&cobra.Command{
		Use:   "events",
		Short: "Inspect the payment events (webhooks) of PAYMENTS_STORE_URL and redeliver them",
		Long: `Inspect the payment events that the processes record for merchant webhooks, and their
deliveries, in the payment store that PAYMENTS_STORE_URL names (postgres://; memory://
lives inside the server process), and schedule an event for delivery again. See
docs/webhooks.md and the runbook "a merchant's webhook endpoint is failing" in
docs/runbooks.md.`,
		Example: `  opsctl events pending
  opsctl events list acme pay_2Nq8xK
  opsctl events redeliver acme pay_2Nq8xK evt_pay_2Nq8xK_3 --apply`,
	})
	events.AddCommand(c.eventsPendingCommand(), c.eventsListCommand(), c.eventsInspectCommand(), c.eventsRedeliverCommand(),
		c.eventsDeadCommand(), c.eventsRedeliverDeadCommand())

	cfg := group(&cobra.Command{
		Use:     "config",
		Short:   "Check a deployment's configuration",
		Long:    `Check the configuration the server and the worker would load.`,
		Example: `  opsctl config check`,
	})
	cfg.AddCommand(c.configCheckCommand())

	root.AddCommand(keys, db, bus, events, cfg, c.probeCommand(), completionCommand())
	return root
}

// group makes cmd a command that only holds subcommands: run alone, or
// with an unknown subcommand, it is a usage error.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var names []string
		for _, sub := range cmd.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		if len(args) == 0 {
			return usagef("%s needs a command: %s", cmd.CommandPath(), strings.Join(names, ", "))
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usagef("%s", msg)
	}
	return cmd
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// oneArg wants exactly one positional argument, named what.
func oneArg(what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("%s needs exactly one %s argument, got %d", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

// helpCommand replaces cobra's help command with one that documents
// itself like the others and fails on an unknown topic.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  `Help prints the help of a command: what it does, its flags and examples.`,
		Example: `  opsctl help keys release
  opsctl keys release --help`,
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			target, _, err := cmd.Root().Find(args)
			if err != nil || target == nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, sub := range target.Commands() {
				if sub.IsAvailableCommand() {
					out = append(out, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if err != nil || target == nil || len(rest) > 0 {
				return usagef("unknown help topic %q", strings.Join(args, " "))
			}
			target.InitDefaultHelpFlag()
			return target.Help()
		},
	}
}

// completionCommand prints a shell completion script.
func completionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print the shell completion script",
		Long: `Print the completion script of bash, zsh, fish or PowerShell on stdout. Commands,
flags and flag values (-o, --state) complete.

  bash:       opsctl completion bash > /etc/bash_completion.d/opsctl
              (or, for the session: source <(opsctl completion bash));
              needs the bash-completion package
  zsh:        opsctl completion zsh > "${fpath[1]}/_opsctl"
              (compinit must be enabled: autoload -U compinit; compinit)
  fish:       opsctl completion fish > ~/.config/fish/completions/opsctl.fish
  PowerShell: opsctl completion powershell | Out-String | Invoke-Expression
              (add it to $PROFILE to keep it)`,
		Example: `  source <(opsctl completion bash)
  opsctl completion zsh > "${fpath[1]}/_opsctl"`,
		ValidArgs:             []string{"bash", "zsh", "fish", "powershell"},
		DisableFlagsInUseLine: true,
		Args:                  oneArg("SHELL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			root, w := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(w, true)
			case "zsh":
				return root.GenZshCompletion(w)
			case "fish":
				return root.GenFishCompletion(w, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(w)
			}
			return usagef("completion: unknown shell %q: want bash, zsh, fish or powershell", args[0])
		},
	}
}
