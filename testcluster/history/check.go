package history

import (
	"fmt"
	"strings"
	"time"
)

// A Verdict is what a checker concluded. Check and *Linearizability are
// verdicts.
type Verdict interface {
	// OK reports whether the checker found nothing wrong.
	OK() bool
	// String summarises the verdict and every violation, first line first.
	String() string
}

// Check is the verdict of a checker that lists violations.
type Check struct {
	// Checker names the property: "tokens", "overlap", "permits",
	// "lost-grants", "fenced-resource".
	Checker string
	// Ops is how many operations the checker looked at.
	Ops int
	// Note says what else the checker looked at, such as how many holds
	// of each mode; "" if nothing.
	Note       string
	Violations []Violation
}

// Violation is one breach of the checked property.
type Violation struct {
	// Name is the lock name concerned.
	Name string
	// Sessions are the sessions concerned.
	Sessions []string
	// Ops are the operations that prove it, as they appear in the history.
	Ops []Operation
	// Message says what happened: which names, sessions, clients, times
	// and tokens.
	Message string
}

// OK reports whether there is no violation.
func (c Check) OK() bool { return len(c.Violations) == 0 }

// maxListed bounds how many violations String lists.
const maxListed = 50

// String summarises c: a header line, then one line per violation (at most
// maxListed).
func (c Check) String() string {
	var b strings.Builder
	looked := fmt.Sprintf("%d operations", c.Ops)
	if c.Note != "" {
		looked += "; " + c.Note
	}
	if c.OK() {
		fmt.Fprintf(&b, "%s: ok (%s)", c.Checker, looked)
		return b.String()
	}
	fmt.Fprintf(&b, "%s: %d violations (%s)", c.Checker, len(c.Violations), looked)
	for i, v := range c.Violations {
		if i == maxListed {
			fmt.Fprintf(&b, "\n  ... %d more", len(c.Violations)-maxListed)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(v.Message)
	}
	return b.String()
}

// Err returns nil if OK, else an error carrying String.
func (c Check) Err() error {
	if c.OK() {
		return nil
	}
	return fmt.Errorf("history: %s", c)
}

// malformed is the verdict on a history that could not be checked.
func malformed(checker string, n int, err error) Check {
	return Check{Checker: checker, Ops: n, Violations: []Violation{{Message: err.Error()}}}
}

func violation(name string, msg string, ops ...rec) Violation {
	v := Violation{Name: name, Message: msg}
	seen := map[string]bool{}
	for _, o := range ops {
		v.Ops = append(v.Ops, o.Operation)
		if !seen[o.Session] {
			seen[o.Session] = true
			v.Sessions = append(v.Sessions, o.Session)
		}
	}
	return v
}

// CheckAll runs every checker on h: tokens, overlap, permits, lost
// grants, and linearizability with the given timeout. The error reports a
// malformed history.
func CheckAll(h []Operation, timeout time.Duration) ([]Verdict, error) {
	if err := Validate(h); err != nil {
		return nil, err
	}
	lin, err := CheckLinearizable(h, timeout)
	if err != nil {
		return nil, err
	}
	return []Verdict{CheckTokens(h), CheckOverlap(h), CheckPermits(h), CheckLostGrants(h), lin}, nil
}

// AllOK reports whether every verdict is OK.
func AllOK(vs []Verdict) bool {
	for _, v := range vs {
		if !v.OK() {
			return false
		}
	}
	return true
}
