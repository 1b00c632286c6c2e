package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
	"github.com/elock/elock/testcluster/certs"
	"github.com/elock/elock/testcluster/wait"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.Cleanup()
	os.Exit(code)
}

// elock runs the elock binary and returns its exit status and output.
func elock(t *testing.T, limit time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, testcluster.Binary(t, "elock"), args...)
	cmd.Env = testcluster.Env()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("elock %q did not finish within %v\nstderr: %s", args, limit, stderr.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("elock %q: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

// raw is a minimal protocol connection for arranging lock states.
type raw struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &raw{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *raw) do(line string) string {
	c.t.Helper()
	c.nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write([]byte(line + "\r\n")); err != nil {
		c.t.Fatal(err)
	}
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("%q: %v", line, err)
	}
	return strings.TrimSuffix(l, "\r\n")
}

// info returns the STAT lines of "info NAME".
func (c *raw) info(name string) map[string]string {
	c.t.Helper()
	if h := c.do("info " + name); h != "200 INFO" {
		c.t.Fatalf("info: %q", h)
	}
	m := map[string]string{}
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatal(err)
		}
		l = strings.TrimSuffix(l, "\r\n")
		if l == "END" {
			return m
		}
		f := strings.Fields(l)
		m[f[1]] = f[2]
	}
}

func TestLockRunsCommandWithToken(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	out := filepath.Join(t.TempDir(), "token")
	code, _, stderr := elock(t, 20*time.Second, "-addr", srv.Addr, "lock", "job",
		"--", "sh", "-c", `printf '%s %s' "$ELOCK_TOKEN" "$ELOCK_NAME" > "$0"; exit 3`, out)
	if code != 3 {
		t.Fatalf("exit %d, want the command's 3; stderr: %s", code, stderr)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if tok, err := strconv.ParseUint(f[0], 10, 64); err != nil || tok == 0 || f[1] != "job" {
		t.Fatalf("command saw ELOCK_TOKEN/ELOCK_NAME %q", b)
	}
	if in := dialRaw(t, srv.Addr).info("job"); in["held"] != "0" {
		t.Fatalf("lock still held after the command: %v", in)
	}
}

func TestLockNotAcquired(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	holder := dialRaw(t, srv.Addr)
	if r := holder.do("lock busy"); r != "200 Acquired" {
		t.Fatal(r)
	}
	code, _, _ := elock(t, 20*time.Second, "-addr", srv.Addr, "lock", "busy", "-wait", "0", "--", "true")
	if code != exitNotAcquired {
		t.Fatalf("-wait 0 on a held lock: exit %d, want %d", code, exitNotAcquired)
	}
	start := time.Now()
	code, _, _ = elock(t, 20*time.Second, "-addr", srv.Addr, "lock", "busy", "-wait", "300ms", "--", "true")
	if code != exitNotAcquired || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("-wait 300ms: exit %d after %v", code, time.Since(start))
	}
}

func TestLockWaitsForRelease(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	holder := dialRaw(t, srv.Addr)
	holder.do("lock q")
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := elock(t, 30*time.Second, "-addr", srv.Addr, "lock", "q", "-wait", "20s", "--", "true")
		done <- result{code, stderr}
	}()
	wait.For(t, 10*time.Second, "elock to queue", func() bool { return holder.info("q")["waiters"] == "1" })
	holder.do("unlock q")
	if r := <-done; r.code != 0 {
		t.Fatalf("exit %d after the release; stderr: %s", r.code, r.stderr)
	}
}

// When the session cannot be resumed in time the lock may be someone
// else's: the command is stopped, and elock says so in its status.
func TestLockLostStopsCommand(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	dir := t.TempDir()
	started, termed := filepath.Join(dir, "started"), filepath.Join(dir, "termed")
	type result struct {
		code   int
		stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, _, stderr := elock(t, 60*time.Second, "-addr", srv.Addr, "lock", "lease", "-timeout", "1s",
			"--", "sh", "-c", `trap 'touch "$1"; kill $!; exit 0' TERM; touch "$0"; sleep 60 & wait`, started, termed)
		done <- result{code, stderr}
	}()
	wait.For(t, 10*time.Second, "the command to start", func() bool { _, err := os.Stat(started); return err == nil })
	srv.Kill()
	r := <-done
	if r.code != exitLost {
		t.Fatalf("exit %d, want %d (lock lost); stderr: %s", r.code, exitLost, r.stderr)
	}
	if _, err := os.Stat(termed); err != nil {
		t.Fatalf("the command never got SIGTERM: %v", err)
	}
}

func TestLockCommandKilledBySignal(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	code, _, _ := elock(t, 20*time.Second, "-addr", srv.Addr, "lock", "k", "--", "sh", "-c", "kill -9 $$")
	if code != 128+9 {
		t.Fatalf("exit %d, want 137", code)
	}
}

func TestUsageAndUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, exitUsage},
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"lock"}, exitUsage},
		{[]string{"lock", "x"}, exitUsage},
		{[]string{"lock", "x", "-wait", "soon", "--", "true"}, exitUsage},
		{[]string{"info"}, exitUsage},
		{[]string{"cluster", "-n", "0"}, exitUsage},
		{[]string{"bench", "-mode", "sideways"}, exitUsage},
		{[]string{"bench", "-backend", "memcached"}, exitUsage},
		{[]string{"-addr", closed, "lock", "x", "--", "true"}, exitUnavailable},
		{[]string{"-addr", closed, "stats"}, exitUnavailable},
	} {
		if code, _, _ := elock(t, 20*time.Second, tc.args...); code != tc.want {
			t.Errorf("elock %q: exit %d, want %d", tc.args, code, tc.want)
		}
	}
}

func TestStatsAndInfo(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	c := dialRaw(t, srv.Addr)
	c.do("lock shown")
	code, out, _ := elock(t, 20*time.Second, "-addr", srv.Addr, "stats")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || lines[0] != "200 STATS" || lines[1] != "STAT clients 1" || lines[2] != "STAT locks 1" || lines[len(lines)-1] != "END" {
		t.Fatalf("stats: exit %d, output:\n%s", code, out)
	}
	code, out, _ = elock(t, 20*time.Second, "-addr", srv.Addr, "info", "shown")
	if code != 0 || !strings.HasPrefix(out, "200 INFO\nSTAT held 1\nSTAT mine 0\n") || !strings.HasSuffix(out, "END\n") {
		t.Fatalf("info: exit %d, output:\n%s", code, out)
	}
	name := strings.Repeat("n", 300)
	if code, out, _ = elock(t, 20*time.Second, "-addr", srv.Addr, "info", name); code != 1 || !strings.HasPrefix(out, "413 ") {
		t.Fatalf("info of an over-long name: exit %d, output %q", code, out)
	}
}

func TestBench(t *testing.T) {
	t.Parallel()
	srv := testcluster.Start(t)
	for _, mode := range []string{"distinct", "contended"} {
		code, out, stderr := elock(t, 60*time.Second, "-addr", srv.Addr, "bench", "-mode", mode,
			"-clients", "4", "-duration", "500ms", "-warmup", "100ms", "-json")
		if code != 0 {
			t.Fatalf("bench %s: exit %d; stderr: %s", mode, code, stderr)
		}
		var r benchResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("bench %s output %q: %v", mode, out, err)
		}
		if r.Cycles == 0 || r.CyclesPerS <= 0 || r.P50us <= 0 || r.P99us < r.P50us || r.P999us < r.P99us || r.Violations != 0 || r.Errors != 0 {
			t.Fatalf("bench %s result %+v", mode, r)
		}
		if mode == "contended" && r.MinPerCli == 0 {
			t.Fatalf("contended: a client never got the lock (FIFO should feed all): %+v", r)
		}
	}
}

// elock cluster starts a local mesh, prints its addresses once it
// serves, and stops every node on SIGINT.
func TestCluster(t *testing.T) {
	t.Parallel()
	logs := t.TempDir()
	cmd, out, stderr := startCluster(t, "-n", "2", "-log-dir", logs)
	sc := bufio.NewScanner(out)
	var addrs []string
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "cluster of 2 serving") {
			break
		}
		if f := strings.Fields(l); len(f) >= 2 && strings.HasPrefix(f[0], "n") {
			addrs = append(addrs, f[1])
		}
	}
	if len(addrs) != 2 {
		cmd.Process.Kill()
		t.Fatalf("cluster printed %q; stderr: %s", addrs, stderr.String())
	}
	c := dialRaw(t, addrs[1])
	if r := c.do("lock shared"); r != "200 Acquired" {
		t.Fatalf("lock through node 2: %q", r)
	}
	if in := dialRaw(t, addrs[0]).info("shared"); in["held"] != "1" {
		t.Fatalf("node 1 does not see node 2's lock: %v", in)
	}
	// The local cluster runs the secure path by default.
	for _, n := range []string{"n1", "n2"} {
		b, _ := os.ReadFile(filepath.Join(logs, n+".log"))
		if !strings.Contains(string(b), "gossip_encrypted=true peer_tls=true") {
			t.Errorf("%s does not run with a gossip key and peer TLS:\n%s", n, b)
		}
	}
	cmd.Process.Signal(os.Interrupt)
	go io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("elock cluster after SIGINT: %v; stderr: %s", err, stderr.String())
	}
}

// startCluster runs elock cluster with args on addresses of its own, for
// at most two minutes, and returns it with its standard output and
// error.
func startCluster(t *testing.T, args ...string) (*exec.Cmd, io.ReadCloser, *strings.Builder) {
	t.Helper()
	testcluster.Binary(t, "elockd") // built next to elock, where cluster looks
	base := fmt.Sprintf("127.%d.%d.0", 100+rand.IntN(100), rand.IntN(250))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, testcluster.Binary(t, "elock"), append([]string{"cluster", "-ip", base}, args...)...)
	cmd.Env = testcluster.Env()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(strings.Builder)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out, stderr
}

// elock cluster -tls serves the client ports over TLS too, and prints
// the command that reaches them.
func TestClusterTLS(t *testing.T) {
	t.Parallel()
	cmd, out, stderr := startCluster(t, "-n", "1", "-tls")
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		go io.Copy(io.Discard, out)
		cmd.Wait()
	}()
	sc := bufio.NewScanner(out)
	var try []string
	for sc.Scan() {
		if _, cmdline, ok := strings.Cut(sc.Text(), "try: elock "); ok {
			try = strings.Fields(strings.TrimSuffix(cmdline, " stats; Ctrl-C stops it"))
			break
		}
	}
	if len(try) != 4 || try[2] != "-tls-ca" {
		t.Fatalf("the printed command: %q; stderr: %s", try, stderr.String())
	}
	if code, got, errOut := elock(t, 20*time.Second, append(try, "stats")...); code != exitOK || !strings.Contains(got, "STAT node_ready 1") {
		t.Fatalf("the printed command: exit %d: %s %s", code, got, errOut)
	}
	if code, _, _ := elock(t, 20*time.Second, "-addr", try[1], "stats"); code == exitOK {
		t.Fatal("a plain client reached a -tls cluster")
	}
}

// elock keygen prints a key elockd -encrypt takes: base64 of 32 bytes,
// a new one each time.
func TestKeygen(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 2 {
		code, out, errOut := elock(t, 20*time.Second, "keygen")
		if code != exitOK {
			t.Fatalf("elock keygen: exit %d: %s", code, errOut)
		}
		line := strings.TrimSuffix(out, "\n")
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(k) != 32 {
			t.Fatalf("elock keygen printed %q: %d bytes, %v", out, len(k), err)
		}
		if seen[line] {
			t.Fatal("elock keygen printed the same key twice")
		}
		seen[line] = true
	}
	if code, _, _ := elock(t, 20*time.Second, "keygen", "extra"); code != exitUsage {
		t.Errorf("elock keygen extra: exit %d, want %d", code, exitUsage)
	}
}

// Over TLS: stats, lock (through the Go client's WithTLS) and bench work
// against a server that requires client certificates, given -tls-ca,
// -tls-cert and -tls-key; without a client certificate, or trusting
// another CA, nothing is reached.
func TestCommandsOverTLS(t *testing.T) {
	t.Parallel()
	ca, other := certs.New(t), certs.New(t)
	cert, key := ca.Issue(t, "127.0.0.1")
	ccert, ckey := ca.Issue(t, "app1")
	srv := testcluster.Start(t, "-tls-cert", cert, "-tls-key", key, "-tls-client-ca", ca.CA)
	tlsFlags := []string{"-addr", srv.Addr, "-tls-ca", ca.CA, "-tls-cert", ccert, "-tls-key", ckey}
	code, out, errOut := elock(t, 20*time.Second, append(tlsFlags, "stats")...)
	if code != exitOK || !strings.Contains(out, "STAT uptime") {
		t.Fatalf("stats over TLS: exit %d: %s %s", code, out, errOut)
	}
	code, _, errOut = elock(t, 20*time.Second, append(tlsFlags, "lock", "job", "--", "sh", "-c", `test -n "$ELOCK_TOKEN"`)...)
	if code != 0 {
		t.Fatalf("lock over TLS: exit %d: %s", code, errOut)
	}
	code, out, errOut = elock(t, 30*time.Second, append(tlsFlags, "bench", "-clients", "2", "-duration", "1s", "-warmup", "0s", "-json")...)
	if code != exitOK || !strings.Contains(out, `"errors":0`) {
		t.Fatalf("bench over TLS: exit %d: %s %s", code, out, errOut)
	}
	for what, args := range map[string][]string{
		"no client certificate": {"-addr", srv.Addr, "-tls-ca", ca.CA, "stats"},
		"another CA":            {"-addr", srv.Addr, "-tls-ca", other.CA, "-tls-cert", ccert, "-tls-key", ckey, "stats"},
		"plain TCP":             {"-addr", srv.Addr, "stats"},
	} {
		if code, out, _ := elock(t, 20*time.Second, args...); code == exitOK || strings.Contains(out, "STAT") {
			t.Errorf("%s: exit %d, %q", what, code, out)
		}
	}
	if code, _, _ := elock(t, 20*time.Second, "-tls-cert", ccert, "stats"); code != exitUsage {
		t.Errorf("-tls-cert without -tls-key: exit %d, want %d", code, exitUsage)
	}
}

// elock certs writes a CA and certificates that elockd and elock take as
// they are: a node's names are its id, the addresses given and the local
// ones; a client's is its name. A second run reuses the CA and never
// replaces a certificate.
func TestCerts(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	if code, out, errOut := elock(t, 20*time.Second, "certs", "-dir", dir, "-nodes", "n1=10.0.0.1+n1.example.com,n2", "-clients", "app1"); code != exitOK {
		t.Fatalf("elock certs: exit %d: %s %s", code, out, errOut)
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil || !pool.AppendCertsFromPEM(caPEM) {
		t.Fatalf("ca.pem: %v", err)
	}
	parse := func(name string) *x509.Certificate {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s.pem holds no PEM", name)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("%s is not the CA's: %v", name, err)
		}
		if fi, err := os.Stat(filepath.Join(dir, name+"-key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s-key.pem: %v %v", name, fi.Mode(), err)
		}
		return c
	}
	n1 := parse("n1")
	if fmt.Sprint(n1.DNSNames) != "[n1 localhost n1.example.com]" || fmt.Sprint(n1.IPAddresses) != "[127.0.0.1 10.0.0.1]" {
		t.Errorf("n1's names: %v %v", n1.DNSNames, n1.IPAddresses)
	}
	if app := parse("app1"); app.Subject.CommonName != "app1" || fmt.Sprint(app.ExtKeyUsage) != fmt.Sprint([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("app1: CN %q usages %v", app.Subject.CommonName, app.ExtKeyUsage)
	}
	// The files serve as they are.
	srv := testcluster.Start(t, "-tls-cert", filepath.Join(dir, "n1.pem"), "-tls-key", filepath.Join(dir, "n1-key.pem"), "-tls-client-ca", filepath.Join(dir, "ca.pem"))
	if code, out, errOut := elock(t, 20*time.Second, "-addr", srv.Addr, "-tls-ca", filepath.Join(dir, "ca.pem"),
		"-tls-cert", filepath.Join(dir, "app1.pem"), "-tls-key", filepath.Join(dir, "app1-key.pem"), "stats"); code != exitOK {
		t.Fatalf("stats with the certificates: exit %d: %s %s", code, out, errOut)
	}
	// Again: the same CA signs a new node; an existing one is kept.
	if code, _, errOut := elock(t, 20*time.Second, "certs", "-dir", dir, "-nodes", "n3"); code != exitOK {
		t.Fatalf("a second run: %s", errOut)
	}
	parse("n3")
	before, _ := os.ReadFile(filepath.Join(dir, "n1.pem"))
	if code, _, _ := elock(t, 20*time.Second, "certs", "-dir", dir, "-nodes", "n1"); code == exitOK {
		t.Error("a second n1 was written")
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "n1.pem")); !bytes.Equal(before, after) {
		t.Error("n1.pem was replaced")
	}
	for _, args := range [][]string{{"certs", "-dir", dir}, {"certs", "-nodes", "n9"}, {"certs", "-dir", dir, "-nodes", "bad name"}, {"certs", "-dir", dir, "-nodes", "x,x"}} {
		if code, _, _ := elock(t, 20*time.Second, args...); code != exitUsage {
			t.Errorf("elock %q: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// -token authenticates lock (through the Go client's WithToken), stats
// and bench with a server that has access control.
func TestCommandsWithAToken(t *testing.T) {
	t.Parallel()
	acl := filepath.Join(t.TempDir(), "acl.json")
	if err := os.WriteFile(acl, []byte(`{"identities": {"app": {"lock": ["jobs/", "bench"]}, "mon": {"read": [""]}}, "tokens": {"tok-app": "app", "tok-mon": "mon"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testcluster.Start(t, "-acl", acl)
	if code, _, errOut := elock(t, 20*time.Second, "-addr", srv.Addr, "-token", "tok-app", "lock", "jobs/x", "--", "true"); code != 0 {
		t.Fatalf("lock with app's token: exit %d: %s", code, errOut)
	}
	if code, _, _ := elock(t, 20*time.Second, "-addr", srv.Addr, "-token", "tok-app", "lock", "other", "-wait", "0", "--", "true"); code == 0 {
		t.Error("app locked a name outside its prefixes")
	}
	if code, out, errOut := elock(t, 20*time.Second, "-addr", srv.Addr, "-token", "tok-mon", "stats"); code != exitOK || !strings.Contains(out, "STAT uptime") {
		t.Fatalf("stats with mon's token: exit %d: %s %s", code, out, errOut)
	}
	if code, out, errOut := elock(t, 30*time.Second, "-addr", srv.Addr, "-token", "tok-app", "bench", "-clients", "2", "-duration", "1s", "-warmup", "0s", "-prefix", "bench", "-json"); code != exitOK || !strings.Contains(out, `"errors":0`) {
		t.Fatalf("bench with app's token: exit %d: %s %s", code, out, errOut)
	}
	for _, args := range [][]string{{"stats"}, {"-token", "wrong", "stats"}} {
		if code, out, _ := elock(t, 20*time.Second, append([]string{"-addr", srv.Addr}, args...)...); code == exitOK || strings.Contains(out, "STAT") {
			t.Errorf("elock %q: exit %d, %q", args, code, out)
		}
	}
}
