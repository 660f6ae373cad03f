package opsctl

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/payrail/payrail/examples/internal/config"
)

// UsageDeploy is the help text of the commands for deployments: images
// built FROM distroless have no shell, curl or wget, so their health
// checks and configuration checks run this binary.
const UsageDeploy = `Deployment (container health checks, CI):
  config check  load the configuration as examples/server and examples/worker do (the
               environment, then .env) and resolve the bus URLs; print the redacted
               configuration; exit status 2 naming every invalid variable
  probe        [--timeout D] URL
               GET URL (http or https); exit status 0 on a 2xx answer, 1 otherwise
               (a Docker HEALTHCHECK for /healthz or /readyz in an image without curl)
`

// configCheck resolves what the binaries would refuse at start beyond
// config.Load, which main has already run: the bus URLs of
// MESSAGE_BUS_ADAPTER.
func (c *cli) configCheck(args []string) error {
	fs := c.flags("config check")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	topic, sub, err := c.Config.BusURLs()
	if err != nil {
		return usagef("%v", err)
	}
	fmt.Fprintf(c.Stdout, "configuration ok: %v\n", c.Config.LogValue())
	fmt.Fprintf(c.Stdout, "bus topic %s\nbus subscription %s\n", config.Redact(topic), config.Redact(sub))
	return nil
}

// probe GETs one URL and succeeds on a 2xx status.
func (c *cli) probe(args []string) error {
	fs := c.flags("probe")
	timeout := fs.Duration("timeout", 2*time.Second, "time allowed for the whole request")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("probe takes one URL, got %d arguments", len(pos))
	}
	u, err := url.Parse(pos[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("probe: want an http:// or https:// URL")
	}
	if *timeout <= 0 {
		return usagef("probe: --timeout %v: want a positive duration", *timeout)
	}
	ctx, cancel := context.WithTimeout(c.ctx, *timeout)
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
	fmt.Fprintf(c.Stdout, "%s %s\n", u.Redacted(), resp.Status)
	return nil
}
