package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// fleetSection returns the code blocks of the README's "Running a
// fleet" section, one string per block.
func fleetSection(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Running a fleet\n")
	if i < 0 {
		t.Fatal(`the README has no "## Running a fleet" section`)
	}
	s = s[i+1:]
	if j := strings.Index(s[3:], "\n## "); j >= 0 {
		s = s[:j+3]
	}
	var blocks []string
	for {
		a := strings.Index(s, "\n```")
		if a < 0 {
			break
		}
		s = s[a+4:]
		s = s[strings.IndexByte(s, '\n')+1:] // the fence's info string
		z := strings.Index(s, "\n```")
		if z < 0 {
			t.Fatal("an unterminated code block in the fleet section")
		}
		blocks = append(blocks, s[:z+1])
		s = s[z+4:]
	}
	return blocks
}

// elockdFlagsIn returns every flag given to elockd in the blocks: on a
// shell or systemd line that runs elockd and the lines that continue it
// (a trailing backslash), and in a YAML command list that starts with
// elockd (its "- -flag=value" items).
func elockdFlagsIn(blocks []string) (flags []string, invocations int) {
	runs := regexp.MustCompile(`(^|[\s=/])elockd(\s|$)`)
	for _, b := range blocks {
		in, yaml := false, false
		for _, line := range strings.Split(b, "\n") {
			trim := strings.TrimSpace(line)
			switch {
			case runs.MatchString(trim):
				in, yaml = true, strings.HasPrefix(trim, "- ")
				invocations++
			case in && yaml && strings.HasPrefix(trim, "- -"):
			case in && !yaml:
			default:
				in = false
				continue
			}
			for _, f := range strings.Fields(strings.TrimPrefix(trim, "- ")) {
				if strings.HasPrefix(f, "-") && len(f) > 1 {
					name, _, _ := strings.Cut(strings.TrimLeft(f, "-"), "=")
					flags = append(flags, name)
				}
			}
			if !yaml && !strings.HasSuffix(trim, `\`) {
				in = false
			}
		}
	}
	return flags, invocations
}

// TestFleetSectionUsesRealFlags checks that every flag the README's fleet
// guide gives elockd (the per-node flags, the systemd unit, the
// Kubernetes StatefulSet) is one elockd has, so the guide cannot drift
// from the binary.
func TestFleetSectionUsesRealFlags(t *testing.T) {
	var usage bytes.Buffer
	parseFlags([]string{"-h"}, &usage)
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+)`).FindAllStringSubmatch(usage.String(), -1) {
		known[m[1]] = true
	}
	if !known["listen"] || !known["peer-cert"] {
		t.Fatalf("could not read elockd's flags from its usage:\n%s", usage.String())
	}
	flags, n := elockdFlagsIn(fleetSection(t))
	if n < 3 {
		t.Fatalf("found %d elockd invocations in the fleet section; want the shell, systemd and Kubernetes ones", n)
	}
	seen := map[string]bool{}
	for _, f := range flags {
		if !known[f] && !seen[f] {
			t.Errorf("the fleet section gives elockd -%s, which it does not have", f)
		}
		seen[f] = true
	}
	// The guide's point is a secured mesh with metrics scraped: it must
	// say how.
	for _, f := range []string{"node-id", "join", "bootstrap-expect", "encrypt-file", "peer-cert", "peer-key", "peer-ca", "tls-cert", "tls-client-ca", "acl", "http", "log-format"} {
		if !seen[f] {
			t.Errorf("the fleet section never gives elockd -%s", f)
		}
	}
}

func TestElockdFlagsInReadsEveryForm(t *testing.T) {
	blocks := []string{
		"elockd -node-id n1 \\\n  -listen a:1 -http b:2\nls -l\n",
		"ExecStart=/usr/local/bin/elockd -x \\\n  -y\nKillSignal=SIGTERM\n",
		"command:\n  - /usr/local/bin/elockd\n  - -z=$(POD)\n  - -w=1\nports:\n  - -notaflag\n",
	}
	flags, n := elockdFlagsIn(blocks)
	if got, want := strings.Join(flags, " "), "node-id listen http x y z w"; got != want || n != 3 {
		t.Fatalf("flags %q in %d invocations; want %q in 3", got, n, want)
	}
}
