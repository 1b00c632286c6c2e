package testcluster

import (
	"bufio"
	"net"
	"strings"
	"testing"
)

func TestCheckConverged(t *testing.T) {
	t.Parallel()
	n0 := &Node{ID: "n0", ClientAddr: "127.9.9.1:1"}
	n1 := &Node{ID: "n1", ClientAddr: "127.9.9.2:1"}
	n2 := &Node{ID: "n2", ClientAddr: "127.9.9.3:1"}
	ready := func(ix string) map[string]string { return map[string]string{"node_ready": "1", "cluster_index": ix} }
	m := func(n *Node, status string) member { return member{n.ID, n.ClientAddr, status, "voter"} }
	all := []member{m(n0, "alive"), m(n1, "alive"), m(n2, "alive")}
	tests := []struct {
		name       string
		live, down []*Node
		views      []view
		want       string // "" for converged, else a part of the error
	}{
		{"converged", []*Node{n0, n1, n2}, nil,
			[]view{{ready("7"), all}, {ready("7"), all}, {ready("7"), all}}, ""},
		{"not ready", []*Node{n0, n1}, nil,
			[]view{{ready("7"), all[:2]}, {map[string]string{"node_ready": "0", "cluster_index": "7"}, all[:2]}}, "n1: node_ready 0"},
		{"standalone stats", []*Node{n0}, nil,
			[]view{{map[string]string{"clients": "0"}, nil}}, "n0: node_ready missing"},
		{"index differs", []*Node{n0, n1}, nil,
			[]view{{ready("7"), all[:2]}, {ready("6"), all[:2]}}, "cluster_index differs: n0=7 n1=6"},
		{"no index", []*Node{n0}, nil,
			[]view{{map[string]string{"node_ready": "1"}, all[:1]}}, "n0: no cluster_index"},
		{"live node missing", []*Node{n0, n1}, nil,
			[]view{{ready("7"), all[:1]}, {ready("7"), all[:2]}}, "n0: does not list n1"},
		{"live node suspect", []*Node{n0, n1}, nil,
			[]view{{ready("7"), []member{m(n0, "alive"), m(n1, "suspect")}}, {ready("7"), all[:2]}}, "n0: lists n1 as suspect"},
		{"wrong address", []*Node{n0}, nil,
			[]view{{ready("7"), []member{{"n0", "127.9.9.1:2", "alive", "voter"}}}}, "n0: lists n0 at 127.9.9.1:2, not 127.9.9.1:1"},
		{"down node alive", []*Node{n0, n1}, []*Node{n2},
			[]view{{ready("7"), all}, {ready("7"), all[:2]}}, "n0: lists n2, which is down, as alive"},
		{"down node suspect", []*Node{n0}, []*Node{n2},
			[]view{{ready("7"), []member{m(n0, "alive"), m(n2, "suspect")}}}, "lists n2, which is down, as suspect"},
		{"down node dead, left or gone", []*Node{n0, n1}, []*Node{n2},
			[]view{{ready("7"), []member{m(n0, "alive"), m(n1, "alive"), m(n2, "dead")}}, {ready("7"), all[:2]}}, ""},
		{"down node left", []*Node{n0}, []*Node{n2},
			[]view{{ready("7"), []member{m(n0, "alive"), m(n2, "left")}}}, ""},
		{"stranger alive", []*Node{n0}, nil,
			[]view{{ready("7"), []member{m(n0, "alive"), {"x9", "127.1.1.1:5", "alive", "member"}}}}, "n0: lists unknown node x9 (127.1.1.1:5) as alive"},
		{"stranger dead", []*Node{n0}, nil,
			[]view{{ready("7"), []member{m(n0, "alive"), {"x9", "127.1.1.1:5", "dead", "member"}}}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ix, err := checkConverged(tc.live, tc.down, tc.views)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("not converged: %v", err)
			case tc.want == "" && ix != "7":
				t.Fatalf("index %q, want 7", ix)
			case tc.want != "" && err == nil:
				t.Fatalf("converged, want %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestParseMembers(t *testing.T) {
	t.Parallel()
	ms, err := parseMembers([]string{"MEMBER n0 127.0.0.1:1 alive voter", "MEMBER n1 127.0.0.2:1 left member"})
	if err != nil {
		t.Fatal(err)
	}
	want := []member{{"n0", "127.0.0.1:1", "alive", "voter"}, {"n1", "127.0.0.2:1", "left", "member"}}
	if len(ms) != 2 || ms[0] != want[0] || ms[1] != want[1] {
		t.Fatalf("got %+v, want %+v", ms, want)
	}
	for _, bad := range []string{"MEMBER n0 127.0.0.1:1 alive", "STAT a b", "MEMBER n0 a alive voter extra"} {
		if _, err := parseMembers([]string{bad}); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestParseWhere(t *testing.T) {
	t.Parallel()
	w, err := parseWhere(map[string]string{"partition": "12", "owner": "n1", "replica": "-", "epoch": "9"})
	if err != nil || w != (placement{12, "n1", "", 9}) {
		t.Fatalf("got %+v, %v", w, err)
	}
	w, err = parseWhere(map[string]string{"partition": "0", "owner": "n1", "replica": "n2", "epoch": "18446744073709551615"})
	if err != nil || w != (placement{0, "n1", "n2", 1<<64 - 1}) {
		t.Fatalf("got %+v, %v", w, err)
	}
	w, err = parseWhere(map[string]string{"partition": "5", "owner": "-", "replica": "-", "epoch": "0"})
	if err != nil || w != (placement{5, "", "", 0}) {
		t.Fatalf("got %+v, %v", w, err)
	}
	for _, bad := range []map[string]string{
		{"partition": "1", "owner": "n1", "replica": "-"},
		{"partition": "x", "owner": "n1", "replica": "-", "epoch": "1"},
		{"partition": "1", "owner": "n1", "replica": "-", "epoch": "-1"},
	} {
		if _, err := parseWhere(bad); err == nil {
			t.Errorf("parsed %v", bad)
		}
	}
}

// fakeMesh serves canned replies, one per command, on a loopback port.
func fakeMesh(t *testing.T, replies map[string]string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				r := bufio.NewReader(nc)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					reply, ok := replies[strings.TrimSpace(line)]
					if !ok {
						reply = "400 Unknown command\r\n"
					}
					if _, err := nc.Write([]byte(reply)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

func TestProbeAndWhere(t *testing.T) {
	t.Parallel()
	addr := fakeMesh(t, map[string]string{
		"stats":   "200 STATS\r\nSTAT clients 0\r\nSTAT version 0.1 (x)\r\nSTAT node_ready 1\r\nSTAT cluster_index 42\r\nEND\r\n",
		"members": "200 MEMBERS\r\nMEMBER n0 127.0.0.1:5 alive voter\r\nMEMBER n1 127.0.0.2:5 dead member\r\nEND\r\n",
		"where a": "200 WHERE\r\nSTAT partition 3\r\nSTAT owner n0\r\nSTAT replica n1\r\nSTAT epoch 5\r\nEND\r\n",
	})
	v, err := probe(addr, true)
	if err != nil {
		t.Fatal(err)
	}
	if v.stats["cluster_index"] != "42" || v.stats["version"] != "0.1 (x)" || len(v.members) != 2 || v.members[1].status != "dead" {
		t.Fatalf("probe: %+v", v)
	}
	w, err := where(addr, "a")
	if err != nil || w != (placement{3, "n0", "n1", 5}) {
		t.Fatalf("where: %+v, %v", w, err)
	}
	if _, err := where(addr, "b"); err == nil || !strings.Contains(err.Error(), `"400 Unknown command"`) {
		t.Fatalf("where of an unknown reply: %v", err)
	}
	// A standalone node does not know members; in mesh mode that is an error.
	stand := fakeMesh(t, map[string]string{"stats": "200 STATS\r\nSTAT clients 0\r\nEND\r\n"})
	if _, err := probe(stand, false); err != nil {
		t.Fatal(err)
	}
	if _, err := probe(stand, true); err == nil {
		t.Fatal("probe of a node without members succeeded in mesh mode")
	}
}

func TestMeshArgs(t *testing.T) {
	t.Parallel()
	node := func(i int, voter bool, dir string) *Node {
		ip := "127.9.9." + string(rune('1'+i))
		return &Node{Index: i, ID: "n" + string(rune('0'+i)), ClientAddr: ip + ":1", GossipAddr: ip + ":2", PeerAddr: ip + ":3", Voter: voter, DataDir: dir}
	}
	c := &Cluster{opt: Options{Nodes: 3, Voters: 2, Flags: []string{"-log-level", "debug"}}, mesh: true}
	for i := range 3 {
		c.slots = append(c.slots, &slot{node: node(i, i < 2, "")})
	}
	c.slots[1].node.DataDir = "/d/n1"
	for i, want := range []string{
		"-node-id n0 -listen 127.9.9.1:1 -gossip 127.9.9.1:2 -peer 127.9.9.1:3 -join 127.9.9.2:2,127.9.9.3:2 -bootstrap-expect 2 -log-level debug",
		"-node-id n1 -listen 127.9.9.2:1 -gossip 127.9.9.2:2 -peer 127.9.9.2:3 -join 127.9.9.1:2,127.9.9.3:2 -bootstrap-expect 2 -data-dir /d/n1 -log-level debug",
		"-node-id n2 -listen 127.9.9.3:1 -gossip 127.9.9.3:2 -peer 127.9.9.3:3 -join 127.9.9.1:2,127.9.9.2:2 -log-level debug",
	} {
		if got := strings.Join(c.args(c.slots[i].node), " "); got != want {
			t.Errorf("node %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// A single node joins nobody; a standalone node gets no mesh flags.
	one := &Cluster{opt: Options{Nodes: 1, Voters: 1}, mesh: true, slots: []*slot{{node: node(0, true, "/d/n0")}}}
	if got, want := strings.Join(one.args(one.slots[0].node), " "), "-node-id n0 -listen 127.9.9.1:1 -gossip 127.9.9.1:2 -peer 127.9.9.1:3 -bootstrap-expect 1 -data-dir /d/n0"; got != want {
		t.Errorf("single node:\n got %s\nwant %s", got, want)
	}
	one.mesh = false
	if got, want := strings.Join(one.args(one.slots[0].node), " "), "-node-id n0 -listen 127.9.9.1:1"; got != want {
		t.Errorf("standalone node:\n got %s\nwant %s", got, want)
	}
}
