package infra_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// overlays are the deployable kustomizations, one per cloud, with the
// bus each selects.
var overlays = []string{"aws", "gcp", "azure", "kafka"}

var overlayBus = map[string]string{"aws": "sns-sqs", "gcp": "pubsub", "azure": "servicebus", "kafka": "kafka"}

// The custom resources (Prometheus Operator, KEDA) are decoded strictly
// into these structs: the subset of their CRDs' schemas the manifests may
// use, so that a misspelt or misplaced field fails as it would against the
// CRD's structural schema.
type podMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			Authorization *struct {
				Type        string                   `json:"type"`
				Credentials corev1.SecretKeySelector `json:"credentials"`
			} `json:"authorization,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type ruleGroups struct {
	Groups []struct {
		Name     string `json:"name"`
		Interval string `json:"interval,omitempty"`
		Rules    []struct {
			Record      string            `json:"record,omitempty"`
			Alert       string            `json:"alert,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ruleGroups `json:"spec"`
}

type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval int32  `json:"pollingInterval"`
		CooldownPeriod  int32  `json:"cooldownPeriod"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

type triggerAuthentication struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		PodIdentity struct {
			Provider      string `json:"provider"`
			IdentityOwner string `json:"identityOwner,omitempty"`
		} `json:"podIdentity"`
	} `json:"spec"`
}

// kedaMetadata are the metadata keys KEDA's scalers accept, per trigger type.
var kedaMetadata = map[string][]string{
	"aws-sqs-queue":    {"queueURL", "queueURLFromEnv", "queueLength", "activationQueueLength", "awsRegion", "awsEndpoint", "scaleOnInFlight", "scaleOnDelayed"},
	"gcp-pubsub":       {"subscriptionName", "subscriptionNameFromEnv", "topicName", "topicNameFromEnv", "mode", "value", "activationValue", "valueIfNull", "aggregation", "timeHorizon"},
	"azure-servicebus": {"queueName", "topicName", "subscriptionName", "namespace", "messageCount", "activationMessageCount", "cloud", "endpointSuffix", "useRegex", "operation"},
	"kafka":            {"bootstrapServers", "bootstrapServersFromEnv", "consumerGroup", "consumerGroupFromEnv", "topic", "topicFromEnv", "lagThreshold", "activationLagThreshold", "offsetResetPolicy"},
}

// kedaProviders are KEDA's pod identity providers.
var kedaProviders = []string{"aws", "aws-eks", "gcp", "azure-workload", "none"}

type builtOverlay struct {
	name        string
	kinds       []string
	namespaces  []*corev1.Namespace
	accounts    []*corev1.ServiceAccount
	configMaps  map[string]*corev1.ConfigMap
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	podMonitors []*podMonitor
	rules       []*prometheusRule
	scaled      []*scaledObject
	triggerAuth []*triggerAuthentication
}

var (
	buildMu    sync.Mutex
	buildCache = map[string]*builtOverlay{}
)

// decodeStrict decodes YAML into v, failing on unknown or duplicate fields.
func decodeStrict(t *testing.T, what string, y []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(y, v); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, y)
	}
}

// decodeAs decodes YAML strictly into a new T.
func decodeAs[T any](t *testing.T, what string, y []byte) *T {
	t.Helper()
	v := new(T)
	decodeStrict(t, what, y, v)
	return v
}

// build runs kustomize (its Go API, as `kubectl kustomize` does) on
// infra/k8s/overlays/<name> (or "base") and decodes every object strictly.
func build(t *testing.T, name string) *builtOverlay {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if b, ok := buildCache[name]; ok {
		return b
	}
	dir := path(t, "infra/k8s/overlays/"+name)
	if name == "base" {
		dir = path(t, "infra/k8s/base")
	}
	b := buildDir(t, name, dir)
	buildCache[name] = b
	return b
}

// buildDir runs kustomize on the kustomization in dir, naming the result
// name in failures.
func buildDir(t *testing.T, name, dir string) *builtOverlay {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", name, err)
	}
	b := &builtOverlay{name: name, configMaps: map[string]*corev1.ConfigMap{}}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		kind := r.GetApiVersion() + "/" + r.GetKind()
		what := fmt.Sprintf("%s: %s %s", name, kind, r.GetName())
		b.kinds = append(b.kinds, r.GetKind())
		switch kind {
		case "v1/Namespace":
			b.namespaces = append(b.namespaces, decodeAs[corev1.Namespace](t, what, y))
		case "v1/ServiceAccount":
			b.accounts = append(b.accounts, decodeAs[corev1.ServiceAccount](t, what, y))
		case "v1/ConfigMap":
			o := decodeAs[corev1.ConfigMap](t, what, y)
			b.configMaps[o.Name] = o
		case "apps/v1/Deployment":
			b.deployments = append(b.deployments, decodeAs[appsv1.Deployment](t, what, y))
		case "v1/Service":
			b.services = append(b.services, decodeAs[corev1.Service](t, what, y))
		case "autoscaling/v2/HorizontalPodAutoscaler":
			b.hpas = append(b.hpas, decodeAs[autoscalingv2.HorizontalPodAutoscaler](t, what, y))
		case "policy/v1/PodDisruptionBudget":
			b.pdbs = append(b.pdbs, decodeAs[policyv1.PodDisruptionBudget](t, what, y))
		case "monitoring.coreos.com/v1/PodMonitor":
			b.podMonitors = append(b.podMonitors, decodeAs[podMonitor](t, what, y))
		case "monitoring.coreos.com/v1/PrometheusRule":
			b.rules = append(b.rules, decodeAs[prometheusRule](t, what, y))
		case "keda.sh/v1alpha1/ScaledObject":
			b.scaled = append(b.scaled, decodeAs[scaledObject](t, what, y))
		case "keda.sh/v1alpha1/TriggerAuthentication":
			b.triggerAuth = append(b.triggerAuth, decodeAs[triggerAuthentication](t, what, y))
		default:
			// A Secret (or anything else) in the output is an error: secrets
			// are created outside the repository and only referenced.
			t.Fatalf("%s: unexpected object kind %s (%s)", name, kind, r.GetName())
		}
	}
	return b
}

func probes(d *appsv1.Deployment) []*corev1.Probe {
	var out []*corev1.Probe
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
			if p != nil {
				out = append(out, p)
			}
		}
	}
	return out
}

func deployment(t *testing.T, b *builtOverlay, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range b.deployments {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("%s: no Deployment %s", b.name, name)
	return nil
}

// podEnv is the environment of a container: envFrom ConfigMaps, then env;
// secretKeyRef values are returned in secrets (variable -> key).
func podEnv(t *testing.T, b *builtOverlay, c corev1.Container) (env map[string]string, secrets map[string]string) {
	t.Helper()
	env, secrets = map[string]string{}, map[string]string{}
	for _, f := range c.EnvFrom {
		if f.SecretRef != nil {
			t.Errorf("%s/%s: envFrom a Secret: reference each key with secretKeyRef instead", b.name, c.Name)
		}
		if f.ConfigMapRef == nil {
			continue
		}
		cm, ok := b.configMaps[f.ConfigMapRef.Name]
		if !ok {
			t.Fatalf("%s/%s: envFrom ConfigMap %s, not in the build", b.name, c.Name, f.ConfigMapRef.Name)
		}
		maps.Copy(env, cm.Data)
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			secrets[e.Name] = e.ValueFrom.SecretKeyRef.Key
			delete(env, e.Name)
		case e.ValueFrom.ResourceFieldRef != nil:
			env[e.Name] = "1073741824" // resolved by the kubelet to a byte count
		default:
			t.Errorf("%s/%s: env %s has an unexpected valueFrom", b.name, c.Name, e.Name)
		}
	}
	return env, secrets
}

func TestKustomizeBuild(t *testing.T) {
	for _, o := range overlays {
		t.Run(o, func(t *testing.T) {
			b := build(t, o)
			want := []string{"ConfigMap", "Deployment", "Deployment", "HorizontalPodAutoscaler", "Namespace", "PodDisruptionBudget",
				"PodDisruptionBudget", "PodMonitor", "PrometheusRule", "ScaledObject", "Service", "ServiceAccount", "ServiceAccount"}
			if o != "kafka" { // the cloud overlays authenticate KEDA with pod identity
				want = append(want, "TriggerAuthentication")
			}
			got := slices.Sorted(slices.Values(b.kinds))
			if !slices.Equal(got, want) {
				t.Errorf("objects %q, want %q", got, want)
			}
			for _, ns := range b.namespaces {
				if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
					t.Errorf("namespace %s does not enforce the restricted Pod Security Standard", ns.Name)
				}
			}
		})
	}
	// The base builds too (its objects are the overlays' common part).
	build(t, "base")
}

func TestPodSecurity(t *testing.T) {
	for _, o := range overlays {
		for _, d := range build(t, o).deployments {
			what := o + "/" + d.Name
			ps := d.Spec.Template.Spec
			if ps.SecurityContext == nil || ps.SecurityContext.RunAsNonRoot == nil || !*ps.SecurityContext.RunAsNonRoot ||
				ps.SecurityContext.RunAsUser == nil || *ps.SecurityContext.RunAsUser == 0 ||
				ps.SecurityContext.SeccompProfile == nil || ps.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("%s: pod securityContext must set runAsNonRoot, a non-zero runAsUser and seccomp RuntimeDefault", what)
			}
			if ps.HostNetwork || ps.HostPID || ps.HostIPC {
				t.Errorf("%s: host namespaces", what)
			}
			if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
				t.Errorf("%s: automountServiceAccountToken must be false", what)
			}
			if len(ps.Tolerations) == 0 || ps.TopologySpreadConstraints == nil {
				t.Errorf("%s: no tolerations or topology spread", what)
			}
			for _, v := range ps.Volumes {
				if v.HostPath != nil {
					t.Errorf("%s: hostPath volume %s", what, v.Name)
				}
			}
			for _, c := range ps.Containers {
				sc := c.SecurityContext
				if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
					sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
					sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 ||
					sc.Privileged != nil && *sc.Privileged {
					t.Errorf("%s/%s: container securityContext must forbid privilege escalation, drop ALL capabilities and mount the root filesystem read-only", what, c.Name)
				}
				if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
					t.Errorf("%s/%s: CPU and memory requests and a memory limit are required", what, c.Name)
				}
				if !strings.HasPrefix(c.Image, "registry.example.com/payrail:") {
					t.Errorf("%s/%s: image %q: the overlay's images: entry did not apply", what, c.Name, c.Image)
				}
				// The image has no shell: no exec probes or hooks.
				for _, p := range append(probes(d), lifecycleProbes(c)...) {
					if p.Exec != nil {
						t.Errorf("%s/%s: exec probe or hook %v: the distroless image has no shell", what, c.Name, p.Exec.Command)
					}
				}
			}
		}
	}
}

func lifecycleProbes(c corev1.Container) []*corev1.Probe {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return nil
	}
	return []*corev1.Probe{{ProbeHandler: corev1.ProbeHandler{Exec: c.Lifecycle.PreStop.Exec}}}
}

func TestProbesAndShutdown(t *testing.T) {
	for _, o := range overlays {
		b := build(t, o)
		cm := b.configMaps["payrail-config"]
		if cm == nil {
			// The generator appends a content hash to the name.
			for n, c := range b.configMaps {
				if strings.HasPrefix(n, "payrail-config-") {
					cm = c
				}
			}
		}
		if cm == nil {
			t.Fatalf("%s: no payrail-config ConfigMap", o)
		}
		shutdown, err := time.ParseDuration(cm.Data["SHUTDOWN_TIMEOUT"])
		if err != nil {
			t.Fatalf("%s: SHUTDOWN_TIMEOUT %q: %v", o, cm.Data["SHUTDOWN_TIMEOUT"], err)
		}

		srv := deployment(t, b, "payrail-server")
		c := srv.Spec.Template.Spec.Containers[0]
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s: the server's readiness probe must GET /readyz", o)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: the server's liveness probe must GET /healthz", o)
		}
		checkProbePorts(t, o, c, cm.Data["PORT"])
		pause := int64(0)
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
			t.Errorf("%s: the server needs a preStop sleep (load balancers drop it before the listener closes)", o)
		} else {
			pause = c.Lifecycle.PreStop.Sleep.Seconds
		}
		// examples/internal/server: three phases of up to SHUTDOWN_TIMEOUT each, after the pause.
		need := 3*int64(shutdown/time.Second) + pause
		if g := srv.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= need {
			t.Errorf("%s: server terminationGracePeriodSeconds %s must exceed 3 x SHUTDOWN_TIMEOUT + preStop = %ds", o, seconds(g), need)
		}

		wrk := deployment(t, b, "payrail-worker")
		wc := wrk.Spec.Template.Spec.Containers[0]
		checkProbePorts(t, o, wc, cm.Data["METRICS_PORT"])
		served := workerPaths(t)
		for _, p := range probes(wrk) {
			if p.HTTPGet == nil || !slices.Contains(served, p.HTTPGet.Path) {
				t.Errorf("%s: worker probe %+v: the worker serves only %q", o, p.ProbeHandler, served)
			}
		}
		if g := wrk.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= int64(shutdown/time.Second) {
			t.Errorf("%s: worker terminationGracePeriodSeconds %s must exceed SHUTDOWN_TIMEOUT %v", o, seconds(g), shutdown)
		}
	}
}

func seconds(p *int64) string {
	if p == nil {
		return "(unset)"
	}
	return fmt.Sprintf("%ds", *p)
}

// checkProbePorts checks that HTTP probes use a named container port whose
// number is the one the binary listens on (PORT or METRICS_PORT).
func checkProbePorts(t *testing.T, o string, c corev1.Container, port string) {
	t.Helper()
	for _, p := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			continue
		}
		found := false
		for _, cp := range c.Ports {
			if cp.Name == p.HTTPGet.Port.String() && fmt.Sprint(cp.ContainerPort) == port {
				found = true
			}
		}
		if !found {
			t.Errorf("%s/%s: probe port %q is not a container port numbered %s", o, c.Name, p.HTTPGet.Port.String(), port)
		}
	}
}

func TestEnvAndSecrets(t *testing.T) {
	tmpl := secretTemplate(t)
	for _, o := range overlays {
		b := build(t, o)
		for _, cm := range b.configMaps {
			for k := range cm.Data {
				if slices.Contains(secretVars, k) {
					t.Errorf("%s: ConfigMap %s holds %s, a secret: take it from the Secret by reference", o, cm.Name, k)
				}
			}
		}
		for _, d := range b.deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				env, secrets := podEnv(t, b, c)
				for k := range env {
					if !allowedEnv(t, k) {
						t.Errorf("%s/%s: sets %s, which no binary reads (examples/internal/config.Names, or otherReaders)", o, d.Name, k)
					}
					if slices.Contains(secretVars, k) {
						t.Errorf("%s/%s: %s is set as a literal value; take it from the Secret (secretKeyRef)", o, d.Name, k)
					}
				}
				for k, key := range secrets {
					if !allowedEnv(t, k) {
						t.Errorf("%s/%s: sets %s, which no binary reads", o, d.Name, k)
					}
					if _, ok := tmpl[key]; !ok {
						t.Errorf("%s/%s: %s references Secret key %s, missing from infra/k8s/base/secret.example.yaml", o, d.Name, k, key)
					}
				}
				for _, e := range c.Env {
					if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && (r.SecretKeyRef.Name != "payrail-secrets" || r.SecretKeyRef.Optional != nil && *r.SecretKeyRef.Optional) {
						t.Errorf("%s/%s: %s: secrets come from payrail-secrets, not optional", o, d.Name, e.Name)
					}
				}
				// The variables STRIPE_API_KEY-style references name must be set.
				if g := env["GATEWAY_URL"]; strings.Contains(g, "api_key_env=") {
					v := strings.SplitN(strings.SplitN(g, "api_key_env=", 2)[1], "&", 2)[0]
					if _, ok := secrets[v]; !ok {
						t.Errorf("%s/%s: GATEWAY_URL names api_key_env=%s, not set from the Secret", o, d.Name, v)
					}
				}
				if env["MESSAGE_BUS_ADAPTER"] != overlayBus[o] {
					t.Errorf("%s/%s: MESSAGE_BUS_ADAPTER=%q, want %q", o, d.Name, env["MESSAGE_BUS_ADAPTER"], overlayBus[o])
				}
			}
		}
		for _, pm := range b.podMonitors {
			for _, ep := range pm.Spec.PodMetricsEndpoints {
				if a := ep.Authorization; a != nil {
					if _, ok := tmpl[a.Credentials.Key]; !ok || a.Credentials.Name != "payrail-secrets" {
						t.Errorf("%s: PodMonitor credentials %s/%s not in the Secret template", o, a.Credentials.Name, a.Credentials.Key)
					}
				}
			}
		}
	}
}

// secretTemplate reads infra/k8s/base/secret.example.yaml: a template, not
// part of any kustomization, whose values are all placeholders.
func secretTemplate(t *testing.T) map[string]string {
	t.Helper()
	var s corev1.Secret
	decodeStrict(t, "secret.example.yaml", []byte(read(t, "infra/k8s/base/secret.example.yaml")), &s)
	if s.Name != "payrail-secrets" || len(s.Data) > 0 || len(s.StringData) == 0 {
		t.Fatalf("secret.example.yaml: want Secret payrail-secrets with stringData placeholders")
	}
	for k, v := range s.StringData {
		if !strings.Contains(v, "<") || !strings.Contains(v, ">") {
			t.Errorf("secret.example.yaml: %s=%q is not a <placeholder>: never commit secret values", k, v)
		}
	}
	if strings.Contains(read(t, "infra/k8s/base/kustomization.yaml"), "\n  - secret.example.yaml") {
		t.Error("secret.example.yaml must not be a kustomize resource")
	}
	return s.StringData
}

// TestConfigAccepted runs each Deployment's environment through the real
// configuration loader (opsctl config check), Secret values replaced by
// valid placeholders.
func TestConfigAccepted(t *testing.T) {
	for _, o := range overlays {
		b := build(t, o)
		for _, d := range b.deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				env := podEnvWithPlaceholders(t, b, d, c)
				if out, err := configCheck(t, env); err != nil {
					t.Errorf("%s/%s: the configuration loader refuses the manifest's environment: %v\n%s", o, d.Name, err, out)
				}
			}
		}
	}
}

// podEnvWithPlaceholders is a container's environment with each Secret
// value replaced by a valid placeholder.
func podEnvWithPlaceholders(t *testing.T, b *builtOverlay, d *appsv1.Deployment, c corev1.Container) map[string]string {
	t.Helper()
	fake := map[string]string{
		"PAYRAIL_API_KEYS":   "sk_test_a:merchant-a",
		"PAYRAIL_ADMIN_KEYS": "admin_test_a",
		"STRIPE_API_KEY":     "sk_test_x",
		"PAYMENTS_STORE_URL": "postgres://payrail@db:5432/payrail",
		"IDEMPOTENCY_URL":    "redis://redis:6379/0",
	}
	env, secrets := podEnv(t, b, c)
	for k := range secrets {
		v, ok := fake[k]
		if !ok {
			t.Fatalf("%s/%s: no placeholder for secret %s", b.name, d.Name, k)
		}
		env[k] = v
	}
	return env
}

// TestWebhooksComponent builds every overlay with components/webhooks: the
// API server and the worker mount the endpoints Secret read-only where
// PAYRAIL_WEBHOOK_ENDPOINTS_FILE says, and the configuration loader
// accepts that environment with an endpoints file there.
func TestWebhooksComponent(t *testing.T) {
	sample := filepath.Join(t.TempDir(), "endpoints.json")
	secret := "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	if err := os.WriteFile(sample, []byte(`[{"id":"ep_a","merchant":"merchant-a","url":"https://hooks.example.com/payrail","secrets":["`+secret+`"]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range overlays {
		dir := t.TempDir()
		rel := func(p string) string { // kustomize refuses absolute paths
			r, err := filepath.Rel(dir, path(t, p))
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - %s\ncomponents:\n  - %s\n",
			rel("infra/k8s/overlays/"+o), rel("infra/k8s/components/webhooks"))
		if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
			t.Fatal(err)
		}
		b := buildDir(t, o+"+webhooks", dir)
		for _, name := range []string{"payrail-server", "payrail-worker"} {
			d := deployment(t, b, name)
			c := d.Spec.Template.Spec.Containers[0]
			env := podEnvWithPlaceholders(t, b, d, c)
			file := env["PAYRAIL_WEBHOOK_ENDPOINTS_FILE"]
			mounted := false
			for _, m := range c.VolumeMounts {
				mounted = mounted || (m.Name == "webhook-endpoints" && m.ReadOnly && m.MountPath == filepath.Dir(file))
			}
			fromSecret := false
			for _, v := range d.Spec.Template.Spec.Volumes {
				fromSecret = fromSecret || (v.Name == "webhook-endpoints" && v.Secret != nil && v.Secret.SecretName == "payrail-webhook-endpoints")
			}
			if file == "" || !mounted || !fromSecret {
				t.Errorf("%s/%s: PAYRAIL_WEBHOOK_ENDPOINTS_FILE=%q, mounted read-only there %v, from the Secret %v", o, name, file, mounted, fromSecret)
			}
			env["PAYRAIL_WEBHOOK_ENDPOINTS_FILE"] = sample // the Secret's file, as the pod would see it
			if out, err := configCheck(t, env); err != nil {
				t.Errorf("%s/%s: the configuration loader refuses the component's environment: %v\n%s", o, name, err, out)
			}
		}
	}
}

func TestScalingAndDisruption(t *testing.T) {
	for _, o := range overlays {
		b := build(t, o)
		pods := map[string]labels.Set{}
		for _, d := range b.deployments {
			pods[d.Name] = d.Spec.Template.Labels
			sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
			if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("%s/%s: selector does not match its pods", o, d.Name)
			}
		}
		// Each Deployment has a PDB selecting its pods, and only them.
		for name, l := range pods {
			n := 0
			for _, p := range b.pdbs {
				sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
				if err != nil {
					t.Fatal(err)
				}
				if sel.Matches(l) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%s/%s: %d PodDisruptionBudgets select its pods, want 1", o, name, n)
			}
		}
		// The autoscalers own the replica counts: an apply must not reset them.
		for _, d := range b.deployments {
			if d.Spec.Replicas != nil {
				t.Errorf("%s/%s: sets replicas, which its autoscaler owns", o, d.Name)
			}
		}
		// The API scales on CPU; the worker on backlog through KEDA only.
		if len(b.hpas) != 1 || b.hpas[0].Spec.ScaleTargetRef.Name != "payrail-server" || b.hpas[0].Spec.ScaleTargetRef.Kind != "Deployment" ||
			len(b.hpas[0].Spec.Metrics) != 1 || b.hpas[0].Spec.Metrics[0].Resource == nil || b.hpas[0].Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			t.Errorf("%s: want one HPA, on CPU, for payrail-server", o)
		}
		if len(b.scaled) != 1 || b.scaled[0].Spec.ScaleTargetRef.Name != "payrail-worker" {
			t.Fatalf("%s: want one ScaledObject for payrail-worker", o)
		}
		so := b.scaled[0]
		wenv, _ := podEnv(t, b, deployment(t, b, "payrail-worker").Spec.Template.Spec.Containers[0])
		for _, tr := range so.Spec.Triggers {
			allowed, ok := kedaMetadata[tr.Type]
			if !ok {
				t.Errorf("%s: KEDA trigger type %q unknown", o, tr.Type)
			}
			for k, v := range tr.Metadata {
				if !slices.Contains(allowed, k) {
					t.Errorf("%s: trigger %s: metadata %q is not one of KEDA's %q", o, tr.Type, k, allowed)
				}
				if strings.HasSuffix(k, "FromEnv") && wenv[v] == "" {
					t.Errorf("%s: trigger %s: %s=%s, not set in the worker's environment", o, tr.Type, k, v)
				}
			}
			if tr.AuthenticationRef == nil && len(b.triggerAuth) == 0 {
				continue // no authentication (the kafka overlay's plaintext example)
			}
			if tr.AuthenticationRef == nil || !slices.ContainsFunc(b.triggerAuth, func(a *triggerAuthentication) bool { return a.Name == tr.AuthenticationRef.Name }) {
				t.Errorf("%s: trigger %s: authenticationRef does not name a TriggerAuthentication of the overlay", o, tr.Type)
			}
		}
		for _, a := range b.triggerAuth {
			if !slices.Contains(kedaProviders, a.Spec.PodIdentity.Provider) {
				t.Errorf("%s: TriggerAuthentication %s: pod identity provider %q", o, a.Name, a.Spec.PodIdentity.Provider)
			}
		}
		// The Service reaches the server's http port; the PodMonitor scrapes
		// a named port of each Deployment.
		for _, s := range b.services {
			if !labels.SelectorFromSet(s.Spec.Selector).Matches(pods["payrail-server"]) || s.Spec.Ports[0].TargetPort.String() != "http" {
				t.Errorf("%s: Service %s must select the server pods on port http", o, s.Name)
			}
		}
		for _, pm := range b.podMonitors {
			sel, err := metav1.LabelSelectorAsSelector(&pm.Spec.Selector)
			if err != nil {
				t.Fatal(err)
			}
			for _, ep := range pm.Spec.PodMetricsEndpoints {
				if ep.Path != "/metrics" {
					t.Errorf("%s: PodMonitor path %q", o, ep.Path)
				}
				found := false
				for _, d := range b.deployments {
					for _, c := range d.Spec.Template.Spec.Containers {
						for _, p := range c.Ports {
							found = found || p.Name == ep.Port && sel.Matches(labels.Set(d.Spec.Template.Labels))
						}
					}
				}
				if !found {
					t.Errorf("%s: PodMonitor port %q is no selected pod's port", o, ep.Port)
				}
			}
		}
	}
}
