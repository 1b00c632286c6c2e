package replication

import (
	"bytes"
	"testing"
)

func TestStateApply(t *testing.T) {
	var st *State
	init := []Part{{Epoch: 5, Owner: "a", ONonce: "1"}, {Epoch: 5, Owner: "b", ONonce: "1"}}
	for _, tc := range []struct {
		name    string
		cmd     Command
		changed []int
		check   func(t *testing.T, s *State)
	}{
		{"init", Command{Init: init}, []int{0, 1}, func(t *testing.T, s *State) {
			if len(s.Parts) != 2 || s.Parts[1].Owner != "b" {
				t.Fatalf("parts %+v", s.Parts)
			}
		}},
		{"init again is ignored", Command{Init: []Part{{Epoch: 9}}}, nil, func(t *testing.T, s *State) {
			if s.Parts[0].Epoch != 5 {
				t.Fatalf("second init applied: %+v", s.Parts)
			}
		}},
		{"register", Command{Node: &Node{ID: "a", Nonce: "1", PeerAddr: "x:1"}}, nil, func(t *testing.T, s *State) {
			if n, ok := s.Node("a"); !ok || n.PeerAddr != "x:1" {
				t.Fatalf("node a: %+v %v", n, ok)
			}
			if _, ok := s.Node("b"); ok {
				t.Fatal("a node nobody registered")
			}
		}},
		// A node's later registrations replace what the table knew of
		// it: a new incarnation (a restart) and a leave.
		{"a restart registers a new incarnation", Command{Node: &Node{ID: "a", Nonce: "2", PeerAddr: "x:2"}}, nil, func(t *testing.T, s *State) {
			if n, _ := s.Node("a"); n.Nonce != "2" || n.PeerAddr != "x:2" {
				t.Fatalf("node a after its restart: %+v", n)
			}
		}},
		{"leaving", Command{Node: &Node{ID: "a", Nonce: "2", PeerAddr: "x:2", Leaving: true}}, nil, func(t *testing.T, s *State) {
			if n, _ := s.Node("a"); !n.Leaving {
				t.Fatalf("node a did not leave: %+v", n)
			}
		}},
		{"assign from the current epoch", Command{Assign: []Assignment{{P: 0, From: 5, To: Part{Epoch: 6, Owner: "b", ONonce: "1", Mode: Takeover}}}}, []int{0},
			func(t *testing.T, s *State) {
				if s.Parts[0].Epoch != 6 || s.Parts[0].Owner != "b" {
					t.Fatalf("part 0 %+v", s.Parts[0])
				}
			}},
		{"a stale decision is dropped", Command{Assign: []Assignment{{P: 0, From: 5, To: Part{Epoch: 6, Owner: "c"}}, {P: 1, From: 5, To: Part{Epoch: 4, Owner: "c"}}, {P: 7, From: 0, To: Part{Epoch: 1}}}}, nil,
			func(t *testing.T, s *State) {
				if s.Parts[0].Owner != "b" || s.Parts[1].Owner != "b" {
					t.Fatalf("stale assignment applied: %+v", s.Parts)
				}
			}},
		// Each check of an assignment alone: one decided from another
		// epoch, however high its new epoch (a leader's stale view); one
		// that does not raise the epoch, even decided from the current
		// one (two nodes would serve the same epoch).
		{"a decision from another epoch is dropped", Command{Assign: []Assignment{{P: 0, From: 5, To: Part{Epoch: 9, Owner: "c"}}}}, nil,
			func(t *testing.T, s *State) {
				if s.Parts[0].Epoch != 6 || s.Parts[0].Owner != "b" {
					t.Fatalf("an assignment from epoch 5 applied at epoch 6: %+v", s.Parts[0])
				}
			}},
		{"the same epoch is never assigned twice", Command{Assign: []Assignment{{P: 0, From: 6, To: Part{Epoch: 6, Owner: "c"}}}}, nil,
			func(t *testing.T, s *State) {
				if s.Parts[0].Owner != "b" {
					t.Fatalf("epoch 6 reassigned: %+v", s.Parts[0])
				}
			}},
		{"settle only a lost partition at its epoch", Command{Settle: []Settled{{P: 0, Epoch: 6}, {P: 1, Epoch: 5}}}, nil, func(t *testing.T, s *State) {
			if s.Parts[0].Settled || s.Parts[1].Settled {
				t.Fatalf("settled a partition that was not lost: %+v", s.Parts)
			}
		}},
		{"lose", Command{Assign: []Assignment{{P: 1, From: 5, To: Part{Epoch: 6, Owner: "a", Mode: Lost, LostAt: 6}}}}, []int{1}, nil},
		// The loss goes with the partition to later epochs, and settles
		// there: a settle names the loss, not the epoch it was sent at.
		{"keep after the loss", Command{Assign: []Assignment{{P: 1, From: 6, To: Part{Epoch: 7, Owner: "a", Mode: Keep, LostAt: 6}}}}, []int{1}, nil},
		{"settle only the last loss", Command{Settle: []Settled{{P: 1, Epoch: 7}, {P: 0, Epoch: 0}}}, nil, func(t *testing.T, s *State) {
			if s.Parts[1].Settled || s.Parts[0].Settled {
				t.Fatalf("settled a loss that did not happen: %+v", s.Parts)
			}
		}},
		{"settle", Command{Settle: []Settled{{P: 1, Epoch: 6}}}, []int{1}, func(t *testing.T, s *State) {
			if !s.Parts[1].Settled {
				t.Fatal("not settled")
			}
		}},
		{"settle again changes nothing", Command{Settle: []Settled{{P: 1, Epoch: 6}}}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prev := st
			var prevParts []Part
			if prev != nil {
				prevParts = append(prevParts, prev.Parts...)
			}
			b, err := tc.cmd.Encode()
			if err != nil {
				t.Fatal(err)
			}
			cmd, err := DecodeCommand(b)
			if err != nil {
				t.Fatal(err)
			}
			next, changed := st.Apply(10, cmd)
			if len(changed) != len(tc.changed) {
				t.Fatalf("changed %v, want %v", changed, tc.changed)
			}
			for i := range changed {
				if changed[i] != tc.changed[i] {
					t.Fatalf("changed %v, want %v", changed, tc.changed)
				}
			}
			if next.Index != 10 {
				t.Fatalf("index %d", next.Index)
			}
			if prev != nil && len(prevParts) > 0 {
				for i := range prevParts {
					if prev.Parts[i] != prevParts[i] {
						t.Fatal("Apply changed the state it was given")
					}
				}
			}
			if tc.check != nil {
				tc.check(t, next)
			}
			st = next
		})
	}
	// A snapshot round-trips.
	b, err := st.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := back.Encode()
	if !bytes.Equal(b, b2) {
		t.Fatalf("snapshot round trip differs:\n%s\n%s", b, b2)
	}
}

// Partition numbers are checked at their bounds everywhere a command or
// a caller names one: 0 and the last are partitions, -1 and the count
// are not. A command from a build with more partitions (or a forged one)
// is refused by Check, and Apply skips what Check would refuse rather
// than index past the table.
func TestPartitionBounds(t *testing.T) {
	const parts = 4
	for _, tc := range []struct {
		p  int
		ok bool
	}{{-1, false}, {0, true}, {parts - 1, true}, {parts, false}} {
		assign := Command{Assign: []Assignment{{P: tc.p, From: 1, To: Part{Epoch: 2, Owner: "a"}}}}
		settle := Command{Settle: []Settled{{P: tc.p, Epoch: 1}}}
		for name, c := range map[string]Command{"assign": assign, "settle": settle} {
			if err := c.Check(parts); (err == nil) != tc.ok {
				t.Errorf("%s of partition %d: Check = %v, want ok %v", name, tc.p, err, tc.ok)
			}
			st := &State{Parts: make([]Part, parts), Nodes: map[string]Node{}}
			for i := range st.Parts {
				st.Parts[i] = Part{Epoch: 1, Owner: "b", LostAt: 1}
			}
			next, changed := st.Apply(2, c) // must not panic
			if (len(changed) == 1) != tc.ok {
				t.Errorf("%s of partition %d: changed %v, want applied %v", name, tc.p, changed, tc.ok)
			}
			if got := next.Part(tc.p); tc.ok != (got != Part{}) {
				t.Errorf("Part(%d) = %+v", tc.p, got)
			}
		}
	}
	var none *State
	if none.Initialized() || none.Part(0) != (Part{}) || (&State{}).Initialized() {
		t.Error("a missing or empty table reads as initialized")
	}
	if !(&State{Parts: make([]Part, 1)}).Initialized() {
		t.Error("a table of one partition reads as uninitialized")
	}
	if err := (&State{}).Check(parts); err != nil {
		t.Errorf("no table yet: Check = %v", err)
	}
	if err := (&State{Parts: make([]Part, parts)}).Check(parts); err != nil {
		t.Errorf("a table of the right size: Check = %v", err)
	}
	if err := (&State{Parts: make([]Part, parts+1)}).Check(parts); err == nil {
		t.Error("a table of another size passes Check")
	}
}

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{Fresh: "fresh", Keep: "keep", Handover: "handover", Takeover: "takeover", Lost: "lost", Lost + 1: "mode(5)"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", m, got, want)
		}
	}
}
