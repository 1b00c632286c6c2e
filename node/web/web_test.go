package web

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/node"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const aclJSON = `{"identities": {
  "ops":     {"read": [""]},
  "jobs":    {"lock": ["jobs/"]},
  "nothing": {}},
 "tokens": {"ops-token": "ops", "jobs-token": "jobs", "nothing-token": "nothing"}}`

type fixture struct {
	reg      *prometheus.Registry
	refusals *prometheus.CounterVec
	ready    bool
	reason   string
}

func newFixture() *fixture {
	f := &fixture{reg: prometheus.NewRegistry(), ready: true}
	f.refusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: RefusalsMetric, Help: "refusals"}, []string{"code", "reason"})
	f.reg.MustRegister(f.refusals)
	f.refusals.WithLabelValues("503", "moved").Add(3)
	return f
}

func (f *fixture) config(acl *node.ACL) Config {
	yes := true
	return Config{
		Gatherer: f.reg,
		Ready:    func() (bool, string) { return f.ready, f.reason },
		Overview: func() node.Overview {
			return node.Overview{ID: "n0", ClientAddr: "127.0.0.1:1", Leader: "n0",
				Members:    []node.Member{{ID: "n0", Addr: "127.0.0.1:1", State: "alive", Voter: true}},
				Partitions: []node.PartitionState{{Owner: "n0", Replica: "n1", Epoch: 7, Mode: "fresh", Synced: &yes}, {Owner: "n1", Epoch: 2, Mode: "keep"}}}
		},
		Counts: func(context.Context) (Counts, error) { return Counts{Locks: 2, Waiters: 1}, nil },
		Busiest: func(_ context.Context, byWaiters bool, limit int) ([]Busy, error) {
			return []Busy{{Name: "jobs/a", HeldFor: 1500 * time.Millisecond, Waiters: 1}, {Name: "secret/b", HeldFor: time.Second}}, nil
		},
		ACL:      acl,
		Profiles: true,
		Version:  "test",
	}
}

func serve(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestHealthAndReadiness(t *testing.T) {
	f := newFixture()
	s := serve(t, f.config(nil))
	if code, _ := get(t, s.URL+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get(t, s.URL+"/readyz", ""); code != 200 {
		t.Fatalf("/readyz of a ready node: %d %q", code, body)
	}
	f.ready, f.reason = false, "no lease"
	if code, body := get(t, s.URL+"/readyz", ""); code != 503 || strings.TrimSpace(body) != "no lease" {
		t.Fatalf("/readyz of an unready node: %d %q, want 503 with the reason", code, body)
	}
	if code, _ := get(t, s.URL+"/healthz", ""); code != 200 {
		t.Fatalf("/healthz of an unready node: %d, want 200", code)
	}
}

func TestMetricsParse(t *testing.T) {
	s := serve(t, newFixture().config(nil))
	code, body := get(t, s.URL+"/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	mf := mfs[RefusalsMetric]
	if mf == nil || len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetCounter().GetValue() != 3 {
		t.Fatalf("%s: %v", RefusalsMetric, mf)
	}
}

func TestACL(t *testing.T) {
	acl, err := node.ParseACL([]byte(aclJSON))
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, newFixture().config(acl))
	for _, c := range []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/metrics", "", 401},
		{"/", "", 401},
		{"/status.json", "", 401},
		{"/metrics", "wrong", 401},
		{"/metrics", "nothing-token", 403},
		{"/status.json", "nothing-token", 403},
		{"/metrics", "jobs-token", 200},
		{"/", "jobs-token", 200},
		{"/status.js", "jobs-token", 200},
		{"/status.json", "ops-token", 200},
		// A heap profile shows every name: only a rule of the empty prefix.
		{"/debug/pprof/", "", 401},
		{"/debug/pprof/", "jobs-token", 403},
		{"/debug/pprof/heap", "jobs-token", 403},
		{"/debug/pprof/cmdline", "jobs-token", 403},
		{"/debug/pprof/", "ops-token", 200},
		{"/debug/pprof/goroutine?debug=1", "ops-token", 200},
	} {
		if code, body := get(t, s.URL+c.path, c.token); code != c.want {
			t.Errorf("GET %s with token %q: %d %q, want %d", c.path, c.token, code, body, c.want)
		}
	}
}

func TestBusiestFilteredByIdentity(t *testing.T) {
	acl, err := node.ParseACL([]byte(aclJSON))
	if err != nil {
		t.Fatal(err)
	}
	s := serve(t, newFixture().config(acl))
	doc := func(token string) Document {
		code, body := get(t, s.URL+"/status.json", token)
		if code != 200 {
			t.Fatalf("status.json: %d %s", code, body)
		}
		var d Document
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := doc("jobs-token"); len(d.Busiest.Held) != 1 || d.Busiest.Held[0].Name != "jobs/a" || d.Busiest.Hidden != 2 {
		t.Fatalf("jobs sees %+v, want only jobs/a (and 2 hidden, one per list)", d.Busiest)
	}
	if d := doc("ops-token"); len(d.Busiest.Held) != 2 || d.Busiest.Hidden != 0 {
		t.Fatalf("ops sees %+v, want both", d.Busiest)
	}
}

func TestStatusDocumentShape(t *testing.T) {
	f := newFixture()
	cfg := f.config(nil)
	cfg.Busiest = nil
	s := serve(t, cfg)
	code, body := get(t, s.URL+"/status.json", "")
	if code != 200 {
		t.Fatalf("status.json: %d", code)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"time", "node", "ready", "leader", "members", "partitions", "counts", "busiest", "refusals"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status.json lacks %q: %s", k, body)
		}
	}
	var d Document
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if d.Node.ID != "n0" || d.Leader != "n0" || len(d.Members) != 1 || len(d.Parts) != 2 {
		t.Fatalf("document %+v", d)
	}
	if p := d.Parts[0]; p.Owner != "n0" || p.Replica != "n1" || p.Epoch != 7 || p.Synced == nil || !*p.Synced {
		t.Fatalf("partition 0: %+v", p)
	}
	if d.Parts[1].Synced != nil {
		t.Fatalf("partition 1's synced flag is unknown here, got %v", *d.Parts[1].Synced)
	}
	if d.Counts == nil || d.Counts.Locks != 2 || d.Counts.Waiters != 1 {
		t.Fatalf("counts %+v", d.Counts)
	}
	if d.Busiest.Available {
		t.Fatal("busiest available without a source")
	}
	if len(d.Refusals) != 1 || d.Refusals[0].Code != "503" || d.Refusals[0].Reason != "moved" || d.Refusals[0].Total != 3 {
		t.Fatalf("refusals %+v", d.Refusals)
	}
	code, page := get(t, s.URL+"/", "")
	if code != 200 || !strings.Contains(page, `<script src="status.js">`) || strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Fatalf("/: %d, a page that loads its own script and nothing from elsewhere:\n%s", code, page)
	}
}

func TestOnlyGetAndBoundedRequests(t *testing.T) {
	s := serve(t, newFixture().config(nil))
	res, err := http.Post(s.URL+"/healthz", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /healthz: %d, want 405", res.StatusCode)
	}
	if code, _ := get(t, s.URL+"/nope", ""); code != 404 {
		t.Fatalf("GET /nope: %d", code)
	}
	hs := NewServer(http.NotFoundHandler(), nil, nil)
	if hs.ReadHeaderTimeout == 0 || hs.ReadTimeout == 0 || hs.IdleTimeout == 0 || hs.MaxHeaderBytes == 0 || hs.WriteTimeout < 31*time.Second {
		t.Fatalf("server without bounds: %+v", hs)
	}
}

// With a client CA, a request without a verified client certificate
// reaches the probes and nothing else.
func TestRequireClientCertLetsProbesThrough(t *testing.T) {
	cfg := newFixture().config(nil)
	cfg.RequireClientCert = true
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewTLSServer(h)
	t.Cleanup(s.Close)
	c := s.Client()
	c.Timeout = 10 * time.Second
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 401, "/": 401, "/debug/pprof/": 401} {
		res, err := c.Get(s.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s without a client certificate: %d, want %d", path, res.StatusCode, want)
		}
	}
}

// Without Profiles, the profiles answer 403 whoever asks; everything
// else is served as before.
func TestProfilesOff(t *testing.T) {
	f := newFixture()
	cfg := f.config(nil)
	cfg.Profiles = false
	s := serve(t, cfg)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
		if code, _ := get(t, s.URL+path, ""); code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", path, code)
		}
	}
	if code, _ := get(t, s.URL+"/metrics", ""); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
}

// The page may load only what the node serves, and is never framed.
func TestContentSecurityPolicy(t *testing.T) {
	s := serve(t, newFixture().config(nil))
	res, err := http.Get(s.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := res.Header.Get("Content-Security-Policy"); got != "default-src 'self'; frame-ancestors 'none'" {
		t.Fatalf("Content-Security-Policy %q", got)
	}
}

// Status documents gather from the whole mesh: a few at once, and 503
// beyond.
func TestStatusDocumentsAreBounded(t *testing.T) {
	f := newFixture()
	cfg := f.config(nil)
	entered, release := make(chan struct{}, maxStatuses), make(chan struct{})
	cfg.Busiest = func(ctx context.Context, byWaiters bool, limit int) ([]Busy, error) {
		if !byWaiters {
			entered <- struct{}{}
			<-release
		}
		return nil, nil
	}
	s := serve(t, cfg)
	done := make(chan int, maxStatuses)
	for range maxStatuses {
		go func() { // not get: it may not fail the test off its goroutine
			res, err := http.Get(s.URL + "/status.json")
			if err != nil {
				done <- 0
				return
			}
			res.Body.Close()
			done <- res.StatusCode
		}()
	}
	for range maxStatuses {
		<-entered
	}
	if code, body := get(t, s.URL+"/status.json", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("one more status document: %d %q, want 503", code, body)
	}
	close(release)
	for range maxStatuses {
		if code := <-done; code != 200 {
			t.Fatalf("a status document: %d", code)
		}
	}
	if code, _ := get(t, s.URL+"/status.json", ""); code != 200 {
		t.Fatalf("after they ended: %d", code)
	}
}
