package node

import "testing"

// An ACL file is refused when an identity's name could not be told from
// the session ids it prefixes, a token names nobody or is not a single
// printable word, or a field is unknown (a typo would otherwise grant or
// deny silently).
func TestParseACL(t *testing.T) {
	a, err := ParseACL([]byte(`{"identities": {"app1": {"lock": ["jobs/"], "read": [""]}, "anonymous": {"read": ["pub/"]}}, "tokens": {"tok-1": "app1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := a.identityOf([]byte("tok-1")); !ok || id != "app1" {
		t.Fatalf("tok-1 names %q %v", id, ok)
	}
	for _, c := range []struct {
		id, name   string
		lock, read bool
	}{
		{"app1", "jobs/x", true, true}, {"app1", "other", false, true},
		{"anonymous", "pub/a", false, true}, {"anonymous", "jobs/x", false, false},
		{"nobody", "jobs/x", false, false},
	} {
		if a.mayLock(c.id, []byte(c.name)) != c.lock || a.mayRead(c.id, []byte(c.name)) != c.read {
			t.Errorf("%s on %s: lock %v read %v, want %v %v", c.id, c.name, a.mayLock(c.id, []byte(c.name)), a.mayRead(c.id, []byte(c.name)), c.lock, c.read)
		}
	}
	if a.mayList("nobody") || !a.mayList("anonymous") {
		t.Error("mayList")
	}
	for _, bad := range []string{
		`{"identities": {"a:b": {"lock": [""]}}}`,
		`{"identities": {"a": {"lock": [""]}}, "tokens": {"t": "b"}}`,
		`{"identities": {"a": {"lock": [""]}}, "tokens": {"two words": "a"}}`,
		`{"identities": {"a": {"locks": [""]}}}`,
		`not json`,
	} {
		if _, err := ParseACL([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}
