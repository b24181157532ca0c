package main

// Checks that components.txt (the list the collector configs are compared against) and the
// components linked into this build (components.go) agree. Run: go test . (in this folder).

import (
	"bufio"
	"os"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/collector/component"
)

// linked returns kind/type for every linked component, plus kind/alias for deprecated aliases.
func linked(t *testing.T) (canonical map[string]bool, alias map[string]string) {
	t.Helper()
	f, err := components()
	if err != nil {
		t.Fatal(err)
	}
	canonical, alias = map[string]bool{}, map[string]string{}
	// The factory maps also hold deprecated aliases as keys, so use each factory's own Type().
	add := func(kind string, factory component.Factory) {
		typ := kind + "/" + factory.Type().String()
		canonical[typ] = true
		if ap, ok := factory.(aliasProvider); ok && ap.DeprecatedAlias().String() != "" {
			alias[kind+"/"+ap.DeprecatedAlias().String()] = typ
		}
	}
	for _, fac := range f.Extensions {
		add("extension", fac)
	}
	for _, fac := range f.Receivers {
		add("receiver", fac)
	}
	for _, fac := range f.Processors {
		add("processor", fac)
	}
	for _, fac := range f.Connectors {
		add("connector", fac)
	}
	for _, fac := range f.Exporters {
		add("exporter", fac)
	}
	return canonical, alias
}

func TestComponentsTxtMatchesBuild(t *testing.T) {
	canonical, alias := linked(t)
	file, err := os.Open("components.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	covered := map[string]bool{}
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		switch {
		case canonical[line]:
			covered[line] = true
		case alias[line] != "":
			covered[alias[line]] = true
		default:
			t.Errorf("components.txt lists %q, which is not linked into the collector", line)
		}
	}
	var missing []string
	for c := range canonical {
		if !covered[c] {
			missing = append(missing, c)
		}
	}
	sort.Strings(missing)
	for _, c := range missing {
		t.Errorf("the collector links %q, which components.txt does not list", c)
	}
}
