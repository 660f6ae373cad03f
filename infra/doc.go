// Package infra holds no code: its tests validate payrail's deployment
// artefacts structurally, without a container engine, a cluster or a cloud
// account. They build every kustomize overlay of infra/k8s and strictly
// decode each object into the Kubernetes API types; load compose.yaml with
// compose-go; parse infra/terraform with HashiCorp's HCL and
// terraform-config-inspect; and cross-check all of them against the code
// they deploy: the configuration loader's variables
// (examples/internal/config), the server's probe endpoints, the DynamoDB
// idempotency table's key schema, the worker's delivery attempts and the
// bus drivers' naming. They also build the binaries with the Dockerfile's
// flags and run the server. docs/deploy.md says what is validated here and
// what only a real cluster proves.
//
//	go test ./infra/            # in the repository root
//	go test ./infra/ -update    # regenerate infra/k8s/base/prometheusrule.yaml
//
// It is a module of its own so that the SDK's go.mod does not gain the
// Kubernetes, compose and HCL libraries.
package infra
