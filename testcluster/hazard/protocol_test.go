package hazard_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/testcluster"
)

// Every command answers the same on every node, for names owned anywhere.
func TestAnyNodeSameAnswers(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3})
	for home := range 3 {
		t.Run(fmt.Sprint("home ", home), func(t *testing.T) {
			a, b := c.Raw(home), c.Raw((home+1)%3)
			a.Timeout, b.Timeout = time.Minute, time.Minute
			for i := range 3 { // names spread over the owners
				name := fmt.Sprintf("same-%d-%d", home, i)
				for _, step := range []struct {
					conn      *testcluster.Conn
					req, want string
				}{
					{a, "lock " + name, "200 Acquired"},
					{a, "lock " + name, "200 Acquired"}, // re-entrant
					{b, "lock " + name, "409 Unavailable"},
					{b, "lock " + name + " 0", "409 Unavailable"},
					{b, "unlock " + name, "403 not_yours"},
					{b, "token " + name, "403 not_yours"},
					{a, "unlock " + name, "200 Unlocked"}, // one unlock releases both
					{a, "unlock " + name, "403 not_locked"},
					{b, "token " + name, "403 not_locked"},
					{b, "lock " + name + " 1", "200 Acquired"},
					{a, "lock " + name + " 1", "409 Unavailable"},
					{b, "unlock_all", "200 OK"},
					// The same name, shared, then as a semaphore.
					{a, "rlock " + name, "200 Acquired"},
					{b, "rlock " + name + " 1", "200 Acquired"},
					{b, "lock " + name, "400 no upgrade: " + name + " is held shared by this session"},
					{b, "lock " + name + " 5", "400 no upgrade: " + name + " is held shared by this session"},
					{b, "acquire " + name + " 2", "400 kind mismatch: " + name + " is a lock"},
					{b, "acquire " + name + " 2 5", "400 kind mismatch: " + name + " is a lock"},
					{a, "unlock_all", "200 OK"},
					{b, "unlock " + name, "200 Unlocked"},
					{a, "acquire " + name + " 1", "200 Acquired"},
					{b, "acquire " + name + " 1 1", "409 Unavailable"},
					{b, "acquire " + name + " 2", "400 limit mismatch: " + name + " has 1 permits"},
					{b, "acquire " + name + " 2 5", "400 limit mismatch: " + name + " has 1 permits"},
					{b, "rlock " + name, "400 kind mismatch: " + name + " is a semaphore"},
					{b, "rlock " + name + " 5", "400 kind mismatch: " + name + " is a semaphore"},
					{a, "unlock " + name, "200 Unlocked"},
				} {
					if got := step.conn.Do(step.req); got != step.want {
						t.Fatalf("%q -> %q, want %q", step.req, got, step.want)
					}
				}
			}
			for req, want := range map[string]string{
				"LOCK x":           `400 Unknown command: "LOCK"`,
				"lock":             `400 Unknown command: "lock"`,
				"lock a b c":       `400 Unknown command: "lock"`,
				"lock a x":         "400 bad wait: want whole seconds from 0 to 86400",
				"lock a -1":        "400 bad wait: want whole seconds from 0 to 86400",
				"set_timeout -1":   "400 bad timeout: want whole milliseconds from 0 to 300000",
				"set_timeout x":    "400 bad timeout: want whole milliseconds from 0 to 300000",
				"set_timeout 5000": "200 timeout set",
				// label and locks: bad input is refused and the
				// connection goes on.
				"label":                             `400 Unknown command: "label"`,
				"label a b":                         `400 Unknown command: "label"`,
				"label " + strings.Repeat("x", 129): "400 bad label: want 1 to 128 bytes",
				"label a\tb":                        "400 bad label: want printable ASCII without spaces (0x21..0x7e)",
				"label a\x7f":                       "400 bad label: want printable ASCII without spaces (0x21..0x7e)",
				"label ok:1":                        "200 label set",
				"locks a 0":                         "400 bad limit: want a whole number from 1 to 10000",
				"locks a 10001":                     "400 bad limit: want a whole number from 1 to 10000",
				"locks a x":                         "400 bad limit: want a whole number from 1 to 10000",
				"locks a -5":                        "400 bad limit: want a whole number from 1 to 10000",
				"locks a 10 up":                     "400 bad order: want name, held or waiters",
				"locks a 10 name more":              `400 Unknown command: "locks"`,
				"locks " + strings.Repeat("n", 251): "413 name too long (max 250 bytes)",
				// rlock and acquire: bad input is refused as lock's, and
				// the connection goes on.
				"rlock":                             `400 Unknown command: "rlock"`,
				"rlock a 5 x":                       `400 Unknown command: "rlock"`,
				"rlock a x":                         "400 bad wait: want whole seconds from 0 to 86400",
				"rlock " + strings.Repeat("n", 251): "413 name too long (max 250 bytes)",
				"acquire":                           `400 Unknown command: "acquire"`,
				"acquire s":                         `400 Unknown command: "acquire"`,
				"acquire s 2 5 x":                   `400 Unknown command: "acquire"`,
				"acquire s 0":                       "400 bad limit: want whole permits from 1 to 65535",
				"acquire s 65536":                   "400 bad limit: want whole permits from 1 to 65535",
				"acquire s 99999999999999999999999": "400 bad limit: want whole permits from 1 to 65535",
				"acquire s -2":                      "400 bad limit: want whole permits from 1 to 65535",
				"acquire s 2 -1":                    "400 bad wait: want whole seconds from 0 to 86400",
				"acquire " + strings.Repeat("n", 251) + " 2": "413 name too long (max 250 bytes)",
			} {
				if got := a.Do(req); got != want {
					t.Errorf("%q -> %q, want %q", req, got, want)
				}
			}
			// conn_id is stable; a session resumes on another node.
			id := strings.TrimPrefix(a.Do("conn_id"), "200 ")
			if a.Do("conn_id") != "200 "+id || len(id) != 26 {
				t.Fatalf("conn_id not stable or not 26 characters: %q", id)
			}
			a.Do("lock moved-" + id)
			if r := a.Do("conn_id other"); r != "403 cannot set conn id" {
				t.Fatalf("second conn_id: %q", r)
			}
			if r := a.Do("quit"); r != "200 Hey, it was nice seeing you." {
				t.Fatalf("quit: %q", r)
			}
			r := c.Raw((home + 2) % 3)
			r.Timeout = time.Minute
			if got := r.Do("conn_id " + id); got != "200 conn id set" {
				t.Fatalf("resume on another node: %q", got)
			}
			if _, s := r.Block("session"); s["resumed"] != "1" || s["held"] != "1" {
				t.Fatalf("resumed session: %v", s)
			}
			if got := r.Do("unlock moved-" + id); got != "200 Unlocked" {
				t.Fatalf("unlock after the resume: %q", got)
			}
		})
	}
}

var (
	memberLine = regexp.MustCompile(`^MEMBER (\S+) (\S+) (alive|suspect|dead|left) (voter|member)$`)
)

// members and where keep their exact formats, and stats counts clients
// and locks of the whole cluster.
func TestMembersWhereAndClusterStats(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Nodes: 3, Voters: 2})
	conn := c.Raw(0)
	h, body, err := conn.Lines("members")
	if err != nil || h != "200 MEMBERS" || len(body) != 3 {
		t.Fatalf("members: %q %q %v", h, body, err)
	}
	voters := 0
	for i, l := range body {
		m := memberLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("members line %q", l)
		}
		if m[3] != "alive" {
			t.Errorf("member %s is %s", m[1], m[3])
		}
		if m[4] == "voter" {
			voters++
		}
		if idx := c.IndexOf(m[1]); idx < 0 || c.Node(idx).ClientAddr != m[2] {
			t.Errorf("member line %d %q: unknown node or wrong client address", i, l)
		}
	}
	if voters != 2 {
		t.Errorf("%d voters listed, want 2 (the third joined without -bootstrap-expect)", voters)
	}
	h, body, err = conn.Lines("where some-name")
	if err != nil || h != "200 WHERE" || len(body) != 4 {
		t.Fatalf("where: %q %q %v", h, body, err)
	}
	for i, key := range []string{"partition", "owner", "replica", "epoch"} {
		f := strings.Fields(body[i])
		if len(f) != 3 || f[0] != "STAT" || f[1] != key {
			t.Fatalf("where line %d = %q, want STAT %s ...", i, body[i], key)
		}
		if key == "partition" || key == "epoch" {
			if _, err := strconv.ParseUint(f[2], 10, 64); err != nil {
				t.Fatalf("where %s %q is not a number", key, f[2])
			}
		}
	}
	// Three clients on three nodes, each holding two locks.
	for i := range 3 {
		r := c.Raw(i)
		r.Timeout = time.Minute
		for j := range 2 {
			if got := r.Do(fmt.Sprintf("lock stat-%d-%d", i, j)); got != "200 Acquired" {
				t.Fatalf("lock: %q", got)
			}
		}
	}
	for i := range 3 {
		_, st := c.Raw(i).Block("stats")
		if st["clients"] != "3" || st["locks"] != "6" || st["monitoring"] != "3" {
			t.Errorf("stats on node %d: clients %s locks %s monitoring %s; want the cluster's 3, 6, 3",
				i, st["clients"], st["locks"], st["monitoring"])
		}
	}
}
