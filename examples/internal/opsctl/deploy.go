package opsctl

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/payrail/payrail/examples/internal/config"
)

// Images built FROM distroless have no shell, curl or wget: their health
// checks and configuration checks run this binary (config check, probe).

// configView is config check's -o json.
type configView struct {
	OK bool `json:"ok"`
	// Config is the configuration as the services log it (URLs redacted,
	// API keys counted).
	Config          map[string]any `json:"config"`
	BusTopic        string         `json:"bus_topic"`
	BusSubscription string         `json:"bus_subscription"`
}

func (c *cli) configCheckCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration as the server and the worker load it",
		Long: `Load the configuration as examples/server and examples/worker do (the environment, then
.env) and resolve the bus URLs; print the redacted configuration. Exit status 2 naming
every invalid variable. CI and the container images run it to validate an environment.`,
		Example: `  opsctl config check
  docker run --rm --env-file prod.env payrail /usr/local/bin/opsctl config check -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			topic, sub, err := c.Config.BusURLs()
			if err != nil {
				return usagef("%v", err)
			}
			if out == formatJSON {
				v := configView{OK: true, Config: map[string]any{}, BusTopic: config.Redact(topic), BusSubscription: config.Redact(sub)}
				for _, a := range c.Config.LogValue().Group() {
					v.Config[a.Key] = a.Value.Resolve().Any()
				}
				return writeJSON(c.Stdout, v)
			}
			fmt.Fprintf(c.Stdout, "configuration ok: %v\n", c.Config.LogValue())
			fmt.Fprintf(c.Stdout, "bus topic %s\nbus subscription %s\n", config.Redact(topic), config.Redact(sub))
			return nil
		},
	}
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
}

// probeView is probe's -o json.
type probeView struct {
	URL        string `json:"url"` // without its password
	Status     string `json:"status"`
	StatusCode int    `json:"status_code"`
}

func (c *cli) probeCommand() *cobra.Command {
	var (
		timeout time.Duration
		out     format
	)
	cmd := &cobra.Command{
		Use:   "probe [--timeout D] URL",
		Short: "GET a URL; exit status 0 on a 2xx answer, 1 otherwise",
		Long: `GET URL (http or https): exit status 0 on a 2xx answer, 1 otherwise. A Docker
HEALTHCHECK for /healthz or /readyz in an image without curl. Needs no configuration.`,
		Example: `  opsctl probe http://127.0.0.1:8080/readyz
  opsctl probe --timeout 5s http://127.0.0.1:9464/healthz`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("probe takes one URL, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := url.Parse(args[0])
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usagef("probe: want an http:// or https:// URL")
			}
			if timeout <= 0 {
				return usagef("probe: --timeout %v: want a positive duration", timeout)
			}
			ctx, cancel := context.WithTimeout(c.ctx, timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
			if err != nil {
				return usagef("probe: %v", err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("probe: %w", err) // *url.Error: the URL without its password
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			if resp.StatusCode < 200 || resp.StatusCode > 299 {
				return fmt.Errorf("probe %s: %s", u.Redacted(), resp.Status)
			}
			if out == formatJSON {
				return writeJSON(c.Stdout, probeView{URL: u.Redacted(), Status: resp.Status, StatusCode: resp.StatusCode})
			}
			fmt.Fprintf(c.Stdout, "%s %s\n", u.Redacted(), resp.Status)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "time allowed for the whole request")
	addOutput(cmd, &out, false)
	return cmd
}
