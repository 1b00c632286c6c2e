package ring

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// With a gossip key, only nodes that hold it form the ring: a node with
// no key, or with another, joins nothing and is never seen, however long
// it keeps trying. A node that also holds a second key (a rotation under
// way: every key decrypts, the first encrypts) joins as well.
func TestOnlyNodesWithTheKeyJoin(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{7}, 32)
	other := bytes.Repeat([]byte{9}, 16)
	keyed := func(id string, keys [][]byte, join ...string) Config {
		cfg := newTestConfig(id, join...)
		cfg.Keys = keys
		return cfg
	}
	n1 := start(t, keyed("n1", [][]byte{key}))
	n2 := start(t, keyed("n2", [][]byte{key, other}, n1.GossipAddr()))
	plain := start(t, keyed("plain", nil, n1.GossipAddr()))
	wrong := start(t, keyed("wrong", [][]byte{other}, n1.GossipAddr()))
	attempts := func(n testNode) int {
		return n.rec.count(func(r record) bool { return r.Msg == "ring join attempt failed" })
	}
	rs := rings(n1, n2)
	waitFor(t, 10*time.Second, "n1 and n2 to see each other", rs, allSee(Alive, []string{"n1", "n2"}, rs...))
	waitFor(t, 15*time.Second, "the keyless and the wrong-key node to have tried to join", nil, func() (bool, string) {
		return attempts(plain) >= 3 && attempts(wrong) >= 3, fmt.Sprintf("%d and %d attempts", attempts(plain), attempts(wrong))
	})
	for name, n := range map[string]testNode{"n1": n1, "n2": n2} {
		for _, m := range n.Members() {
			if m.ID == "plain" || m.ID == "wrong" {
				t.Errorf("%s sees %s (%v), which does not hold the key", name, m.ID, m.State)
			}
		}
	}
	for name, n := range map[string]testNode{"plain": plain, "wrong": wrong} {
		if got := n.Members(); len(got) != 1 || n.Joined() {
			t.Errorf("%s, without the key, sees %v (joined %v)", name, got, n.Joined())
		}
	}
}

// A key that is not 16, 24 or 32 bytes is a configuration error.
func TestABadGossipKeyIsRefused(t *testing.T) {
	cfg := newTestConfig("n1")
	cfg.Keys = [][]byte{make([]byte, 20)}
	if err := cfg.Validate(); err == nil {
		t.Fatal("a 20-byte gossip key was accepted")
	}
}
