package history

import (
	"errors"
	"sync"
	"testing"
)

func TestFencedResource(t *testing.T) {
	f := NewFencedResource()
	for _, tc := range []struct {
		name  string
		token uint64
		ok    bool
	}{
		{"a", 5, true},
		{"a", 5, false}, // not strictly above
		{"a", 4, false},
		{"b", 1, true}, // names are independent
		{"a", 6, true},
		{"c", 0, false}, // no token
	} {
		err := f.Write(tc.name, tc.token)
		if (err == nil) != tc.ok {
			t.Errorf("Write(%q, %d) = %v, want ok=%v", tc.name, tc.token, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrStaleToken) {
			t.Errorf("Write(%q, %d) = %v, not ErrStaleToken", tc.name, tc.token, err)
		}
	}
	if f.Accepted() != 3 || f.Rejections() != 3 {
		t.Errorf("accepted %d, rejected %d", f.Accepted(), f.Rejections())
	}
	if r := f.Rejected()[1]; r != (Rejection{Name: "a", Token: 4, Last: 5}) {
		t.Errorf("rejection %+v", r)
	}
	c := f.Check()
	if c.OK() || len(c.Violations) != 3 || c.Ops != 6 {
		t.Errorf("%v", c)
	}
}

// TestFencedResourceReads: shared holders read in any order among
// themselves, never below the last write; a write comes after every
// accepted read.
func TestFencedResourceReads(t *testing.T) {
	f := NewFencedResource()
	for _, tc := range []struct {
		name  string
		read  bool
		token uint64
		ok    bool
	}{
		{"a", true, 2, true},   // a reader before any writer
		{"a", false, 3, true},  // a writer after it
		{"a", true, 3, true},   // the writer's own grant, taken shared
		{"a", true, 5, true},   // readers in any order ...
		{"a", true, 4, true},   // ... above the last write
		{"a", true, 2, false},  // a reader from before the writer
		{"a", false, 4, false}, // a writer below an accepted read
		{"a", false, 6, true},
		{"a", true, 5, false},
		{"b", true, 1, true},
		{"b", true, 0, false}, // no token
	} {
		var err error
		if tc.read {
			err = f.Read(tc.name, tc.token)
		} else {
			err = f.Write(tc.name, tc.token)
		}
		if (err == nil) != tc.ok {
			t.Errorf("read=%v %q %d: %v, want ok=%v", tc.read, tc.name, tc.token, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrStaleToken) {
			t.Errorf("read=%v %q %d: %v, not ErrStaleToken", tc.read, tc.name, tc.token, err)
		}
	}
	if f.Accepted() != 7 || f.Rejections() != 4 {
		t.Errorf("accepted %d, rejected %d", f.Accepted(), f.Rejections())
	}
	want := Rejection{Name: "a", Read: true, Token: 2, Last: 3}
	if r := f.Rejected()[0]; r != want {
		t.Errorf("rejection %+v, want %+v", r, want)
	}
	if s := want.String(); s != `lock "a": read with token 2 refused, token 3 was already written` {
		t.Errorf("message %q", s)
	}
	if r := f.Rejected()[1]; r != (Rejection{Name: "a", Token: 4, Last: 5}) {
		t.Errorf("rejection %+v", r)
	}
}

func TestFencedResourceConcurrent(t *testing.T) {
	f := NewFencedResource()
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				_ = f.Write("a", uint64(i*writers+w+1))
			}
		})
	}
	wg.Wait()
	if got := f.Accepted() + uint64(f.Rejections()); got != writers*each {
		t.Fatalf("%d writes counted, want %d", got, writers*each)
	}
	if f.Accepted() == 0 {
		t.Fatal("nothing accepted")
	}
	// The highest token is always accepted, and nothing after it.
	if err := f.Write("a", writers*each); err == nil {
		t.Fatal("the highest token was accepted twice")
	}
}
