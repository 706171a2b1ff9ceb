// Pins the modules whose zips ship the real Istio and Gateway API CRD YAML; ../crds.sh extracts the
// files from the Go module cache (verified against go.sum). No Go code lives here.
// Bump with: GOTOOLCHAIN=local go get istio.io/api@vX sigs.k8s.io/gateway-api@vY
module flagger.invalid/testcluster-crds

go 1.26.0

require (
	istio.io/api v1.32.0 // indirect
	sigs.k8s.io/gateway-api v1.6.3 // indirect
)
