package main

import (
	"strings"
	"testing"
)

// testCRDs: the three Flagger kinds with a small Canary schema in the shape `flagger crd`
// generates (nullable fields, a oneOf over the analysis, an open map, an open object).
const testCRDs = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: canaries.flagger.app
spec:
  group: flagger.app
  names: {kind: Canary, plural: canaries}
  scope: Namespaced
  versions:
    - name: v1beta1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [targetRef]
              properties:
                targetRef:
                  type: object
                  required: [name]
                  properties:
                    apiVersion: {type: string, nullable: true}
                    kind: {type: string, nullable: true}
                    name: {type: string}
                ingressRef:
                  type: object
                  nullable: true
                  required: [name]
                  properties:
                    apiVersion: {type: string, nullable: true}
                    kind: {type: string, nullable: true}
                    name: {type: string}
                service:
                  type: object
                  properties:
                    port: {type: integer}
                    trafficPolicy:
                      type: object
                      x-kubernetes-preserve-unknown-fields: true
                analysis:
                  type: object
                  nullable: true
                  oneOf:
                    - required: [interval, threshold, iterations]
                    - required: [interval, threshold, stepWeight]
                  properties:
                    interval: {type: string, nullable: true}
                    threshold: {type: integer, nullable: true}
                    iterations: {type: integer, nullable: true}
                    stepWeight: {type: integer, nullable: true, maximum: 100}
                    metrics:
                      type: array
                      nullable: true
                      items:
                        type: object
                        required: [name]
                        properties:
                          name: {type: string}
                          templateRef:
                            type: object
                            nullable: true
                            properties:
                              name: {type: string}
                              namespace: {type: string, nullable: true}
                          templateVariables:
                            type: object
                            nullable: true
                            additionalProperties: {type: string}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: metrictemplates.flagger.app
spec:
  group: flagger.app
  names: {kind: MetricTemplate, plural: metrictemplates}
  scope: Namespaced
  versions:
    - name: v1beta1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                query: {type: string}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: alertproviders.flagger.app
spec:
  group: flagger.app
  names: {kind: AlertProvider, plural: alertproviders}
  scope: Namespaced
  versions:
    - name: v1beta1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                type: {type: string}
`

const goodExamples = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: test
spec:
  selector:
    matchLabels: {app: app}
  template:
    metadata:
      labels: {app: app}
    spec:
      containers:
        - name: app
          image: example/app:1
---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: errors
  namespace: test
spec:
  query: "sum(rate(x[{{ interval }}]))"
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: test
spec:
  rules:
    - http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service: {name: app, port: {number: 80}}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: app
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: app
  ingressRef:
    apiVersion: networking.k8s.io/v1
    kind: Ingress
    name: web
  service:
    port: 80
    trafficPolicy:
      tls: {mode: DISABLE}
  analysis:
    interval: 1m
    threshold: 5
    stepWeight: 10
    metrics:
      - name: errors
        templateRef: {name: errors}
        templateVariables: {reporter: destination}
`

func checkExamples(t *testing.T, examples string) []string {
	t.Helper()
	c := &checker{}
	schemas := c.parseCRDs("crds.yaml", []byte(testCRDs))
	if len(c.failures) > 0 {
		t.Fatalf("test CRDs rejected: %q", c.failures)
	}
	objects := c.parseExamples("examples.yaml", []byte(examples), schemas)
	c.checkExampleRefs(objects)
	return c.failures
}

func TestGoodExamplesPass(t *testing.T) {
	if f := checkExamples(t, goodExamples); len(f) > 0 {
		t.Fatalf("unexpected failures: %q", f)
	}
}

func TestBrokenExamplesAreRejected(t *testing.T) {
	cases := []struct{ name, old, new, want string }{
		{"misspelled field", "stepWeight: 10", "stepWeigth: 10", "unknown field spec.analysis.stepWeigth"},
		{"neither stepWeight nor iterations", "stepWeight: 10", "maxWeight: 50", "oneOf"},
		{"wrong type", "threshold: 5", `threshold: "five"`, "spec.analysis.threshold in body must be of type integer"},
		{"out of range", "stepWeight: 10", "stepWeight: 150", "spec.analysis.stepWeight"},
		{"unknown field in a list item", "- name: errors\n", "- name: errors\n        thresold: 1\n", "unknown field spec.analysis.metrics[0].thresold"},
		{"missing target name", "    kind: Deployment\n    name: app\n", "    kind: Deployment\n", "spec.targetRef.name in body is required"},
		{"dangling targetRef", "    kind: Deployment\n    name: app\n", "    kind: Deployment\n    name: other\n", "names Deployment test/other, which no example defines"},
		{"dangling ingressRef", "    kind: Ingress\n    name: web\n", "    kind: Ingress\n    name: api\n", "names Ingress test/api, which no example defines"},
		{"Ingress with a typo", "pathType: Prefix", "pathTyp: Prefix", "does not decode strictly"},
		{"dangling templateRef", "templateRef: {name: errors}", "templateRef: {name: latency}", "names MetricTemplate test/latency"},
		{"template in another namespace", "templateRef: {name: errors}", "templateRef: {name: errors, namespace: prod}", "names MetricTemplate prod/errors"},
		{"no namespace", "  name: errors\n  namespace: test\n", "  name: errors\n", "set metadata.namespace"},
		{"built-in with a typo", "      containers:", "      contaners:", "does not decode strictly"},
		{"unsupported kind", "apiVersion: apps/v1\nkind: Deployment", "apiVersion: apps/v1\nkind: StatefulSet", "neither a Flagger kind nor a built-in kind"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			expectFailure(t, checkExamples(t, mustReplace(t, goodExamples, tc.old, tc.new)), tc.want)
		})
	}
}

func TestOpenObjectsAcceptAnyField(t *testing.T) {
	// trafficPolicy preserves unknown fields and templateVariables is a string map: neither
	// may be reported as unknown.
	open := mustReplace(t, goodExamples, "tls: {mode: DISABLE}", "tls: {mode: DISABLE}\n      loadBalancer: {simple: ROUND_ROBIN}")
	open = mustReplace(t, open, "{reporter: destination}", "{reporter: destination, anything: goes}")
	if f := checkExamples(t, open); len(f) > 0 {
		t.Fatalf("open objects were checked for unknown fields: %q", f)
	}
}

func TestCRDsMustDefineEveryFlaggerKind(t *testing.T) {
	c := &checker{}
	onlyCanary := strings.SplitN(testCRDs, "\n---\n", 2)[0]
	c.parseCRDs("crds.yaml", []byte(onlyCanary))
	expectFailure(t, c.failures, "no served flagger.app/v1beta1 MetricTemplate")
	expectFailure(t, c.failures, "no served flagger.app/v1beta1 AlertProvider")
}
