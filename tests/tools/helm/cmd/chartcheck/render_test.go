package main

import (
	"strings"
	"testing"
)

// goodRender is a minimal rendering that satisfies every check; each test breaks one thing.
const goodRender = `
apiVersion: v1
kind: ServiceAccount
metadata:
  name: flagger
  namespace: ops
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: flagger
rules:
  - apiGroups: ["flagger.app"]
    resources: ["canaries", "canaries/status", "canaries/finalizers"]
    verbs: ["get", "list", "watch", "patch", "update"]
  - apiGroups: ["flagger.app"]
    resources: ["metrictemplates", "alertproviders"]
    verbs: ["get", "list", "watch"]
  - apiGroups: ["apps"]
    resources: ["deployments"]
    verbs: ["get", "list", "watch", "create", "patch", "update"]
  - apiGroups: [""]
    resources: ["services", "configmaps", "secrets"]
    verbs: ["get", "list", "watch", "create", "patch", "update"]
  - apiGroups: ["autoscaling"]
    resources: ["horizontalpodautoscalers"]
    verbs: ["get", "list", "watch", "create", "patch", "update"]
  - apiGroups: ["networking.k8s.io"]
    resources: ["ingresses"]
    verbs: ["list", "watch", "create", "patch"]
  - apiGroups: [""]
    resources: ["events"]
    verbs: ["create", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: flagger
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: flagger
subjects:
  - kind: ServiceAccount
    name: flagger
    namespace: ops
---
apiVersion: v1
kind: Service
metadata:
  name: flagger
  namespace: ops
  labels:
    app: flagger
spec:
  selector:
    app: flagger
  ports:
    - name: http
      port: 8080
      targetPort: http
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: flagger
  namespace: ops
spec:
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      app: flagger
  template:
    metadata:
      labels:
        app: flagger
    spec:
      serviceAccountName: flagger
      securityContext:
        runAsNonRoot: true
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: flagger
          image: example/flagger:0.1.0
          args:
            - run
            - -log-level=info
            - -enable-leader-election=false
          ports:
            - name: http
              containerPort: 8080
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
          securityContext:
            runAsNonRoot: true
            runAsUser: 10001
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities:
              drop: ["ALL"]
            seccompProfile:
              type: RuntimeDefault
          resources:
            requests: {cpu: 10m, memory: 32Mi}
            limits: {cpu: "1", memory: 512Mi}
`

const leaseRole = `
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: flagger-leader-election
  namespace: ops
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["create"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    resourceNames: ["flagger-leader-election"]
    verbs: ["get", "update", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: flagger-leader-election
  namespace: ops
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: flagger-leader-election
subjects:
  - kind: ServiceAccount
    name: flagger
    namespace: ops
`

// runChecks runs every render check as runRender does and returns the failures.
func runChecks(t *testing.T, manifest string) []string {
	t.Helper()
	c := &checker{}
	r := c.decode([]byte(manifest))
	c.checkDeployments(r)
	c.checkRBAC(r)
	c.checkLeaderElection(r)
	c.checkConfigTracking(r)
	c.checkServiceAndMonitors(r)
	c.checkRecording(r)
	return c.failures
}

func mustReplace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("fixture does not contain %q", old)
	}
	return strings.Replace(s, old, new, 1)
}

func expectFailure(t *testing.T, failures []string, want string) {
	t.Helper()
	for _, f := range failures {
		if strings.Contains(f, want) {
			return
		}
	}
	t.Errorf("want a failure containing %q, got %q", want, failures)
}

func TestGoodRenderPasses(t *testing.T) {
	if f := runChecks(t, goodRender); len(f) > 0 {
		t.Fatalf("unexpected failures: %q", f)
	}
}

func TestWeakenedPodIsRejected(t *testing.T) {
	cases := []struct{ name, old, new, want string }{
		{"writable root", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem must be true"},
		{"escalation", "allowPrivilegeEscalation: false", "allowPrivilegeEscalation: true", "allowPrivilegeEscalation must be false"},
		{"capabilities kept", `drop: ["ALL"]`, `drop: ["NET_RAW"]`, "drop ALL capabilities"},
		{"root user", "runAsUser: 10001", "runAsUser: 0", "runAsUser must be 10001"},
		{"readiness on liveness path", "path: /readyz", "path: /healthz", "readinessProbe must GET /readyz"},
		{"exec probe", "livenessProbe:\n            httpGet:\n              path: /healthz\n              port: http",
			"livenessProbe:\n            exec:\n              command: [wget, -q, localhost:8080/healthz]", "livenessProbe must be an httpGet probe"},
		{"no memory limit", `limits: {cpu: "1", memory: 512Mi}`, `limits: {cpu: "1"}`, "must limit memory"},
		{"space-separated flag", "- -log-level=info", "- -log-level info", "not in the -flag=value form"},
		{"misspelled field", "serviceAccountName: flagger", "serviceAcountName: flagger", "does not decode strictly"},
		{"unrendered service account", "serviceAccountName: flagger", "serviceAccountName: other", `ServiceAccount "other", which is not rendered`},
		{"service selects nothing", "  selector:\n    app: flagger", "  selector:\n    app: other", "does not select the operator's pods"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectFailure(t, runChecks(t, mustReplace(t, goodRender, tc.old, tc.new)), tc.want)
		})
	}
}

func TestBroadRBACIsRejected(t *testing.T) {
	cases := []struct{ name, old, new, want string }{
		{"delete", `verbs: ["create", "patch"]`, `verbs: ["create", "patch", "delete"]`, `grants verb "delete"`},
		{"wildcard resource", `resources: ["metrictemplates", "alertproviders"]`, `resources: ["*"]`, "grants a wildcard"},
		{"wildcard verb", `verbs: ["create", "patch"]`, `verbs: ["*"]`, `grants verb "*"`},
		{"missing status write", `resources: ["canaries", "canaries/status", "canaries/finalizers"]`, `resources: ["canaries"]`, "lacks patch on canaries/status"},
		{"binding to a missing role", "  kind: ClusterRole\n  name: flagger\nsubjects", "  kind: ClusterRole\n  name: admin\nsubjects", "refers to ClusterRole admin"},
		{"leases cluster-wide", `resources: ["events"]`, `resources: ["events", "leases"]`, "grants Leases cluster-wide"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectFailure(t, runChecks(t, mustReplace(t, goodRender, tc.old, tc.new)), tc.want)
		})
	}
}

func TestLeaderElectionNeedsTheLeaseRole(t *testing.T) {
	on := mustReplace(t, goodRender, "-enable-leader-election=false", "-enable-leader-election=true\n            - -leader-election-namespace=ops")
	on = mustReplace(t, on, "replicas: 1\n  strategy:\n    type: Recreate\n", "replicas: 2\n")
	expectFailure(t, runChecks(t, on), "cannot get the Leases in namespace ops")
	if f := runChecks(t, on+leaseRole); len(f) > 0 {
		t.Fatalf("leader election with the Lease Role: unexpected failures %q", f)
	}
	// A scoped operator keeps the Lease in its watch namespace, not in -leader-election-namespace.
	scoped := mustReplace(t, on, "- -log-level=info", "- -log-level=info\n            - -namespace=team-a")
	expectFailure(t, runChecks(t, scoped+leaseRole), "cannot get the Leases in namespace team-a")
}

const shardRole = `
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: flagger-shards
  namespace: ops
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "list", "create", "update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: flagger-shards
  namespace: ops
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: flagger-shards
subjects:
  - kind: ServiceAccount
    name: flagger
    namespace: ops
`

func TestShardingNeedsTheShardRoleAndEnoughShards(t *testing.T) {
	on := mustReplace(t, goodRender, "- -enable-leader-election=false", "- -enable-leader-election=false\n            - -leader-election-namespace=ops\n            - -shards=6")
	on = mustReplace(t, on, "replicas: 1\n  strategy:\n    type: Recreate\n", "replicas: 3\n")
	expectFailure(t, runChecks(t, on), "sharding is on but ServiceAccount flagger cannot get the Leases in namespace ops")
	if f := runChecks(t, on+shardRole); len(f) > 0 {
		t.Fatalf("sharding with the shard Role: unexpected failures %q", f)
	}
	// The leader-election Role names its one Lease: not enough for shard and membership Leases.
	expectFailure(t, runChecks(t, on+leaseRole), "cannot list the Leases in namespace ops")
	noUpdate := mustReplace(t, shardRole, `"create", "update"`, `"create"`)
	expectFailure(t, runChecks(t, on+noUpdate), "cannot update the Leases in namespace ops")
	few := mustReplace(t, on, "- -shards=6", "- -shards=2")
	expectFailure(t, runChecks(t, few+shardRole), "-shards=2 is below the 3 replicas")
	both := mustReplace(t, on, "-enable-leader-election=false", "-enable-leader-election=true")
	expectFailure(t, runChecks(t, both+shardRole), "exclude each other")
}

func TestWithoutLeaderElectionOneReplicaAndNoLeases(t *testing.T) {
	expectFailure(t, runChecks(t, goodRender+leaseRole), "grants Leases but neither leader election nor sharding is on")
	two := mustReplace(t, goodRender, "replicas: 1", "replicas: 2")
	expectFailure(t, runChecks(t, two), "exactly 1 replica")
	rolling := mustReplace(t, goodRender, "type: Recreate", "type: RollingUpdate")
	expectFailure(t, runChecks(t, rolling), "Recreate strategy")
}

func TestConfigTrackingOffDropsConfigWrites(t *testing.T) {
	off := mustReplace(t, goodRender, "- -log-level=info", "- -log-level=info\n            - -enable-config-tracking=false")
	expectFailure(t, runChecks(t, off), "config tracking is off but the ClusterRole grants list on configmaps")
}

func TestRecordingNeedsItsVolumeAndStaysOnLoopback(t *testing.T) {
	on := mustReplace(t, goodRender, "- -log-level=info", "- -log-level=info\n            - -record-traces=/var/lib/flagger/traces")
	expectFailure(t, runChecks(t, on), "-record-traces=/var/lib/flagger/traces but no volume is mounted there")
	mounted := mustReplace(t, on, "          resources:\n",
		"          volumeMounts:\n            - name: traces\n              mountPath: /var/lib/flagger/traces\n          resources:\n")
	expectFailure(t, runChecks(t, mounted), "volumeMount traces at /var/lib/flagger/traces names no pod volume")
	good := mustReplace(t, mounted, "      containers:\n", "      volumes:\n        - name: traces\n          emptyDir: {}\n      containers:\n")
	if f := runChecks(t, good); len(f) > 0 {
		t.Fatalf("recording with its volume: unexpected failures %q", f)
	}
	readOnly := mustReplace(t, good, "mountPath: /var/lib/flagger/traces", "mountPath: /var/lib/flagger/traces\n              readOnly: true")
	expectFailure(t, runChecks(t, readOnly), "mounted read-only")
	wide := mustReplace(t, good, "- -log-level=info", "- -log-level=info\n            - -recordings-address=0.0.0.0:8081")
	expectFailure(t, runChecks(t, wide), "must stay on loopback")
	exposed := mustReplace(t, good, "              containerPort: 8080\n", "              containerPort: 8080\n            - name: recordings\n              containerPort: 8081\n")
	expectFailure(t, runChecks(t, exposed), "container port recordings (8081) exposes the recordings listener")
	serviced := mustReplace(t, good, "      targetPort: http\n", "      targetPort: http\n    - name: rec\n      port: 8081\n      targetPort: 8081\n")
	expectFailure(t, runChecks(t, serviced), "Service flagger port rec reaches the recordings listener")
}

func TestFlagsMustBeListedByTheBinary(t *testing.T) {
	c := &checker{}
	r := c.decode([]byte(goodRender))
	c.checkFlagsKnown(r, "Options:\n      --log-level <LOG_LEVEL>\n      --enable-leader-election[=<BOOL>]\n")
	if len(c.failures) > 0 {
		t.Fatalf("flags the help lists were refused: %q", c.failures)
	}
	c = &checker{}
	c.checkFlagsKnown(r, "Options:\n      --log-level-extra <X>\n      --enable-leader-election[=<BOOL>]\n")
	expectFailure(t, c.failures, "passes -log-level, which `flagger run --help` does not list")
}

func TestPresence(t *testing.T) {
	c := &checker{}
	r := c.decode([]byte(goodRender))
	c.checkPresence(r, []string{"Deployment/flagger", "ServiceMonitor"}, []string{"Service"})
	expectFailure(t, c.failures, "expected a rendered ServiceMonitor")
	expectFailure(t, c.failures, "Service/flagger is rendered but must not be")
	if len(c.failures) != 2 {
		t.Fatalf("want exactly the two failures, got %q", c.failures)
	}
}

func TestUnknownKindAndBlankDocuments(t *testing.T) {
	c := &checker{}
	r := c.decode([]byte("# Source: empty template\n---\n" + goodRender + "---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: x\n"))
	if len(r.objects) != 6 {
		t.Fatalf("want 6 objects (comment-only document skipped), got %d", len(r.objects))
	}
	expectFailure(t, c.failures, "unexpected object batch/v1 Job/x")
}
