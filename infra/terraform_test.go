package infra_test

import (
	"encoding/json"
	"go/ast"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/terraform-config-inspect/tfconfig"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/payrail/payrail/bus/snssqs"
)

const tfRoot = "infra/terraform"

var clouds = []string{"aws", "gcp", "azure"}

func tfModule(t *testing.T, rel string) *tfconfig.Module {
	t.Helper()
	m, diags := tfconfig.LoadModule(path(t, rel))
	if diags.HasErrors() {
		t.Fatalf("%s: %v", rel, diags.Err())
	}
	return m
}

// tfBody parses every .tf file of a directory with the HCL native syntax
// parser and returns their bodies.
func tfBodies(t *testing.T, rel string) []*hclsyntax.Body {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(path(t, rel), "*.tf"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no .tf files (%v)", rel, err)
	}
	p := hclparse.NewParser()
	var out []*hclsyntax.Body
	for _, f := range files {
		hf, diags := p.ParseHCLFile(f)
		if diags.HasErrors() {
			t.Fatalf("%s: %v", f, diags)
		}
		out = append(out, hf.Body.(*hclsyntax.Body))
	}
	return out
}

// tfBlock finds the block `typ "label0" "label1"` of a directory.
func tfBlock(t *testing.T, rel, typ string, labels ...string) *hclsyntax.Block {
	t.Helper()
	for _, b := range tfBodies(t, rel) {
		for _, blk := range b.Blocks {
			if blk.Type == typ && slices.Equal(blk.Labels, labels) {
				return blk
			}
		}
	}
	t.Fatalf("%s: no %s %q", rel, typ, labels)
	return nil
}

func nested(t *testing.T, b *hclsyntax.Block, typ string) *hclsyntax.Block {
	t.Helper()
	for _, n := range b.Body.Blocks {
		if n.Type == typ {
			return n
		}
	}
	t.Fatalf("%s %q has no %s block", b.Type, b.Labels, typ)
	return nil
}

// tfFuncs are the Terraform functions the validations and locals use.
var tfFuncs = map[string]function.Function{
	"contains": stdlib.ContainsFunc, "can": tryfunc.CanFunc, "regex": stdlib.RegexFunc, "floor": stdlib.FloorFunc,
	"length": stdlib.LengthFunc, "lower": stdlib.LowerFunc, "max": stdlib.MaxFunc, "min": stdlib.MinFunc,
	"jsonencode": stdlib.JSONEncodeFunc,
}

// literal evaluates an attribute that needs no variables.
func literal(t *testing.T, b *hclsyntax.Block, attr string) cty.Value {
	t.Helper()
	a, ok := b.Body.Attributes[attr]
	if !ok {
		t.Fatalf("%s %q has no attribute %s", b.Type, b.Labels, attr)
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() {
		t.Fatalf("%s %q: %s: %v", b.Type, b.Labels, attr, diags)
	}
	return v
}

// refersTo reports whether an expression is exactly the traversal ref,
// such as var.max_receive_count.
func refersTo(e hcl.Expression, ref string) bool {
	tr, diags := hcl.AbsTraversalForExpr(e)
	if diags.HasErrors() {
		return false
	}
	var parts []string
	for _, s := range tr {
		switch s := s.(type) {
		case hcl.TraverseRoot:
			parts = append(parts, s.Name)
		case hcl.TraverseAttr:
			parts = append(parts, s.Name)
		}
	}
	return strings.Join(parts, ".") == ref
}

func TestTerraformRootModule(t *testing.T) {
	m := tfModule(t, tfRoot)
	// The guide's variables, exactly as its command line names them.
	for name, want := range map[string]struct {
		typ      string
		required bool
	}{
		"cloud_provider": {"string", true},
		"region":         {"string", true},
		"queue_type":     {"string", false},
	} {
		v, ok := m.Variables[name]
		if !ok || v.Type != want.typ || v.Required != want.required || v.Description == "" {
			t.Errorf("variable %s: %+v, want type %s, required %v, a description", name, v, want.typ, want.required)
		}
	}
	if d := m.Variables["queue_type"].Default; d != "standard" {
		t.Errorf("queue_type defaults to %v, want standard", d)
	}
	for _, c := range clouds {
		mc, ok := m.ModuleCalls[c]
		if !ok || mc.Source != "./modules/"+c {
			t.Errorf("module %s: %+v", c, mc)
		}
	}
	for _, p := range []string{"aws", "google", "azurerm"} {
		if rp, ok := m.RequiredProviders[p]; !ok || rp.Source != "hashicorp/"+p || len(rp.VersionConstraints) == 0 {
			t.Errorf("required provider %s: %+v", p, rp)
		}
	}
	// Outputs: the environment variables the binaries read, plus the
	// service account annotations.
	for name := range m.Outputs {
		if name == "kubernetes_service_account_annotations" {
			continue
		}
		if !allowedEnv(t, name) {
			t.Errorf("output %s is not an environment variable a binary reads", name)
		}
	}
	// Every variable's description is set; validated ones are checked below.
	for name, v := range m.Variables {
		if v.Description == "" {
			t.Errorf("variable %s has no description", name)
		}
	}
}

// moduleEnv returns the keys of a cloud module's env output object.
func moduleEnv(t *testing.T, cloud string) []string {
	t.Helper()
	o := tfBlock(t, tfRoot+"/modules/"+cloud, "output", "env")
	obj, ok := o.Body.Attributes["value"].Expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		t.Fatalf("%s: output env is not an object", cloud)
	}
	var keys []string
	for _, it := range obj.Items {
		k, diags := it.KeyExpr.Value(nil)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		keys = append(keys, k.AsString())
	}
	return keys
}

func TestTerraformCloudModules(t *testing.T) {
	root := tfModule(t, tfRoot)
	want := map[string][]string{
		"aws": {"aws_dynamodb_table", "aws_iam_role", "aws_iam_role_policy", "aws_sns_topic", "aws_sns_topic_subscription",
			"aws_sqs_queue", "aws_sqs_queue_policy", "aws_sqs_queue_redrive_allow_policy"},
		"gcp": {"google_pubsub_subscription", "google_pubsub_subscription_iam_member", "google_pubsub_topic",
			"google_pubsub_topic_iam_member", "google_service_account", "google_service_account_iam_member"},
		"azure": {"azurerm_federated_identity_credential", "azurerm_resource_group", "azurerm_role_assignment",
			"azurerm_servicebus_namespace", "azurerm_servicebus_subscription", "azurerm_servicebus_topic", "azurerm_user_assigned_identity"},
	}
	for _, c := range clouds {
		m := tfModule(t, tfRoot+"/modules/"+c)
		types := map[string]bool{}
		for _, r := range m.ManagedResources {
			types[r.Type] = true
		}
		if got := slices.Sorted(maps.Keys(types)); !slices.Equal(got, want[c]) {
			t.Errorf("%s: resource types %q, want %q", c, got, want[c])
		}
		// Each module's environment is published by a root output of the same name.
		env := moduleEnv(t, c)
		for _, k := range env {
			if _, ok := root.Outputs[k]; !ok {
				t.Errorf("%s: env %s has no root output", c, k)
			}
			if !allowedEnv(t, k) {
				t.Errorf("%s: env %s is read by no binary", c, k)
			}
		}
		// The overlay of the same cloud sets every one of them (ConfigMap or Secret).
		b := build(t, c)
		cenv, secrets := podEnv(t, b, deployment(t, b, "payrail-worker").Spec.Template.Spec.Containers[0])
		for _, k := range env {
			_, inCM := cenv[k]
			_, inSecret := secrets[k]
			if !inCM && !inSecret {
				t.Errorf("infra/k8s/overlays/%s does not set %s, an output of the terraform module", c, k)
			}
		}
	}
	// The identities trust the service accounts and namespace of infra/k8s.
	sas := literal(t, tfBlock(t, tfRoot, "locals"), "service_accounts")
	var names []string
	for _, v := range sas.AsValueMap() {
		names = append(names, v.AsString())
	}
	var accounts []string
	for _, a := range build(t, "aws").accounts {
		accounts = append(accounts, a.Name)
	}
	if slices.Sort(names); !slices.Equal(names, slices.Sorted(slices.Values(accounts))) {
		t.Errorf("terraform service accounts %q, infra/k8s %q", names, accounts)
	}
	if ns := tfModule(t, tfRoot).Variables["kubernetes_namespace"].Default; ns != build(t, "aws").namespaces[0].Name {
		t.Errorf("terraform kubernetes_namespace default %v, the overlays' namespace %s", ns, build(t, "aws").namespaces[0].Name)
	}
}

// tfVarValue converts a test value for a variable of the given type.
func tfVarValue(typ string, v any) cty.Value {
	if v == nil {
		switch typ {
		case "number":
			return cty.NullVal(cty.Number)
		case "bool":
			return cty.NullVal(cty.Bool)
		case "map(string)":
			return cty.NullVal(cty.Map(cty.String))
		}
		return cty.NullVal(cty.String)
	}
	switch v := v.(type) {
	case string:
		return cty.StringVal(v)
	case float64:
		return cty.NumberFloatVal(v)
	case int:
		return cty.NumberIntVal(int64(v))
	case bool:
		return cty.BoolVal(v)
	case map[string]any:
		if len(v) == 0 {
			return cty.MapValEmpty(cty.String)
		}
	}
	panic("unsupported test value")
}

// failingValidations evaluates every validation block of the root module's
// variables, as `terraform plan` does, with the variables' defaults
// overridden by set, and returns the variables whose validation fails.
func failingValidations(t *testing.T, set map[string]any) []string {
	t.Helper()
	m := tfModule(t, tfRoot)
	vals := map[string]cty.Value{}
	for name, v := range m.Variables {
		val, ok := set[name]
		if !ok {
			val = v.Default
		}
		if f, isFloat := val.(float64); isFloat && f == float64(int(f)) {
			val = int(f)
		}
		vals[name] = tfVarValue(v.Type, val)
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vals)}, Functions: tfFuncs}
	var failed []string
	for _, b := range tfBodies(t, tfRoot) {
		for _, blk := range b.Blocks {
			if blk.Type != "variable" {
				continue
			}
			for _, vb := range blk.Body.Blocks {
				if vb.Type != "validation" {
					continue
				}
				if msg := literal(t, vb, "error_message"); msg.AsString() == "" {
					t.Errorf("variable %s: empty error_message", blk.Labels[0])
				}
				ok, diags := vb.Body.Attributes["condition"].Expr.Value(ctx)
				if diags.HasErrors() {
					t.Fatalf("variable %s: condition with %v: %v", blk.Labels[0], set, diags)
				}
				if ok.IsNull() || ok.False() {
					failed = append(failed, blk.Labels[0])
				}
			}
		}
	}
	slices.Sort(failed)
	return slices.Compact(failed)
}

func TestTerraformValidations(t *testing.T) {
	aws := map[string]any{"cloud_provider": "aws", "region": "us-east-1",
		"eks_oidc_provider_arn": "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE"}
	gcp := map[string]any{"cloud_provider": "gcp", "region": "europe-west1", "gcp_project_id": "example-project"}
	azure := map[string]any{"cloud_provider": "azure", "region": "westeurope", "azure_subscription_id": "00000000-0000-0000-0000-000000000000",
		"azure_servicebus_namespace": "payrail-example", "aks_oidc_issuer_url": "https://westeurope.oic.prod-aks.azure.com/tenant/cluster/"}
	with := func(base map[string]any, kv ...any) map[string]any {
		out := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	for _, c := range []struct {
		name string
		set  map[string]any
		fail []string
	}{
		{"aws", aws, nil},
		{"gcp", gcp, nil},
		{"azure", azure, nil},
		{"aws fifo", with(aws, "queue_type", "fifo"), nil},
		{"unknown cloud", with(aws, "cloud_provider", "oci"), []string{"cloud_provider"}},
		{"cloud in capitals", with(aws, "cloud_provider", "AWS"), []string{"cloud_provider"}},
		{"queue type", with(aws, "queue_type", "FIFO"), []string{"queue_type"}},
		{"empty queue type", with(aws, "queue_type", ""), []string{"queue_type"}},
		{"region with spaces", with(aws, "region", "US East"), []string{"region"}},
		{"max receive 0", with(aws, "max_receive_count", 0), []string{"max_receive_count"}},
		{"max receive 1001", with(aws, "max_receive_count", 1001), []string{"max_receive_count"}},
		{"max receive 2.5", with(aws, "max_receive_count", 2.5), []string{"max_receive_count"}},
		{"visibility 5", with(aws, "visibility_timeout_seconds", 5), []string{"visibility_timeout_seconds"}},
		{"name too long", with(aws, "name", strings.Repeat("p", 72)), []string{"name"}},
		{"name with dot", with(aws, "name", "pay.ments"), []string{"name"}},
		{"aws without OIDC provider", with(aws, "eks_oidc_provider_arn", nil), []string{"eks_oidc_provider_arn"}},
		{"gcp without project", with(gcp, "gcp_project_id", nil), []string{"gcp_project_id"}},
		{"azure without namespace", with(azure, "azure_servicebus_namespace", nil), []string{"azure_servicebus_namespace"}},
		{"azure without issuer", with(azure, "aks_oidc_issuer_url", nil), []string{"aks_oidc_issuer_url"}},
		{"azure without subscription", with(azure, "azure_subscription_id", nil), []string{"azure_subscription_id"}},
		{"namespace", with(aws, "kubernetes_namespace", "Payrail"), []string{"kubernetes_namespace"}},
	} {
		if got := failingValidations(t, c.set); !slices.Equal(got, c.fail) {
			t.Errorf("%s: failing validations %q, want %q", c.name, got, c.fail)
		}
	}
}

// retryDefault reads payments.RetryPolicy's MaxAttempts default (the
// assignment in withDefaults).
func retryDefault(t *testing.T) string {
	t.Helper()
	for _, d := range goFile(t, "payments/processor.go").Decls {
		f, ok := d.(*ast.FuncDecl)
		if !ok || f.Name.Name != "withDefaults" || f.Recv == nil {
			continue
		}
		if id, ok := f.Recv.List[0].Type.(*ast.Ident); !ok || id.Name != "RetryPolicy" {
			continue
		}
		var v string
		ast.Inspect(f.Body, func(n ast.Node) bool {
			a, ok := n.(*ast.AssignStmt)
			if !ok || a.Tok != token.ASSIGN || len(a.Lhs) != 1 {
				return true
			}
			if sel, ok := a.Lhs[0].(*ast.SelectorExpr); ok && sel.Sel.Name == "MaxAttempts" {
				if lit, ok := a.Rhs[0].(*ast.BasicLit); ok {
					v = lit.Value
				}
			}
			return true
		})
		if v != "" {
			return v
		}
	}
	t.Fatal("payments/processor.go: no RetryPolicy.withDefaults assignment of MaxAttempts")
	return ""
}

// TestDeliveryAttempts: the brokers dead-letter after the worker's
// delivery attempts (PAYMENTS_MAX_ATTEMPTS' default), everywhere it is set.
func TestDeliveryAttempts(t *testing.T) {
	attempts := goConst(t, "examples/internal/config/config.go", "DefaultMaxAttempts")
	if r := retryDefault(t); r != attempts {
		t.Fatalf("config.DefaultMaxAttempts %s, payments.RetryPolicy default %s", attempts, r)
	}
	if d := tfModule(t, tfRoot).Variables["max_receive_count"].Default; strconv.Itoa(int(d.(float64))) != attempts {
		t.Errorf("terraform max_receive_count defaults to %v, the worker's max attempts to %s", d, attempts)
	}
	if v, _ := envExample(t); v["PAYMENTS_MAX_ATTEMPTS"] != attempts {
		t.Errorf(".env.example PAYMENTS_MAX_ATTEMPTS=%s, the default is %s", v["PAYMENTS_MAX_ATTEMPTS"], attempts)
	}
	// AWS: the SQS redrive policy's maxReceiveCount.
	rp := tfBlock(t, tfRoot+"/modules/aws", "resource", "aws_sqs_queue", "payments").Body.Attributes["redrive_policy"]
	call, ok := rp.Expr.(*hclsyntax.FunctionCallExpr)
	if !ok || call.Name != "jsonencode" {
		t.Fatal("aws_sqs_queue.payments redrive_policy is not jsonencode({...})")
	}
	found := map[string]bool{}
	for _, it := range call.Args[0].(*hclsyntax.ObjectConsExpr).Items {
		k, _ := it.KeyExpr.Value(nil)
		found[k.AsString()] = true
		if k.AsString() == "maxReceiveCount" && !refersTo(it.ValueExpr, "var.max_receive_count") {
			t.Error("redrive_policy maxReceiveCount is not var.max_receive_count")
		}
		if k.AsString() == "deadLetterTargetArn" && !refersTo(it.ValueExpr, "aws_sqs_queue.dead_letter.arn") {
			t.Error("redrive_policy deadLetterTargetArn is not the dead-letter queue")
		}
	}
	if !found["maxReceiveCount"] || !found["deadLetterTargetArn"] {
		t.Errorf("redrive_policy keys %v", found)
	}
	if !refersTo(tfBlock(t, tfRoot, "module", "aws").Body.Attributes["max_receive_count"].Expr, "var.max_receive_count") {
		t.Error("module aws does not get var.max_receive_count")
	}
	// Azure: the subscription's MaxDeliveryCount, and the URL telling the driver.
	sub := tfBlock(t, tfRoot+"/modules/azure", "resource", "azurerm_servicebus_subscription", "worker")
	if !refersTo(sub.Body.Attributes["max_delivery_count"].Expr, "var.max_receive_count") {
		t.Error("azurerm_servicebus_subscription max_delivery_count is not var.max_receive_count")
	}
	if !strings.Contains(read(t, tfRoot+"/modules/azure/outputs.tf"), "max_delivery_count=${var.max_receive_count}") {
		t.Error("the Azure BUS_SUBSCRIPTION_URL output does not carry max_delivery_count")
	}
	// GCP: Pub/Sub's minimum applies.
	minAttempts := goConst(t, "bus/pubsub/pubsub.go", "MinMaxDeliveryAttempts")
	gl := tfBlock(t, tfRoot+"/modules/gcp", "locals")
	for mrc, want := range map[int]int{1: 5, 3: 5, 7: 7, 500: 100} {
		ctx := &hcl.EvalContext{Functions: tfFuncs, Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{
			"max_receive_count": cty.NumberIntVal(int64(mrc)), "subscription_name": cty.StringVal("payments-worker")})}}
		v, diags := gl.Body.Attributes["max_delivery_attempts"].Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		if n, _ := v.AsBigFloat().Int64(); int(n) != want {
			t.Errorf("gcp max_delivery_attempts for %d: %d, want %d (Pub/Sub: %s to 100)", mrc, n, want, minAttempts)
		}
	}
	if minAttempts != "5" {
		t.Errorf("bus/pubsub MinMaxDeliveryAttempts is %s: update the gcp module's max(5, ...)", minAttempts)
	}
	// The compose Service Bus emulator and the Azure overlay say the same.
	var sb struct {
		UserConfig struct {
			Namespaces []struct {
				Topics []struct {
					Name          string
					Subscriptions []struct {
						Name       string
						Properties struct{ MaxDeliveryCount int }
					}
				}
			}
		}
	}
	if err := json.Unmarshal([]byte(read(t, "infra/compose/servicebus/Config.json")), &sb); err != nil {
		t.Fatal(err)
	}
	if got := sb.UserConfig.Namespaces[0].Topics[0].Subscriptions[0].Properties.MaxDeliveryCount; strconv.Itoa(got) != attempts {
		t.Errorf("Service Bus emulator MaxDeliveryCount %d, want %s", got, attempts)
	}
	for _, s := range []string{read(t, "infra/compose/env/servicebus.env"), read(t, "infra/k8s/overlays/azure/kustomization.yaml")} {
		if !strings.Contains(s, "max_delivery_count="+attempts) {
			t.Errorf("a BUS_SUBSCRIPTION_URL lacks max_delivery_count=%s:\n%s", attempts, s)
		}
	}
}

// TestDynamoDBTable: the Terraform table and the LocalStack one have the
// key schema and TTL attribute idempotency/dynamodb uses.
func TestDynamoDBTable(t *testing.T) {
	const src = "idempotency/dynamodb/dynamodb.go"
	pk, ttl := goConst(t, src, "aPK"), goConst(t, src, "aTTL")
	code := read(t, src)
	i := strings.Index(code, "func CreateTable(")
	if i < 0 {
		t.Fatal("no CreateTable in " + src)
	}
	create := code[i : i+strings.Index(code[i:], "\n}\n")]
	for _, s := range []string{
		"AttributeName: aws.String(aPK), AttributeType: types.ScalarAttributeTypeS",
		"AttributeName: aws.String(aPK), KeyType: types.KeyTypeHash",
		"AttributeName: aws.String(aTTL), Enabled: aws.Bool(true)",
	} {
		if !strings.Contains(create, s) {
			t.Fatalf("CreateTable no longer has %q: re-read the driver's schema", s)
		}
	}
	tbl := tfBlock(t, tfRoot+"/modules/aws", "resource", "aws_dynamodb_table", "idempotency")
	if v := literal(t, tbl, "hash_key").AsString(); v != pk {
		t.Errorf("hash_key %q, the driver's partition key is %q", v, pk)
	}
	if _, ok := tbl.Body.Attributes["range_key"]; ok {
		t.Error("the driver's table has no sort key")
	}
	attr := nested(t, tbl, "attribute")
	if literal(t, attr, "name").AsString() != pk || literal(t, attr, "type").AsString() != "S" {
		t.Errorf("attribute block: want %s of type S", pk)
	}
	tb := nested(t, tbl, "ttl")
	if literal(t, tb, "attribute_name").AsString() != ttl || !literal(t, tb, "enabled").True() {
		t.Errorf("ttl block: want attribute_name %q enabled", ttl)
	}
	if literal(t, tbl, "billing_mode").AsString() != "PAY_PER_REQUEST" {
		t.Error("billing_mode: the driver's CreateTable uses on-demand capacity")
	}
	ls := read(t, "infra/compose/localstack/init-dynamodb.sh")
	for _, s := range []string{"AttributeName=" + pk + ",AttributeType=S", "AttributeName=" + pk + ",KeyType=HASH", "Enabled=true,AttributeName=" + ttl} {
		if !strings.Contains(ls, s) {
			t.Errorf("init-dynamodb.sh lacks %s", s)
		}
	}
}

// TestQueueNames: the AWS module names the topic and queues as
// bus/snssqs (and so opsctl bus provision) does, standard and FIFO, and
// the GCP dead-letter topic as bus/pubsub's Provision.
func TestQueueNames(t *testing.T) {
	locals := tfBlock(t, tfRoot+"/modules/aws", "locals")
	for _, fifo := range []bool{false, true} {
		vars := cty.ObjectVal(map[string]cty.Value{"name": cty.StringVal("payments"), "fifo": cty.BoolVal(fifo)})
		ctx := &hcl.EvalContext{Functions: tfFuncs, Variables: map[string]cty.Value{"var": vars}}
		suffix, diags := locals.Body.Attributes["suffix"].Expr.Value(ctx)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		ctx.Variables["local"] = cty.ObjectVal(map[string]cty.Value{"suffix": suffix})
		got := map[string]string{}
		for _, n := range []string{"topic_name", "queue_name", "dlq_name"} {
			v, diags := locals.Body.Attributes[n].Expr.Value(ctx)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			got[n] = v.AsString()
		}
		topic, queue, dlq, err := snssqs.ProvisionOptions{Name: "payments", FIFO: fifo}.Names()
		if err != nil {
			t.Fatal(err)
		}
		if got["topic_name"] != topic || got["queue_name"] != queue || got["dlq_name"] != dlq {
			t.Errorf("fifo=%v: terraform names %v, bus/snssqs %s %s %s", fifo, got, topic, queue, dlq)
		}
	}
	for _, r := range []string{"aws_sns_topic", "aws_sqs_queue"} {
		for _, b := range tfBodies(t, tfRoot+"/modules/aws") {
			for _, blk := range b.Blocks {
				if blk.Type == "resource" && blk.Labels[0] == r {
					attr := "fifo_queue"
					if r == "aws_sns_topic" {
						attr = "fifo_topic"
					}
					if !refersTo(blk.Body.Attributes[attr].Expr, "var.fifo") {
						t.Errorf("%s.%s: %s is not var.fifo", r, blk.Labels[1], attr)
					}
				}
			}
		}
	}
	sub := tfBlock(t, tfRoot+"/modules/aws", "resource", "aws_sns_topic_subscription", "payments")
	if !literal(t, sub, "raw_message_delivery").True() {
		t.Error("the SNS subscription must use raw message delivery")
	}
	if !strings.Contains(read(t, tfRoot+"/modules/gcp/main.tf"), `"${var.subscription_name}`+goConst(t, "bus/pubsub/provision.go", "DeadLetterSuffix")+`"`) {
		t.Error("the gcp dead-letter topic is not <subscription>" + goConst(t, "bus/pubsub/provision.go", "DeadLetterSuffix"))
	}
}

// terraformCmd runs terraform in infra/terraform with a private data
// directory; it skips the test when terraform is not installed.
func terraformCmd(t *testing.T, what string, args ...string) ([]byte, error) {
	t.Helper()
	tf := requireTool(t, "terraform", what)
	cmd := exec.Command(tf, args...)
	cmd.Dir = path(t, tfRoot)
	cmd.Env = append(os.Environ(), "TF_IN_AUTOMATION=1", "TF_DATA_DIR="+filepath.Join(t.TempDir(), "tf"))
	return cmd.CombinedOutput()
}

// TestTerraformFmt runs terraform fmt -check where terraform is installed.
func TestTerraformFmt(t *testing.T) {
	if out, err := terraformCmd(t, "terraform fmt -check", "fmt", "-check", "-recursive", "-diff"); err != nil {
		t.Fatalf("terraform fmt -check: %v\n%s", err, out)
	}
}

// TestTerraformValidate runs terraform init and validate where terraform
// is installed and its registry reachable (init downloads the providers).
func TestTerraformValidate(t *testing.T) {
	out, err := terraformCmd(t, "terraform validate", "init", "-backend=false", "-input=false", "-no-color")
	if err != nil {
		if strings.Contains(string(out), "could not connect to registry") || strings.Contains(string(out), "Failed to query available provider packages") {
			t.Skipf("terraform init cannot download the providers (no registry access): terraform validate is not checked here\n%s", out)
		}
		t.Fatalf("terraform init: %v\n%s", err, out)
	}
	if out, err := terraformCmd(t, "terraform validate", "validate", "-no-color"); err != nil {
		t.Fatalf("terraform validate: %v\n%s", err, out)
	}
}
