package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
)

// With -log-format json every line elockd writes is one JSON object
// carrying the node id, from the first line to the last.
func TestLogFormatJSONCarriesTheNodeID(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"given id", []string{"-node-id", "j1"}},
		// The id is derived from the bound address, known only once the
		// client port listens.
		{"derived id", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testcluster.Start(t, append([]string{"-log-format", "json", "-log-level", "debug", "-http", "127.0.0.1:0"}, tc.flags...)...)
			if p.HTTPAddr == "" {
				t.Fatalf("no http address in the serving line:\n%s", p.Log())
			}
			c := &http.Client{Timeout: 5 * time.Second}
			res, err := c.Get("http://" + p.HTTPAddr + "/healthz")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Fatalf("/healthz: %d", res.StatusCode)
			}
			if _, err := p.Stop(10 * time.Second); err != nil {
				t.Fatal(err)
			}
			want := "j1"
			if tc.flags == nil {
				want = strings.NewReplacer(":", "-").Replace(p.Addr)
			}
			lines := strings.Split(strings.TrimSpace(p.Log()), "\n")
			if len(lines) < 3 {
				t.Fatalf("only %d lines:\n%s", len(lines), p.Log())
			}
			for _, l := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("a line that is not JSON (%v): %s", err, l)
				}
				if m["node"] != want {
					t.Errorf("a line without node %q: %s", want, l)
				}
			}
		})
	}
}

// -debug-addr, the old flag of the profiles, is an alias of -http: the
// profiles and the rest of the endpoint are served there.
func TestDebugAddrIsAnAliasOfHTTP(t *testing.T) {
	p := testcluster.Start(t, "-debug-addr", "127.0.0.1:0")
	if p.HTTPAddr == "" {
		t.Fatalf("no http address in the serving line:\n%s", p.Log())
	}
	c := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/debug/pprof/", "/healthz", "/readyz", "/metrics"} {
		res, err := c.Get("http://" + p.HTTPAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s: %d", path, res.StatusCode)
		}
	}
}

// Profiles are served on loopback, and beyond it only where the endpoint
// can tell who asks, or with -insecure: TLS alone names nobody.
func TestProfilesBeyondLoopbackNeedAnIdentity(t *testing.T) {
	for _, tc := range []struct {
		o    options
		want bool
	}{
		{options{httpAddr: "127.0.0.1:9400"}, true},
		{options{httpAddr: "localhost:9400"}, true},
		{options{httpAddr: "10.0.0.1:9400", tlsCert: "c.pem"}, false},
		{options{httpAddr: "0.0.0.0:9400", tlsCert: "c.pem"}, false},
		{options{httpAddr: "10.0.0.1:9400", tlsCert: "c.pem", acl: "acl.json"}, true},
		{options{httpAddr: "10.0.0.1:9400", tlsCert: "c.pem", tlsClientCA: "ca.pem"}, true},
		{options{httpAddr: "10.0.0.1:9400", insecure: true}, true},
	} {
		if got := tc.o.profilesServed(); got != tc.want {
			t.Errorf("-http %s, -tls-cert %q, -acl %q, -tls-client-ca %q, -insecure %v: profiles %v, want %v",
				tc.o.httpAddr, tc.o.tlsCert, tc.o.acl, tc.o.tlsClientCA, tc.o.insecure, got, tc.want)
		}
	}
}
