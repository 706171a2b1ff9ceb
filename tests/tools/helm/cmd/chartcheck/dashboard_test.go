package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testDashboard builds a dashboard with one panel per query.
func testDashboard(t *testing.T, exprs []string, variables ...string) []byte {
	t.Helper()
	var panels []map[string]any
	for i, e := range exprs {
		panels = append(panels, map[string]any{
			"id": i + 1, "type": "timeseries", "title": fmt.Sprintf("panel %d", i+1),
			"gridPos": map[string]int{"x": 0, "y": i * 8, "w": 12, "h": 8},
			"targets": []map[string]any{{"expr": e, "refId": "A"}},
		})
	}
	var list []map[string]any
	for _, v := range variables {
		list = append(list, map[string]any{"name": v, "type": "query", "query": map[string]any{"query": "label_values(x, " + v + ")"}})
	}
	out, err := json.Marshal(map[string]any{
		"title": "t", "uid": "u", "panels": panels,
		"templating": map[string]any{"list": list},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// allMetrics has one query per required metric, using both variables.
func allMetrics() []string {
	var exprs []string
	for _, m := range dashboardMetrics {
		exprs = append(exprs, fmt.Sprintf(`sum(rate(%s{namespace="$namespace",name="${target}"}[$__rate_interval]))`, m))
	}
	return exprs
}

func TestCompleteDashboardPasses(t *testing.T) {
	c := &checker{}
	_, exprs := c.checkDashboard(testDashboard(t, allMetrics(), "namespace", "target"))
	if len(c.failures) > 0 {
		t.Fatalf("unexpected failures: %q", c.failures)
	}
	if len(exprs) != len(dashboardMetrics) {
		t.Fatalf("want %d queries, got %d", len(dashboardMetrics), len(exprs))
	}
}

func TestDashboardMistakesAreFound(t *testing.T) {
	t.Run("metric not shown", func(t *testing.T) {
		c := &checker{}
		c.checkDashboard(testDashboard(t, allMetrics()[1:], "namespace", "target"))
		expectFailure(t, c.failures, "no panel shows "+dashboardMetrics[0])
	})
	t.Run("histogram shown through its buckets", func(t *testing.T) {
		exprs := allMetrics()
		for i, e := range exprs {
			exprs[i] = strings.Replace(e, "flagger_canary_duration_seconds{", "flagger_canary_duration_seconds_bucket{", 1)
		}
		c := &checker{}
		c.checkDashboard(testDashboard(t, exprs, "namespace", "target"))
		if len(c.failures) > 0 {
			t.Fatalf("a _bucket series should count as showing the histogram: %q", c.failures)
		}
	})
	t.Run("undefined variable", func(t *testing.T) {
		c := &checker{}
		c.checkDashboard(testDashboard(t, append(allMetrics(), `up{job="$job"}`), "namespace", "target"))
		expectFailure(t, c.failures, "uses $job, which the dashboard does not define")
	})
	t.Run("missing target variable", func(t *testing.T) {
		c := &checker{}
		c.checkDashboard(testDashboard(t, allMetrics(), "namespace"))
		expectFailure(t, c.failures, `needs a "target" variable`)
	})
	t.Run("unbalanced query", func(t *testing.T) {
		c := &checker{}
		c.checkDashboard(testDashboard(t, append(allMetrics(), `sum(rate(up[5m])`), "namespace", "target"))
		expectFailure(t, c.failures, `unclosed '('`)
	})
	t.Run("duplicate panel id", func(t *testing.T) {
		var d map[string]any
		if err := json.Unmarshal(testDashboard(t, allMetrics(), "namespace", "target"), &d); err != nil {
			t.Fatal(err)
		}
		panels := d["panels"].([]any)
		panels[1].(map[string]any)["id"] = 1
		src, _ := json.Marshal(d)
		c := &checker{}
		c.checkDashboard(src)
		expectFailure(t, c.failures, "reuses the id of panel 1")
	})
	t.Run("not JSON", func(t *testing.T) {
		c := &checker{}
		c.checkDashboard([]byte("{title: t"))
		expectFailure(t, c.failures, "not valid dashboard JSON")
	})
}

func TestBalancedIgnoresQuotedBrackets(t *testing.T) {
	for expr, ok := range map[string]bool{
		`sum(rate(x{code=~"5.."}[1m]))`: true,
		`count(x{path="/a(b"})`:         true,
		`x{re=~"\"]"}`:                  true,
		`sum(rate(x[1m])`:               false,
		`x{a="b"]`:                      false,
		`x{a="b}`:                       false,
		"histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m])))": true,
	} {
		if err := balanced(expr); (err == nil) != ok {
			t.Errorf("balanced(%q) = %v, want ok=%v", expr, err, ok)
		}
	}
}

func TestRulesSubstituteVariables(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := writeRules(path, []string{`x{namespace="$namespace",name="${target}"}[$__rate_interval]`}); err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `x{namespace="test",name="podinfo"}[1m]`
	if !strings.Contains(string(out), want) {
		t.Fatalf("rules file does not contain %s:\n%s", want, out)
	}
	if !strings.Contains(string(out), "record: dashboard:query_1") {
		t.Fatalf("rules file lacks the recording rule name:\n%s", out)
	}
}
