package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// fleetCommands returns the elock command lines of the README's
// "Running a fleet" section's code blocks, split into words, up to any
// shell redirection.
func fleetCommands(t *testing.T) [][]string {
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
	var cmds [][]string
	inCode := false
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "```") {
			inCode = !inCode
			continue
		}
		w := strings.Fields(line)
		if !inCode || len(w) == 0 || w[0] != "elock" {
			continue
		}
		for k, x := range w {
			if strings.ContainsAny(x, "<>|;") {
				w = w[:k]
				break
			}
		}
		cmds = append(cmds, w[1:])
	}
	return cmds
}

// flagsOf reads the flag names from a flag set's usage text.
func flagsOf(usage string) map[string]bool {
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -(\S+)`).FindAllStringSubmatch(usage, -1) {
		known[m[1]] = true
	}
	return known
}

// TestFleetSectionUsesRealElockFlags checks that the elock commands of
// the README's fleet guide (the key, the certificates, the first stats)
// name subcommands and flags elock has.
func TestFleetSectionUsesRealElockFlags(t *testing.T) {
	var out, usage bytes.Buffer
	run([]string{"-h"}, &out, &usage)
	global := flagsOf(usage.String())
	if !global["addr"] || !global["tls-ca"] {
		t.Fatalf("could not read elock's flags from its usage:\n%s", usage.String())
	}
	cmds := fleetCommands(t)
	subs := map[string]bool{}
	for _, args := range cmds {
		k := 0
		for k < len(args) && strings.HasPrefix(args[k], "-") {
			name, _, _ := strings.Cut(strings.TrimLeft(args[k], "-"), "=")
			if !global[name] {
				t.Errorf("elock %s: elock has no flag -%s", strings.Join(args, " "), name)
			}
			k += 2 // every global flag takes a value
		}
		if k >= len(args) {
			t.Errorf("elock %s: no subcommand", strings.Join(args, " "))
			continue
		}
		sub := args[k]
		subs[sub] = true
		var o, e bytes.Buffer
		run([]string{sub, "-h"}, &o, &e)
		own := flagsOf(e.String())
		for _, a := range args[k+1:] {
			if !strings.HasPrefix(a, "-") {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !own[name] {
				t.Errorf("elock %s: elock %s has no flag -%s", strings.Join(args, " "), sub, name)
			}
		}
	}
	for _, sub := range []string{"keygen", "certs", "stats"} {
		if !subs[sub] {
			t.Errorf("the fleet section never runs elock %s (found %q)", sub, cmds)
		}
	}
}
