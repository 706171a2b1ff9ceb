// The `render` check: the output of `helm template charts/flagger`.
//
// Every built-in object is decoded strictly into its Kubernetes API type (an unknown or
// misspelled field is an error, as the API server's strict field validation would report), and
// the checks cover what the operator and its users rely on: the hardened pod, the probes, flags
// the binary accepts, RBAC that grants nothing broad, bindings that point at rendered objects,
// and a Lease grant exactly when leader election or sharding is on.
package main

import (
	"flag"
	"fmt"
	"os"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// object is one rendered manifest: its identity plus the generic tree.
type object struct {
	kind, name, namespace string
	tree                  map[string]any
	raw                   []byte
}

// rendered holds the typed objects the checks look at.
type rendered struct {
	objects         []object
	deployments     []appsv1.Deployment
	services        []corev1.Service
	serviceAccounts []corev1.ServiceAccount
	clusterRoles    []rbacv1.ClusterRole
	roles           []rbacv1.Role
	crBindings      []rbacv1.ClusterRoleBinding
	roleBindings    []rbacv1.RoleBinding
}

func runRender(args []string) {
	fs := flag.NewFlagSet("render", flag.ExitOnError)
	var helpText string
	var require, absent listFlag
	fs.StringVar(&helpText, "help-text", "", "file with `flagger run --help` output; every rendered flag must appear in it")
	fs.Var(&require, "require", "KIND or KIND/NAME that must be rendered (repeatable)")
	fs.Var(&absent, "absent", "KIND that must not be rendered (repeatable)")
	argsOut := fs.String("args-out", "", "write the operator container's args to this file, one per line")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	c := &checker{}
	r := c.decode(readFile(fs.Arg(0)))
	c.checkPresence(r, require, absent)
	c.checkDeployments(r)
	if helpText != "" {
		c.checkFlagsKnown(r, string(readFile(helpText)))
	}
	c.checkRBAC(r)
	c.checkLeaderElection(r)
	c.checkConfigTracking(r)
	c.checkServiceAndMonitors(r)
	c.checkRecording(r)
	if *argsOut != "" {
		if _, ct := c.operatorContainer(r); ct != nil {
			for _, a := range ct.Args {
				if strings.ContainsAny(a, "\n\x00") {
					c.fail("arg %q contains a line break", a)
				}
			}
			if err := os.WriteFile(*argsOut, []byte(strings.Join(ct.Args, "\n")+"\n"), 0o644); err != nil {
				c.fail("writing %s: %v", *argsOut, err)
			}
		}
	}
	kinds := map[string]int{}
	for _, o := range r.objects {
		kinds[o.kind]++
	}
	var summary []string
	for k, n := range kinds {
		summary = append(summary, fmt.Sprintf("%s×%d", k, n))
	}
	slices.Sort(summary)
	c.finish(fmt.Sprintf("%d objects (%s)", len(r.objects), strings.Join(summary, ", ")))
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocs splits a multi-document YAML stream, dropping documents that hold only comments
// and whitespace (helm emits those for templates whose condition is false).
func splitDocs(data []byte) [][]byte {
	var out [][]byte
	for _, doc := range docSeparator.Split(string(data), -1) {
		if !isBlank(doc) {
			out = append(out, []byte(doc))
		}
	}
	return out
}

func isBlank(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		t := strings.TrimSpace(line)
		if t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

func (c *checker) decode(data []byte) *rendered {
	r := &rendered{}
	for i, raw := range splitDocs(data) {
		var tree map[string]any
		if err := yaml.Unmarshal(raw, &tree); err != nil {
			c.fail("document %d does not parse: %v", i, err)
			continue
		}
		o := identify(tree, raw)
		api, _ := tree["apiVersion"].(string)
		if api == "" || o.kind == "" || o.name == "" {
			c.fail("document %d lacks apiVersion, kind or metadata.name", i)
			continue
		}
		r.objects = append(r.objects, o)
		c.decodeTyped(r, o, api)
	}
	if len(r.objects) == 0 {
		c.fail("nothing was rendered")
	}
	return r
}

func strict[T any](c *checker, o object, into *T) bool {
	if err := yaml.UnmarshalStrict(o.raw, into); err != nil {
		c.fail("%s/%s does not decode strictly: %v", o.kind, o.name, err)
		return false
	}
	return true
}

func (c *checker) decodeTyped(r *rendered, o object, api string) {
	id := api + " " + o.kind
	switch id {
	case "apps/v1 Deployment":
		var d appsv1.Deployment
		if strict(c, o, &d) {
			r.deployments = append(r.deployments, d)
		}
	case "v1 Service":
		var s corev1.Service
		if strict(c, o, &s) {
			r.services = append(r.services, s)
		}
	case "v1 ServiceAccount":
		var s corev1.ServiceAccount
		if strict(c, o, &s) {
			r.serviceAccounts = append(r.serviceAccounts, s)
		}
	case "v1 Secret":
		var s corev1.Secret
		strict(c, o, &s)
	case "v1 ConfigMap":
		var m corev1.ConfigMap
		strict(c, o, &m)
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		var cr rbacv1.ClusterRole
		if strict(c, o, &cr) {
			r.clusterRoles = append(r.clusterRoles, cr)
		}
	case "rbac.authorization.k8s.io/v1 Role":
		var ro rbacv1.Role
		if strict(c, o, &ro) {
			r.roles = append(r.roles, ro)
		}
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		var b rbacv1.ClusterRoleBinding
		if strict(c, o, &b) {
			r.crBindings = append(r.crBindings, b)
		}
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		var b rbacv1.RoleBinding
		if strict(c, o, &b) {
			r.roleBindings = append(r.roleBindings, b)
		}
	case "apiextensions.k8s.io/v1 CustomResourceDefinition":
		var crd apiextensionsv1.CustomResourceDefinition
		if strict(c, o, &crd) && crd.Spec.Group != "flagger.app" {
			c.fail("the chart ships CRD %s, which is not one of Flagger's", crd.Name)
		}
	case "monitoring.coreos.com/v1 ServiceMonitor", "monitoring.coreos.com/v1 PodMonitor":
		// No Go types in this module: checked structurally in checkServiceAndMonitors.
	default:
		c.fail("unexpected object %s %s/%s: the check does not know this kind", api, o.kind, o.name)
	}
}

func (c *checker) checkPresence(r *rendered, require, absent []string) {
	for _, want := range require {
		kind, name, _ := strings.Cut(want, "/")
		if !slices.ContainsFunc(r.objects, func(o object) bool {
			return o.kind == kind && (name == "" || o.name == name)
		}) {
			c.fail("expected a rendered %s", want)
		}
	}
	for _, kind := range absent {
		for _, o := range r.objects {
			if o.kind == kind {
				c.fail("%s/%s is rendered but must not be", o.kind, o.name)
			}
		}
	}
}

var goFlag = regexp.MustCompile(`^-([a-z0-9][a-z0-9-]*)=(.*)$`)

// operatorContainer returns the single Deployment's flagger container, or nil after failing.
func (c *checker) operatorContainer(r *rendered) (*appsv1.Deployment, *corev1.Container) {
	if len(r.deployments) != 1 {
		c.fail("want exactly one Deployment, got %d", len(r.deployments))
		return nil, nil
	}
	d := &r.deployments[0]
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "flagger" {
		c.fail("Deployment %s: want one container named flagger", d.Name)
		return d, nil
	}
	return d, &cs[0]
}

// flagValues maps each -flag of the operator's args to its value.
func flagValues(ct *corev1.Container) map[string]string {
	out := map[string]string{}
	for _, a := range ct.Args[1:] {
		if m := goFlag.FindStringSubmatch(a); m != nil {
			out[m[1]] = m[2]
		}
	}
	return out
}

func (c *checker) checkDeployments(r *rendered) {
	d, ct := c.operatorContainer(r)
	if ct == nil {
		return
	}
	pod := d.Spec.Template.Spec
	ps := pod.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
		c.fail("pod securityContext.runAsNonRoot must be true")
	}
	if ps == nil || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		c.fail("pod securityContext.seccompProfile must be RuntimeDefault")
	}
	sc := ct.SecurityContext
	switch {
	case sc == nil:
		c.fail("container securityContext missing")
	default:
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			c.fail("container runAsNonRoot must be true")
		}
		if sc.RunAsUser == nil || *sc.RunAsUser != 10001 {
			c.fail("container runAsUser must be 10001 (the image's user)")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			c.fail("container readOnlyRootFilesystem must be true")
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			c.fail("container allowPrivilegeEscalation must be false")
		}
		if sc.Privileged != nil && *sc.Privileged {
			c.fail("container must not be privileged")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			c.fail("container must drop ALL capabilities and add none")
		}
		if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			c.fail("container seccompProfile must be RuntimeDefault")
		}
	}
	port := slices.IndexFunc(ct.Ports, func(p corev1.ContainerPort) bool { return p.Name == "http" })
	if port < 0 || ct.Ports[port].ContainerPort != 8080 {
		c.fail("container must expose port 8080 named http (the operator's -port default)")
	}
	checkProbe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			c.fail("%s must be an httpGet probe (the image has no shell or wget)", what)
			return
		}
		if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "http" {
			c.fail("%s must GET %s on port http, got %s on %s", what, path, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}
	checkProbe("livenessProbe", ct.LivenessProbe, "/healthz")
	checkProbe("readinessProbe", ct.ReadinessProbe, "/readyz")
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := ct.Resources.Requests[res]; !ok {
			c.fail("container must request %s", res)
		}
		if _, ok := ct.Resources.Limits[res]; !ok {
			c.fail("container must limit %s", res)
		}
	}
	if len(ct.Args) == 0 || ct.Args[0] != "run" {
		c.fail("container args must start with the run subcommand, got %q", ct.Args)
		return
	}
	for _, a := range ct.Args[1:] {
		if !goFlag.MatchString(a) {
			c.fail("arg %q is not in the -flag=value form the chart promises", a)
		}
	}
	if sa := pod.ServiceAccountName; len(r.serviceAccounts) > 0 &&
		!slices.ContainsFunc(r.serviceAccounts, func(s corev1.ServiceAccount) bool { return s.Name == sa }) {
		c.fail("Deployment runs as ServiceAccount %q, which is not rendered", sa)
	}
	if pod.AutomountServiceAccountToken != nil && !*pod.AutomountServiceAccountToken {
		c.fail("the operator needs its ServiceAccount token mounted")
	}
}

// checkRecording: with -record-traces=DIR the pod mounts a volume at exactly DIR (the root
// filesystem is read-only, so that is the only place the recorder can write), and the
// recordings listener (-recordings-address, 127.0.0.1:8081 by default) stays on loopback and
// off the container's ports and the Service: recordings hold Canary specs and every metric and
// webhook answer, and reach users through `kubectl port-forward`, which the API server
// authorizes.
func (c *checker) checkRecording(r *rendered) {
	d, ct := c.operatorContainer(r)
	if ct == nil || len(ct.Args) == 0 {
		return
	}
	flags := flagValues(ct)
	addr, ok := flags["recordings-address"]
	if !ok {
		addr = "127.0.0.1:8081"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		c.fail("-recordings-address=%s is not IP:PORT", addr)
		return
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		c.fail("-recordings-address=%s must stay on loopback (recordings are fetched through kubectl port-forward)", addr)
	}
	for _, p := range ct.Ports {
		if strconv.Itoa(int(p.ContainerPort)) == port {
			c.fail("container port %s (%d) exposes the recordings listener", p.Name, p.ContainerPort)
		}
	}
	for _, s := range r.services {
		for _, p := range s.Spec.Ports {
			if p.TargetPort.String() == port || strconv.Itoa(int(p.Port)) == port {
				c.fail("Service %s port %s reaches the recordings listener", s.Name, p.Name)
			}
		}
	}
	dir, on := flags["record-traces"]
	if !on {
		return
	}
	mount := slices.IndexFunc(ct.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir })
	if mount < 0 {
		c.fail("-record-traces=%s but no volume is mounted there (the root filesystem is read-only)", dir)
		return
	}
	m := ct.VolumeMounts[mount]
	if m.ReadOnly {
		c.fail("the recording volume at %s is mounted read-only", dir)
	}
	if !slices.ContainsFunc(d.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
		c.fail("volumeMount %s at %s names no pod volume", m.Name, dir)
	}
}

// checkFlagsKnown compares the rendered flags with the binary's own help text, where each flag
// is listed as --name.
func (c *checker) checkFlagsKnown(r *rendered, help string) {
	_, ct := c.operatorContainer(r)
	if ct == nil || len(ct.Args) == 0 {
		return
	}
	for name := range flagValues(ct) {
		if !regexp.MustCompile(`(^|[\s,])--` + regexp.QuoteMeta(name) + `([\s=<\[,]|$)`).MatchString(help) {
			c.fail("the chart passes -%s, which `flagger run --help` does not list", name)
		}
	}
}

var broadVerbs = []string{"*", "delete", "deletecollection", "escalate", "bind", "impersonate"}

func (c *checker) checkRules(owner string, rules []rbacv1.PolicyRule) {
	for _, rule := range rules {
		if len(rule.NonResourceURLs) > 0 {
			c.fail("%s grants non-resource URLs %v", owner, rule.NonResourceURLs)
		}
		for _, v := range rule.Verbs {
			if slices.Contains(broadVerbs, v) {
				c.fail("%s grants verb %q on %v", owner, v, rule.Resources)
			}
		}
		if slices.Contains(rule.Resources, "*") || slices.Contains(rule.APIGroups, "*") {
			c.fail("%s grants a wildcard (groups %v, resources %v)", owner, rule.APIGroups, rule.Resources)
		}
		for _, res := range rule.Resources {
			if res == "pods/exec" || res == "nodes" || res == "clusterroles" || res == "roles" {
				c.fail("%s grants %s, which the operator never uses", owner, res)
			}
		}
	}
}

func (c *checker) checkRBAC(r *rendered) {
	for _, cr := range r.clusterRoles {
		c.checkRules("ClusterRole "+cr.Name, cr.Rules)
		if cr.AggregationRule != nil {
			c.fail("ClusterRole %s must not aggregate other roles", cr.Name)
		}
	}
	for _, ro := range r.roles {
		c.checkRules("Role "+ro.Namespace+"/"+ro.Name, ro.Rules)
	}
	// With serviceAccount.create=false the ServiceAccount exists beforehand: then the bindings
	// must name the one the Deployment runs as.
	external := ""
	if len(r.serviceAccounts) == 0 && len(r.deployments) == 1 {
		external = r.deployments[0].Spec.Template.Spec.ServiceAccountName
	}
	hasSA := func(s rbacv1.Subject) bool {
		if s.Kind != "ServiceAccount" {
			return false
		}
		if external != "" {
			return s.Name == external && s.Namespace == r.deployments[0].Namespace
		}
		return slices.ContainsFunc(r.serviceAccounts, func(sa corev1.ServiceAccount) bool {
			return sa.Name == s.Name && sa.Namespace == s.Namespace
		})
	}
	for _, b := range r.crBindings {
		if b.RoleRef.Kind != "ClusterRole" || !slices.ContainsFunc(r.clusterRoles, func(cr rbacv1.ClusterRole) bool { return cr.Name == b.RoleRef.Name }) {
			c.fail("ClusterRoleBinding %s refers to %s %s, which is not rendered", b.Name, b.RoleRef.Kind, b.RoleRef.Name)
		}
		for _, s := range b.Subjects {
			if !hasSA(s) {
				c.fail("ClusterRoleBinding %s binds %s %s/%s, which is not rendered", b.Name, s.Kind, s.Namespace, s.Name)
			}
		}
	}
	for _, b := range r.roleBindings {
		if b.RoleRef.Kind != "Role" || !slices.ContainsFunc(r.roles, func(ro rbacv1.Role) bool {
			return ro.Name == b.RoleRef.Name && ro.Namespace == b.Namespace
		}) {
			c.fail("RoleBinding %s/%s refers to %s %s, which is not rendered in its namespace", b.Namespace, b.Name, b.RoleRef.Kind, b.RoleRef.Name)
		}
		for _, s := range b.Subjects {
			if !hasSA(s) {
				c.fail("RoleBinding %s/%s binds %s %s/%s, which is not rendered", b.Namespace, b.Name, s.Kind, s.Namespace, s.Name)
			}
		}
	}
	// The operator's own calls: status writes, generated objects, events.
	need := []struct{ group, resource, verb string }{
		{"flagger.app", "canaries", "watch"},
		{"flagger.app", "canaries/status", "patch"},
		{"flagger.app", "metrictemplates", "get"},
		{"flagger.app", "alertproviders", "get"},
		{"apps", "deployments", "create"},
		{"", "services", "create"},
		{"autoscaling", "horizontalpodautoscalers", "create"},
		{"networking.k8s.io", "ingresses", "watch"},
		{"networking.k8s.io", "ingresses", "create"},
		{"networking.k8s.io", "ingresses", "patch"},
		{"", "events", "create"},
		{"", "events", "patch"},
		{"", "secrets", "get"},
	}
	if len(r.clusterRoles) > 0 {
		for _, n := range need {
			if !grants(r.clusterRoles[0].Rules, n.group, n.resource, n.verb, "") {
				c.fail("ClusterRole %s lacks %s on %s.%s", r.clusterRoles[0].Name, n.verb, n.resource, n.group)
			}
		}
	}
}

func grants(rules []rbacv1.PolicyRule, group, resource, verb, name string) bool {
	return slices.ContainsFunc(rules, func(rule rbacv1.PolicyRule) bool {
		return slices.Contains(rule.APIGroups, group) && slices.Contains(rule.Resources, resource) &&
			slices.Contains(rule.Verbs, verb) && (len(rule.ResourceNames) == 0 || slices.Contains(rule.ResourceNames, name))
	})
}

// checkLeaderElection: with -enable-leader-election=true the ServiceAccount must be able to take
// the Lease in the namespace the operator uses (its -namespace if scoped, else
// -leader-election-namespace); with -shards=N it must be able to list and take any Lease there, and N must cover the replicas; with neither, nothing may grant Leases at all.
func (c *checker) checkLeaderElection(r *rendered) {
	d, ct := c.operatorContainer(r)
	if ct == nil || len(ct.Args) == 0 {
		return
	}
	flags := flagValues(ct)
	on := flags["enable-leader-election"] == "true"
	shards, _ := strconv.Atoi(flags["shards"])
	sharded := shards > 0
	mentionsLeases := func(rules []rbacv1.PolicyRule) bool {
		return slices.ContainsFunc(rules, func(rule rbacv1.PolicyRule) bool { return slices.Contains(rule.Resources, "leases") })
	}
	for _, cr := range r.clusterRoles {
		if mentionsLeases(cr.Rules) {
			c.fail("ClusterRole %s grants Leases cluster-wide; a Role in the Lease namespace is enough", cr.Name)
		}
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	if on && sharded {
		c.fail("-enable-leader-election and -shards exclude each other")
	}
	if sharded && int(replicas) > shards {
		c.fail("-shards=%d is below the %d replicas: some would have nothing to do", shards, replicas)
	}
	if !on && !sharded {
		for _, ro := range r.roles {
			if mentionsLeases(ro.Rules) {
				c.fail("Role %s/%s grants Leases but neither leader election nor sharding is on", ro.Namespace, ro.Name)
			}
		}
		if replicas != 1 {
			c.fail("without leader election the Deployment must run exactly 1 replica, got %d", replicas)
		}
		if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			c.fail("without leader election the Deployment must use the Recreate strategy so two operators never overlap")
		}
		return
	}
	ns := flags["namespace"]
	if ns == "" {
		ns = flags["leader-election-namespace"]
	}
	if ns == "" {
		ns = "kube-system"
	}
	sa := d.Spec.Template.Spec.ServiceAccountName
	// Shard Leases by index, membership Leases by pod name: any name must be granted.
	lease, verbs, what := "flagger-leader-election", []string{"get", "create", "update"}, "leader election is on"
	if sharded {
		lease, verbs, what = "flagger-member-any-pod", []string{"get", "list", "create", "update"}, "sharding is on"
	}
	for _, verb := range verbs {
		ok := slices.ContainsFunc(r.roleBindings, func(b rbacv1.RoleBinding) bool {
			if b.Namespace != ns || !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
				return s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == d.Namespace
			}) {
				return false
			}
			return slices.ContainsFunc(r.roles, func(ro rbacv1.Role) bool {
				return ro.Namespace == ns && ro.Name == b.RoleRef.Name &&
					grants(ro.Rules, "coordination.k8s.io", "leases", verb, lease)
			})
		})
		if !ok {
			c.fail("%s but ServiceAccount %s cannot %s the Leases in namespace %s", what, sa, verb, ns)
		}
	}
}

// checkConfigTracking: with -enable-config-tracking the operator watches ConfigMaps and Secrets
// and writes their -primary copies; without it, it only reads the Secrets that MetricTemplates
// and AlertProviders reference, and the role must not grant more.
func (c *checker) checkConfigTracking(r *rendered) {
	_, ct := c.operatorContainer(r)
	if ct == nil || len(ct.Args) == 0 || len(r.clusterRoles) != 1 {
		return
	}
	on := flagValues(ct)["enable-config-tracking"] != "false"
	rules := r.clusterRoles[0].Rules
	for _, res := range []string{"configmaps", "secrets"} {
		for _, verb := range []string{"list", "watch", "create", "patch"} {
			if got := grants(rules, "", res, verb, ""); got != on {
				c.fail("config tracking is %v but the ClusterRole %s %s on %s",
					map[bool]string{true: "on", false: "off"}[on], map[bool]string{true: "grants", false: "lacks"}[got], verb, res)
			}
		}
	}
	if !on && grants(rules, "", "configmaps", "get", "") {
		c.fail("config tracking is off but the ClusterRole still reads ConfigMaps")
	}
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func (c *checker) checkServiceAndMonitors(r *rendered) {
	if len(r.deployments) != 1 {
		return
	}
	d := r.deployments[0]
	podLabels := d.Spec.Template.Labels
	if !matches(d.Spec.Selector.MatchLabels, podLabels) {
		c.fail("Deployment selector does not match its own pod labels")
	}
	if len(r.services) != 1 {
		c.fail("want exactly one Service (for /metrics), got %d", len(r.services))
		return
	}
	svc := r.services[0]
	if !matches(svc.Spec.Selector, podLabels) {
		c.fail("Service %s does not select the operator's pods", svc.Name)
	}
	if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
		return p.Name == "http" && p.TargetPort.String() == "http"
	}) {
		c.fail("Service %s must expose a port named http targeting the container's http port", svc.Name)
	}
	for _, o := range r.objects {
		if o.kind != "ServiceMonitor" && o.kind != "PodMonitor" {
			continue
		}
		spec, _ := o.tree["spec"].(map[string]any)
		sel, _ := spec["selector"].(map[string]any)
		ml := map[string]string{}
		if m, ok := sel["matchLabels"].(map[string]any); ok {
			for k, v := range m {
				ml[k], _ = v.(string)
			}
		}
		target, endpointsKey := svc.Labels, "endpoints"
		if o.kind == "PodMonitor" {
			target, endpointsKey = podLabels, "podMetricsEndpoints"
		}
		if !matches(ml, target) {
			c.fail("%s %s does not select the operator's %s", o.kind, o.name, map[bool]string{true: "pods", false: "Service"}[o.kind == "PodMonitor"])
		}
		eps, _ := spec[endpointsKey].([]any)
		okPort := slices.ContainsFunc(eps, func(e any) bool {
			m, _ := e.(map[string]any)
			return m["port"] == "http" && (m["path"] == nil || m["path"] == "/metrics")
		})
		if !okPort {
			c.fail("%s %s must scrape port http at /metrics", o.kind, o.name)
		}
	}
}
