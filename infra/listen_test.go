package infra_test

import (
	"slices"
	"strings"
	"testing"
)

// TestDeploymentsListenOnEveryInterface: the binaries listen on loopback
// unless LISTEN_HOST says otherwise (a development server stays off the
// network), so every deployment shape sets it: the image, compose.yaml's
// server and worker for every adapter, and the pods of every overlay.
func TestDeploymentsListenOnEveryInterface(t *testing.T) {
	if !slices.Contains(strings.Split(read(t, "Dockerfile"), "\n"), "ENV LISTEN_HOST=0.0.0.0") {
		t.Error("Dockerfile: no ENV LISTEN_HOST=0.0.0.0 in the final image")
	}
	for _, adapter := range []string{"inmemory", "kafka", "sns-sqs", "pubsub", "servicebus"} {
		p := loadCompose(t, adapter)
		for _, name := range []string{"server", "worker"} {
			s, ok := p.Services[name]
			if !ok {
				continue // the worker runs only with an external bus
			}
			if v := s.Environment["LISTEN_HOST"]; v == nil || *v != "0.0.0.0" {
				t.Errorf("compose.yaml (%s): service %s has LISTEN_HOST %v, want 0.0.0.0", adapter, name, v)
			}
		}
	}
	for _, o := range overlays {
		b := build(t, o)
		for _, d := range b.deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				env, _ := podEnv(t, b, c)
				if env["LISTEN_HOST"] != "0.0.0.0" {
					t.Errorf("overlay %s, %s/%s: LISTEN_HOST %q, want 0.0.0.0", o, d.Name, c.Name, env["LISTEN_HOST"])
				}
			}
		}
	}
}
