package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// ACL is the client port's access control (-acl FILE). Each identity may
// lock the names under some prefixes and only read (info, where, stats,
// members) those under others; every other command concerns a client's
// own session and is allowed to all. A connection's identity is its
// client certificate's common name, or the identity a token names
// ("auth TOKEN"), or Anonymous. Sessions belong to the identity that
// made them: the same id under another identity is another session.
type ACL struct {
	rules  map[string]Rules
	tokens map[[sha256.Size]byte]string // the SHA-256 of a token -> its identity
}

// Rules are what one identity may do.
type Rules struct {
	// Lock: prefixes of the names it may lock, unlock and ask the token
	// of (which includes reading them).
	Lock []string `json:"lock"`
	// Read: prefixes of the names it may only read.
	Read []string `json:"read"`
}

// Anonymous is the identity of a connection that has shown neither a
// client certificate nor a token: it may do what the ACL gives it, if
// anything.
const Anonymous = "anonymous"

// aclFile is the file's form:
//
//	{"identities": {"app1": {"lock": ["jobs/"], "read": [""]}},
//	 "tokens": {"a-long-random-token": "app1"}}
type aclFile struct {
	Identities map[string]Rules  `json:"identities"`
	Tokens     map[string]string `json:"tokens"`
}

var identityName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ParseACL reads an ACL file. Identity names are of [A-Za-z0-9._-]; a
// token is printable ASCII without spaces and names a listed identity.
func ParseACL(b []byte) (*ACL, error) {
	var f aclFile
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	a := &ACL{rules: make(map[string]Rules), tokens: make(map[[sha256.Size]byte]string)}
	for id, r := range f.Identities {
		if !identityName.MatchString(id) {
			return nil, fmt.Errorf("acl: identity %q: want a name of [A-Za-z0-9._-]", id)
		}
		a.rules[id] = r
	}
	for tok, id := range f.Tokens {
		if tok == "" || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }) {
			return nil, fmt.Errorf("acl: a token of identity %q is empty or not printable ASCII without spaces", id)
		}
		if _, ok := a.rules[id]; !ok {
			return nil, fmt.Errorf("acl: a token names identity %q, which has no rules", id)
		}
		a.tokens[sha256.Sum256([]byte(tok))] = id
	}
	return a, nil
}

// identityOf returns the identity a token names.
func (a *ACL) identityOf(token []byte) (string, bool) {
	id, ok := a.tokens[sha256.Sum256(token)]
	return id, ok
}

func under(prefixes []string, name []byte) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return bytes.HasPrefix(name, []byte(p)) })
}

// mayLock reports whether identity id may lock name.
func (a *ACL) mayLock(id string, name []byte) bool { return under(a.rules[id].Lock, name) }

// mayRead reports whether identity id may read name.
func (a *ACL) mayRead(id string, name []byte) bool {
	r := a.rules[id]
	return under(r.Read, name) || under(r.Lock, name)
}

// mayList reports whether identity id may read the node's state (stats,
// members): it may read or lock something.
func (a *ACL) mayList(id string) bool {
	r := a.rules[id]
	return len(r.Read) > 0 || len(r.Lock) > 0
}

// IdentityOf returns the identity a token names, for callers outside
// this package that authenticate by token (the HTTP endpoint's bearer
// tokens).
func (a *ACL) IdentityOf(token string) (string, bool) { return a.identityOf([]byte(token)) }

// MayRead reports whether identity id may read name.
func (a *ACL) MayRead(id string, name []byte) bool { return a.mayRead(id, name) }

// MayList reports whether identity id may read the node's state: it may
// read or lock something.
func (a *ACL) MayList(id string) bool { return a.mayList(id) }

// MayReadAll reports whether identity id may read every name: a rule of
// the empty prefix. What shows everything at once (a heap profile holds
// every name and session id) needs it.
func (a *ACL) MayReadAll(id string) bool { return a.mayRead(id, nil) }

// ValidIdentity reports whether s has the form of an identity name, as
// a client certificate's common name must to be one.
func ValidIdentity(s string) bool { return identityName.MatchString(s) }
