package testcluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/wait"
)

// readyz asks addr's /readyz: the status code, and the body (the reason
// when not ready). A node that does not answer within the timeout (it is
// paused, say) is not ready.
func readyz(addr string, timeout time.Duration) (int, string, error) {
	c := &http.Client{Timeout: timeout}
	res, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	return res.StatusCode, strings.TrimSpace(string(b)), nil
}

// balancer is a test-only TCP load balancer in front of elockd nodes, as
// an operator would put one: it polls each node's /readyz and forwards a
// client connection to a node that answered 200 at the last poll, round
// robin, and closes it at once if none did. Close stops its goroutines
// and joins them.
type balancer struct {
	ln      net.Listener
	backend []string // client addresses
	http    []string // their HTTP addresses

	mu    sync.Mutex // guards ready, next and conns
	ready []bool
	next  int
	conns map[net.Conn]struct{}

	stop chan struct{}
	wg   sync.WaitGroup
}

func newBalancer(t *testing.T, client, http []string) *balancer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{ln: ln, backend: client, http: http, ready: make([]bool, len(client)),
		conns: map[net.Conn]struct{}{}, stop: make(chan struct{})}
	b.wg.Add(2)
	go b.poll()
	go b.accept()
	t.Cleanup(b.Close)
	return b
}

func (b *balancer) Addr() string { return b.ln.Addr().String() }

func (b *balancer) Close() {
	select {
	case <-b.stop:
		return
	default:
	}
	close(b.stop)
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Ready is the balancer's view: which backends it sends clients to.
func (b *balancer) Ready() []bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]bool(nil), b.ready...)
}

func (b *balancer) poll() {
	defer b.wg.Done()
	for {
		for i, a := range b.http {
			code, _, err := readyz(a, 500*time.Millisecond)
			b.mu.Lock()
			b.ready[i] = err == nil && code == http.StatusOK
			b.mu.Unlock()
		}
		select {
		case <-b.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (b *balancer) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		target := ""
		for range b.ready {
			i := b.next % len(b.ready)
			b.next++
			if b.ready[i] {
				target = b.backend[i]
				break
			}
		}
		b.mu.Unlock()
		if target == "" {
			c.Close()
			continue
		}
		b.wg.Add(1)
		go b.forward(c, target)
	}
}

// forward pipes c to target both ways until either side closes.
func (b *balancer) forward(c net.Conn, target string) {
	defer b.wg.Done()
	defer c.Close()
	s, err := net.DialTimeout("tcp", target, time.Second)
	if err != nil {
		return
	}
	defer s.Close()
	b.mu.Lock()
	b.conns[c], b.conns[s] = struct{}{}, struct{}{}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		delete(b.conns, s)
		b.mu.Unlock()
	}()
	done := make(chan struct{})
	go func() {
		io.Copy(s, c)
		s.Close()
		close(done)
	}()
	io.Copy(c, s)
	c.Close()
	<-done
}

// nodeBehind connects through the balancer and asks which node answers:
// "" if the balancer closed the connection (no node ready).
func nodeBehind(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("stats\r\n")); err != nil {
		return "", nil
	}
	br := bufio.NewReader(c)
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			// Closed at once: with "stats" unread, the close may come
			// as a reset.
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				return "", nil
			}
			return "", err
		}
		l = strings.TrimSpace(l)
		if id, ok := strings.CutPrefix(l, "STAT node_id "); ok {
			return id, nil
		}
		if l == "END" {
			return "", fmt.Errorf("stats without node_id")
		}
	}
}

// A node that loses its lease answers /readyz 503 with the reason, and
// 200 again once it has one: a load balancer polling /readyz stops
// sending it clients and then sends them again.
func TestReadyzDropsAndReaddsANodeThatLosesItsLease(t *testing.T) {
	c := New(t, Options{Nodes: 3, HTTP: true})
	var client, web []string
	for i := range 3 {
		client, web = append(client, c.Node(i).ClientAddr), append(web, c.HTTPAddr(i))
		if web[i] == "" {
			t.Fatalf("node %d logged no HTTP address", i)
		}
	}
	wait.For(t, 30*time.Second, "every node's /readyz to answer 200", func() bool {
		for _, a := range web {
			if code, _, err := readyz(a, time.Second); err != nil || code != 200 {
				return false
			}
		}
		return true
	})
	lb := newBalancer(t, client, web)
	seen := map[string]bool{}
	wait.For(t, 30*time.Second, "the balancer to send clients to every node", func() bool {
		id, err := nodeBehind(lb.Addr())
		if err != nil {
			t.Logf("through the balancer: %v", err)
		}
		seen[id] = true
		return seen["n0"] && seen["n1"] && seen["n2"]
	})

	// Without a majority of voters the leader grants no lease: n0, left
	// alone, must say it is not ready, and the balancer drop it.
	c.Pause(1)
	c.Pause(2)
	var reason string
	wait.For(t, 30*time.Second, "n0's /readyz to answer 503", func() bool {
		code, body, err := readyz(web[0], time.Second)
		reason = body
		return err == nil && code == http.StatusServiceUnavailable
	})
	if reason == "" {
		t.Fatal("/readyz answered 503 without a reason")
	}
	t.Logf("n0 not ready: %s", reason)
	wait.For(t, 30*time.Second, "n0 to say it has no lease", func() bool {
		_, body, _ := readyz(web[0], time.Second)
		return body == "no lease"
	})
	wait.For(t, 10*time.Second, "the balancer to drop n0", func() bool { return !lb.Ready()[0] })
	for range 6 {
		if id, err := nodeBehind(lb.Addr()); err != nil || id != "" {
			t.Fatalf("the balancer sent a client to %q (%v) with no node ready", id, err)
		}
	}
	if code, _ := httpGet(t, web[0], "/healthz"); code != 200 {
		t.Fatalf("/healthz of the unready n0: %d, want 200 (it still serves)", code)
	}

	c.Resume(1)
	c.Resume(2)
	wait.For(t, 60*time.Second, "n0's /readyz to answer 200 again", func() bool {
		code, _, err := readyz(web[0], time.Second)
		return err == nil && code == 200
	})
	wait.For(t, 30*time.Second, "the balancer to send clients to n0 again", func() bool {
		id, _ := nodeBehind(lb.Addr())
		return id == "n0"
	})
}

// A node whose partition table has not been applied (a voter waiting for
// the others of -bootstrap-expect) is not ready, and says so.
func TestReadyzOfANodeWithoutATable(t *testing.T) {
	p := Start(t, "-node-id", "lonely", "-gossip", "127.0.0.1:0", "-peer", "127.0.0.1:0", "-bootstrap-expect", "2",
		"-http", "127.0.0.1:0", "-leave-timeout", "1s")
	if p.HTTPAddr == "" {
		t.Fatalf("no HTTP address in the serving line:\n%s", p.Log())
	}
	code, body, err := readyz(p.HTTPAddr, 5*time.Second)
	if err != nil || code != http.StatusServiceUnavailable || body != "partition table not applied" {
		t.Fatalf("/readyz: %d %q %v; want 503 partition table not applied", code, body, err)
	}
	// The second voter comes: the table forms and is applied, and the
	// node is ready.
	m := regexp.MustCompile(` gossip=(\S+)`).FindStringSubmatch(p.Log())
	if m == nil {
		t.Fatalf("no gossip address in the serving line:\n%s", p.Log())
	}
	Start(t, "-node-id", "second", "-listen", "127.0.0.1:0", "-gossip", "127.0.0.1:0", "-peer", "127.0.0.1:0",
		"-join", m[1], "-bootstrap-expect", "2", "-leave-timeout", "1s")
	wait.Seen(t, 60*time.Second, "the node to be ready once its table is applied", nil, func() (bool, string) {
		code, body, err := readyz(p.HTTPAddr, 5*time.Second)
		return err == nil && code == http.StatusOK, fmt.Sprintf("%d %q %v", code, body, err)
	})
}

func httpGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", addr, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, string(b)
}

// chromium runs headless Chromium on url with extra flags, in its own
// profile directory and process group, killed by group on timeout.
func chromium(t *testing.T, bin, url string, timeout time.Duration, flags ...string) (string, error) {
	t.Helper()
	profile, err := os.MkdirTemp("", "elock-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profile)
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--no-default-browser-check", "--user-data-dir=" + profile}, flags...)
	args = append(args, url)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if cmd.Process != nil {
		// Chromium's helpers (zygote, utility processes) live in its group.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		return out.String(), fmt.Errorf("chromium: %w (%s)", err, lastLines(errOut.String(), 5))
	}
	return out.String(), nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

func chromiumBinary(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getuid() == 0 {
		t.Fatal("chromium is missing: .ci/run installs it (apt-get install chromium); as root this test must run")
	}
	t.Skip("chromium is missing and this is not root (which could install it): skipping the status page test; install Debian's chromium to run it")
	return ""
}

var (
	cellRE   = regexp.MustCompile(`<div class="cell s-([a-z]+)[^"]*" data-part="(\d+)" data-owner="([^"]*)"`)
	memberRE = regexp.MustCompile(`<tr data-member="([^"]+)">`)
)

// tableRows returns the cells of each body row of the table with the
// given id.
func tableRows(dom, id string) [][]string {
	i := strings.Index(dom, `<table id="`+id+`"`)
	if i < 0 {
		return nil
	}
	body := dom[i:]
	if j := strings.Index(body, "</table>"); j >= 0 {
		body = body[:j]
	}
	if j := strings.Index(body, "<tbody>"); j >= 0 {
		body = body[j:]
	}
	var rows [][]string
	for _, tr := range regexp.MustCompile(`(?s)<tr>(.*?)</tr>`).FindAllStringSubmatch(body, -1) {
		var cells []string
		for _, td := range regexp.MustCompile(`<td[^>]*>([^<]*)</td>`).FindAllStringSubmatch(tr[1], -1) {
			cells = append(cells, td[1])
		}
		rows = append(rows, cells)
	}
	return rows
}

func byID(dom, id string) string {
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>([^<]*)<`).FindStringSubmatch(dom)
	if m == nil {
		return ""
	}
	return m[1]
}

// The status page, loaded in a real browser from one node of a 3-node
// mesh, shows the cluster as it is: its members, the leader, every
// partition in the grid with its owner, and the locks the test holds.
func TestStatusPageInChromium(t *testing.T) {
	bin := chromiumBinary(t)
	const parts = 32
	c := New(t, Options{Nodes: 3, HTTP: true, Flags: []string{"-partitions", strconv.Itoa(parts)}})
	const held = 5
	cl := c.Client(t, 1)
	if err := cl.Label(context.Background(), "status-test:1"); err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range held {
		name := fmt.Sprintf("status/%d", i)
		if _, err := cl.TryLock(context.Background(), name); err != nil {
			t.Fatalf("lock %s: %v", name, err)
		}
		names = append(names, name)
	}
	// One waiter queues behind status/0 (from another node), so the page
	// has a queue to show among the busiest names.
	waiter := c.Raw(2)
	if err := waiter.Send("lock status/0 120"); err != nil {
		t.Fatal(err)
	}
	_, stats, err := c.Raw(0).Lines("stats")
	if err != nil {
		t.Fatal(err)
	}
	leader := ""
	for _, l := range stats {
		if v, ok := strings.CutPrefix(l, "STAT cluster_leader "); ok {
			leader = v
		}
	}
	if leader == "" || leader == "-" {
		t.Fatalf("no leader in stats: %q", stats)
	}
	owners := map[int]string{}
	for _, n := range names {
		p, owner, _, _ := c.Where(n)
		owners[p] = owner
	}

	url := "http://" + c.HTTPAddr(0) + "/"
	var dom string
	shot := filepath.Join(os.TempDir(), "elock-status-"+t.Name()+".png")
	defer func() {
		if t.Failed() {
			t.Logf("the last DOM:\n%s", dom)
			if _, err := chromium(t, bin, url, 60*time.Second, "--window-size=1280,1400", "--virtual-time-budget=4000", "--screenshot="+shot); err != nil {
				t.Logf("no screenshot: %v", err)
			} else {
				t.Logf("screenshot of the page: %s", shot)
			}
		}
	}()
	check := func() (bool, string) {
		dom, err = chromium(t, bin, url, 60*time.Second, "--virtual-time-budget=4000", "--dump-dom")
		if err != nil {
			return false, err.Error()
		}
		var problems []string
		if id := byID(dom, "node-id"); id != "n0" {
			problems = append(problems, fmt.Sprintf("node id %q", id))
		}
		if l := byID(dom, "leader"); l != leader {
			problems = append(problems, fmt.Sprintf("leader %q, want %q", l, leader))
		}
		if h := byID(dom, "locks-held"); h != strconv.Itoa(held) {
			problems = append(problems, fmt.Sprintf("locks held %q, want %d", h, held))
		}
		if w := byID(dom, "locks-waiters"); w != "1" {
			problems = append(problems, fmt.Sprintf("waiters %q, want 1", w))
		}
		// The busiest names: every held name with the holder's label,
		// and status/0's queue of one first among the queues.
		heldRows := tableRows(dom, "held")
		var shown []string
		for _, r := range heldRows {
			if len(r) != 4 || r[3] != "status-test:1" {
				problems = append(problems, fmt.Sprintf("held longest row %q, want the name, time, waiters and label status-test:1", r))
				continue
			}
			shown = append(shown, r[0])
		}
		slices.Sort(shown)
		if !slices.Equal(shown, names) {
			problems = append(problems, fmt.Sprintf("held longest shows %q, want %q", shown, names))
		}
		if q := tableRows(dom, "queued"); len(q) != 1 || len(q[0]) != 4 || q[0][0] != "status/0" || q[0][1] != "1" {
			problems = append(problems, fmt.Sprintf("longest queues %q, want status/0 with 1 waiting", q))
		}
		var members []string
		for _, m := range memberRE.FindAllStringSubmatch(dom, -1) {
			members = append(members, m[1])
		}
		if strings.Join(members, ",") != "n0,n1,n2" {
			problems = append(problems, fmt.Sprintf("members %q", members))
		}
		cells := cellRE.FindAllStringSubmatch(dom, -1)
		if len(cells) != parts {
			problems = append(problems, fmt.Sprintf("%d cells in the grid, want %d", len(cells), parts))
		}
		grid := map[int]string{}
		for _, m := range cells {
			p, _ := strconv.Atoi(m[2])
			grid[p] = m[3]
			if m[1] == "down" || m[1] == "lost" {
				problems = append(problems, fmt.Sprintf("partition %d shown %s", p, m[1]))
			}
		}
		for p, o := range owners {
			if grid[p] != o {
				problems = append(problems, fmt.Sprintf("partition %d shown owned by %q, where says %q", p, grid[p], o))
			}
		}
		return len(problems) == 0, strings.Join(problems, "; ")
	}
	// The cluster may still be settling (a replica syncing): look again
	// until the page agrees, within the deadline.
	wait.Seen(t, 90*time.Second, "the status page to show the cluster", nil, check)
}
