// Command chartcheck validates what the project ships for installation, without a cluster:
//
//	chartcheck render [-help-text FILE] [-require KIND[/NAME]]... [-absent KIND]... RENDERED.yaml
//	    the output of `helm template charts/flagger`
//	chartcheck examples CRDS.yaml EXAMPLE.yaml...
//	    the example manifests, against the generated CRDs and the Kubernetes API types
//	chartcheck dashboard DASHBOARD.json
//	    the Grafana dashboard
//
// Each prints one "ok" line on success and every failure otherwise, exiting 1.
package main

import (
	"fmt"
	"os"
	"strings"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type checker struct{ failures []string }

func (c *checker) fail(format string, args ...any) {
	c.failures = append(c.failures, fmt.Sprintf(format, args...))
}

// finish prints the failures and exits 1, or prints the success summary.
func (c *checker) finish(summary string) {
	if len(c.failures) > 0 {
		for _, f := range c.failures {
			fmt.Fprintf(os.Stderr, "  FAIL %s\n", f)
		}
		os.Exit(1)
	}
	fmt.Printf("  ok: %s\n", summary)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: chartcheck render|examples|dashboard ARGS... (see the package comment)")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "render":
		runRender(os.Args[2:])
	case "examples":
		runExamples(os.Args[2:])
	case "dashboard":
		runDashboard(os.Args[2:])
	default:
		usage()
	}
}

func readFile(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return data
}
