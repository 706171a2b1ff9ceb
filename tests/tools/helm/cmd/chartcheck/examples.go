// The `examples` check: the manifests in fixtures/examples, as a user would apply them.
//
// Custom resources are validated against the OpenAPI schema of the generated CRDs (the same
// structural schema the API server enforces) and, like `kubectl apply`'s strict field
// validation, an unknown field is an error rather than silently pruned. Built-in objects are
// decoded strictly into their API types. References between the examples (targetRef,
// autoscalerRef, ingressRef, templateRef, providerRef, scaleTargetRef) must resolve.
package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"
)

// crdSchema is the schema of one served version of a CRD.
type crdSchema struct {
	kind, plural string
	namespaced   bool
	schema       *spec.Schema
}

type exampleObject struct {
	file string
	object
}

func (o exampleObject) String() string {
	return fmt.Sprintf("%s: %s %s/%s", o.file, o.kind, o.namespace, o.name)
}

func runExamples(args []string) {
	if len(args) < 2 {
		usage()
	}
	c := &checker{}
	schemas := c.loadCRDs(args[0])
	var objects []exampleObject
	for _, file := range args[1:] {
		objects = append(objects, c.parseExamples(file, readFile(file), schemas)...)
	}
	c.checkExampleRefs(objects)
	c.finish(fmt.Sprintf("%d example objects in %d files", len(objects), len(args)-1))
}

// parseExamples validates each document of one example file and returns the objects.
func (c *checker) parseExamples(file string, data []byte, schemas map[string]crdSchema) []exampleObject {
	var objects []exampleObject
	for i, doc := range splitDocs(data) {
		var tree map[string]any
		if err := yaml.Unmarshal(doc, &tree); err != nil {
			c.fail("%s: document %d does not parse: %v", file, i, err)
			continue
		}
		o := exampleObject{file: file, object: identify(tree, doc)}
		if o.kind == "" || o.name == "" {
			c.fail("%s: document %d lacks kind or metadata.name", file, i)
			continue
		}
		objects = append(objects, o)
		c.validateExample(o, schemas)
	}
	return objects
}

func identify(tree map[string]any, raw []byte) object {
	meta, _ := tree["metadata"].(map[string]any)
	o := object{tree: tree, raw: raw}
	o.kind, _ = tree["kind"].(string)
	o.name, _ = meta["name"].(string)
	o.namespace, _ = meta["namespace"].(string)
	return o
}

func (c *checker) loadCRDs(path string) map[string]crdSchema {
	return c.parseCRDs(path, readFile(path))
}

// parseCRDs returns the schema of every served version, keyed by "group/version Kind".
func (c *checker) parseCRDs(path string, data []byte) map[string]crdSchema {
	out := map[string]crdSchema{}
	for i, doc := range splitDocs(data) {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(doc, &crd); err != nil {
			c.fail("%s: CRD document %d does not decode strictly: %v", path, i, err)
			continue
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			raw, err := json.Marshal(v.Schema.OpenAPIV3Schema)
			if err != nil {
				c.fail("CRD %s: %v", crd.Name, err)
				continue
			}
			var s spec.Schema
			if err := json.Unmarshal(raw, &s); err != nil {
				c.fail("CRD %s %s: schema is not OpenAPI: %v", crd.Name, v.Name, err)
				continue
			}
			out[crd.Spec.Group+"/"+v.Name+" "+crd.Spec.Names.Kind] = crdSchema{
				kind:       crd.Spec.Names.Kind,
				plural:     crd.Spec.Names.Plural,
				namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
				schema:     &s,
			}
		}
	}
	for _, want := range []string{"Canary", "MetricTemplate", "AlertProvider"} {
		if _, ok := out["flagger.app/v1beta1 "+want]; !ok {
			c.fail("%s: no served flagger.app/v1beta1 %s", path, want)
		}
	}
	return out
}

func (c *checker) validateExample(o exampleObject, schemas map[string]crdSchema) {
	api, _ := o.tree["apiVersion"].(string)
	if s, ok := schemas[api+" "+o.kind]; ok {
		if s.namespaced && o.namespace == "" {
			c.fail("%s: set metadata.namespace so the example applies where its references are", o)
		}
		body := map[string]any{}
		for k, v := range o.tree {
			if k != "apiVersion" && k != "kind" && k != "metadata" {
				body[k] = v
			}
		}
		res := validate.NewSchemaValidator(s.schema, nil, "", strfmt.Default).Validate(body)
		for _, err := range res.Errors {
			c.fail("%s: %v", o, err)
		}
		for _, path := range unknownFields(s.schema, body, "") {
			c.fail("%s: unknown field %s", o, path)
		}
		return
	}
	var err error
	switch api + " " + o.kind {
	case "v1 Namespace":
		err = yaml.UnmarshalStrict(o.raw, &corev1.Namespace{})
	case "v1 Secret":
		err = yaml.UnmarshalStrict(o.raw, &corev1.Secret{})
	case "v1 ConfigMap":
		err = yaml.UnmarshalStrict(o.raw, &corev1.ConfigMap{})
	case "v1 Service":
		err = yaml.UnmarshalStrict(o.raw, &corev1.Service{})
	case "apps/v1 Deployment":
		err = yaml.UnmarshalStrict(o.raw, &appsv1.Deployment{})
	case "autoscaling/v2 HorizontalPodAutoscaler":
		err = yaml.UnmarshalStrict(o.raw, &autoscalingv2.HorizontalPodAutoscaler{})
	case "networking.k8s.io/v1 Ingress":
		err = yaml.UnmarshalStrict(o.raw, &networkingv1.Ingress{})
	default:
		c.fail("%s: %s is neither a Flagger kind nor a built-in kind the examples use", o, api)
		return
	}
	if err != nil {
		c.fail("%s: does not decode strictly: %v", o, err)
	}
}

// unknownFields lists the fields of value that schema does not declare, where the schema
// closes the object (properties given, no additionalProperties, no
// x-kubernetes-preserve-unknown-fields).
func unknownFields(schema *spec.Schema, value any, path string) []string {
	if schema == nil {
		return nil
	}
	if preserve, _ := schema.Extensions.GetBool("x-kubernetes-preserve-unknown-fields"); preserve {
		return nil
	}
	var out []string
	switch v := value.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			child := path + "." + k
			if prop, ok := schema.Properties[k]; ok {
				out = append(out, unknownFields(&prop, v[k], child)...)
			} else if ap := schema.AdditionalProperties; ap != nil && ap.Schema != nil {
				out = append(out, unknownFields(ap.Schema, v[k], child)...)
			} else if len(schema.Properties) > 0 && (ap == nil || !ap.Allows) {
				out = append(out, strings.TrimPrefix(child, "."))
			}
		}
	case []any:
		if schema.Items != nil && schema.Items.Schema != nil {
			for i, item := range v {
				out = append(out, unknownFields(schema.Items.Schema, item, fmt.Sprintf("%s[%d]", path, i))...)
			}
		}
	}
	return out
}

// lookup returns the value at a dotted path of a manifest tree.
func lookup(tree map[string]any, path string) any {
	var cur any = tree
	for _, key := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[key]
	}
	return cur
}

func str(v any) string { s, _ := v.(string); return s }

func (c *checker) checkExampleRefs(objects []exampleObject) {
	exists := func(kind, namespace, name string) bool {
		return slices.ContainsFunc(objects, func(o exampleObject) bool {
			return o.kind == kind && o.namespace == namespace && o.name == name
		})
	}
	ref := func(o exampleObject, what, kind string, r any) {
		m, _ := r.(map[string]any)
		if m == nil {
			return
		}
		ns := str(m["namespace"])
		if ns == "" {
			ns = o.namespace
		}
		if k := str(m["kind"]); k != "" && k != kind {
			c.fail("%s: %s has kind %s, want %s", o, what, k, kind)
		}
		if !exists(kind, ns, str(m["name"])) {
			c.fail("%s: %s names %s %s/%s, which no example defines", o, what, kind, ns, str(m["name"]))
		}
	}
	canaries := 0
	for _, o := range objects {
		switch o.kind {
		case "Canary":
			canaries++
			ref(o, "spec.targetRef", "Deployment", lookup(o.tree, "spec.targetRef"))
			ref(o, "spec.autoscalerRef", "HorizontalPodAutoscaler", lookup(o.tree, "spec.autoscalerRef"))
			ref(o, "spec.ingressRef", "Ingress", lookup(o.tree, "spec.ingressRef"))
			metrics, _ := lookup(o.tree, "spec.analysis.metrics").([]any)
			for _, m := range metrics {
				mm, _ := m.(map[string]any)
				ref(o, "metric "+str(mm["name"])+" templateRef", "MetricTemplate", mm["templateRef"])
			}
			alerts, _ := lookup(o.tree, "spec.analysis.alerts").([]any)
			for _, a := range alerts {
				am, _ := a.(map[string]any)
				ref(o, "alert "+str(am["name"])+" providerRef", "AlertProvider", am["providerRef"])
			}
		case "HorizontalPodAutoscaler":
			ref(o, "spec.scaleTargetRef", "Deployment", lookup(o.tree, "spec.scaleTargetRef"))
		}
	}
	if canaries == 0 {
		c.fail("the examples define no Canary")
	}
}
