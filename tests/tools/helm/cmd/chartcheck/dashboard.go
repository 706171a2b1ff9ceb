// The `dashboard` check: the Grafana dashboard over the operator's and the mesh's metrics.
//
// Grafana imports almost any JSON and shows empty panels for mistakes, so the check looks for
// what would make a panel silently empty: a query with unbalanced brackets, a variable that is
// not defined, a panel without a query or a layout, duplicate panel ids, and an operator metric
// that no panel shows.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Metrics the dashboard must show: every series the operator exports for canaries, plus the
// mesh telemetry the analysis reads.
var dashboardMetrics = []string{
	"flagger_canary_weight",
	"flagger_canary_status",
	"flagger_canary_duration_seconds",
	"flagger_canary_metric_analysis",
	"flagger_canary_successes_total",
	"flagger_canary_failures_total",
	"flagger_kube_requests_total",
	"istio_requests_total",
	"istio_request_duration_milliseconds_bucket",
}

// Variables Grafana defines itself.
var grafanaBuiltins = []string{"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s", "__dashboard"}

var variableRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// variableName is the name in a variableRef match ($name or ${name}).
func variableName(m []string) string { return m[1] + m[2] }

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int            `json:"id"`
	Type    string         `json:"type"`
	Title   string         `json:"title"`
	GridPos map[string]int `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func runDashboard(args []string) {
	fs := flag.NewFlagSet("dashboard", flag.ExitOnError)
	rulesOut := fs.String("rules-out", "", "also write every query, variables substituted, as a Prometheus rules file (for `promtool check rules`)")
	configMap := fs.String("configmap", "", "rendered charts/grafana output whose ConfigMap must carry the dashboard unchanged")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		usage()
	}
	c := &checker{}
	source := readFile(fs.Arg(0))
	if *configMap != "" {
		c.checkShipped(*configMap, filepath.Base(fs.Arg(0)), source)
	}
	summary, exprs := c.checkDashboard(source)
	if *rulesOut != "" {
		if err := writeRules(*rulesOut, exprs); err != nil {
			c.fail("writing %s: %v", *rulesOut, err)
		}
	}
	c.finish(summary)
}

// checkDashboard checks the dashboard JSON; it returns a summary and every panel query.
func (c *checker) checkDashboard(source []byte) (string, []string) {
	var d dashboard
	if err := json.Unmarshal(source, &d); err != nil {
		c.fail("not valid dashboard JSON: %v", err)
		return "", nil
	}
	if d.Title == "" || d.UID == "" {
		c.fail("the dashboard needs a title and a uid (Grafana's provisioning keys on the uid)")
	}
	defined := slices.Clone(grafanaBuiltins)
	for _, v := range d.Templating.List {
		defined = append(defined, v.Name)
		if q, _ := v.Query.(string); v.Type == "query" && q == "" {
			if m, ok := v.Query.(map[string]any); !ok || m["query"] == "" {
				c.fail("variable %s has no query", v.Name)
			}
		}
	}
	for _, want := range []string{"namespace", "target"} {
		if !slices.Contains(defined, want) {
			c.fail("the dashboard needs a %q variable", want)
		}
	}
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if len(all) == 0 {
		c.fail("the dashboard has no panels")
	}
	ids := map[int]string{}
	var exprs []string
	for _, p := range all {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if prev, dup := ids[p.ID]; dup {
			c.fail("%s reuses the id of %s", name, prev)
		}
		ids[p.ID] = name
		if p.GridPos["w"] <= 0 || p.GridPos["h"] <= 0 {
			c.fail("%s has no size in gridPos", name)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" {
			c.fail("panel %d has no title", p.ID)
		}
		if len(p.Targets) == 0 {
			c.fail("%s has no query", name)
		}
		for _, t := range p.Targets {
			if strings.TrimSpace(t.Expr) == "" {
				c.fail("%s has an empty query", name)
				continue
			}
			exprs = append(exprs, t.Expr)
			if err := balanced(t.Expr); err != nil {
				c.fail("%s: %v in %q", name, err, t.Expr)
			}
			for _, m := range variableRef.FindAllStringSubmatch(t.Expr, -1) {
				if !slices.Contains(defined, variableName(m)) {
					c.fail("%s uses $%s, which the dashboard does not define", name, variableName(m))
				}
			}
		}
	}
	joined := strings.Join(exprs, "\n")
	for _, m := range dashboardMetrics {
		if !regexp.MustCompile(`\b` + m + `(_bucket|_sum|_count)?\b`).MatchString(joined) {
			c.fail("no panel shows %s", m)
		}
	}
	return fmt.Sprintf("dashboard %q: %d panels, %d queries", d.Title, len(all), len(exprs)), exprs
}

// balanced reports unbalanced (), [] and {} outside of quoted label values.
func balanced(expr string) error {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	var quote rune
	escaped := false
	for _, r := range expr {
		switch {
		case quote != 0:
			if escaped {
				escaped = false
			} else if r == '\\' {
				escaped = true
			} else if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'' || r == '`':
			quote = r
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return fmt.Errorf("unbalanced %q", r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if quote != 0 {
		return fmt.Errorf("unterminated string")
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return nil
}

// Sample values for the dashboard's variables, so that promtool can parse the queries.
var sampleValues = map[string]string{
	"namespace":       "test",
	"target":          "podinfo",
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__range":         "1h",
}

// writeRules writes the queries as recording rules: promtool then parses each one with
// Prometheus's own PromQL parser.
func writeRules(path string, exprs []string) error {
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	rules := make([]rule, 0, len(exprs))
	for i, e := range exprs {
		e = variableRef.ReplaceAllStringFunc(e, func(ref string) string {
			if v, ok := sampleValues[variableName(variableRef.FindStringSubmatch(ref))]; ok {
				return v
			}
			return ref
		})
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", i+1), Expr: e})
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "flagger-dashboard", "rules": rules}}}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// checkShipped: the chart's ConfigMap holds the dashboard file byte for byte (up to the final
// newline, which a YAML block scalar with |- drops).
func (c *checker) checkShipped(rendered, key string, source []byte) {
	found := 0
	for _, doc := range splitDocs(readFile(rendered)) {
		var cm corev1.ConfigMap
		if err := yaml.UnmarshalStrict(doc, &cm); err != nil || cm.Kind != "ConfigMap" {
			c.fail("%s: expected only ConfigMaps, got a document that is not one (%v)", rendered, err)
			continue
		}
		data, ok := cm.Data[key]
		if !ok {
			continue
		}
		found++
		if strings.TrimRight(data, "\n") != strings.TrimRight(string(source), "\n") {
			c.fail("ConfigMap %s carries a %s that differs from the dashboard file", cm.Name, key)
		}
		if len(cm.Labels) == 0 {
			c.fail("ConfigMap %s has no labels for Grafana's sidecar to find it by", cm.Name)
		}
	}
	if found != 1 {
		c.fail("%s: want exactly one ConfigMap with key %s, found %d", rendered, key, found)
	}
}
