package history

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Event is one EVENT line a client received, on the recorder's clock:
// the state of a watched name (held, shared, free) or a session event
// (lost, wanted). Campaigns are recorded as exclusive grants (Lock and
// LockWait operations) in the history, so that the overlap, tokens and
// lost-grants checkers cover "at most one leader" and growing terms; the
// events are what those checkers cannot see.
type Event struct {
	// Client is the receiving client; Stream numbers its connections, as
	// a watch is per connection and starts again with the state now.
	Client, Stream int
	// Session is the receiving session as the history names it; set for
	// lost events, which are about the session's own grants.
	Session string
	// At is when the line was read.
	At    time.Duration
	Name  string
	State string // "held", "shared", "free", "lost", "wanted"
	// Token is the holder's token (held), the latest token (shared), the
	// last token (free), or the lost grant's token (lost).
	Token uint64
	// Value is the published value of a held name ("-" for a plain lock).
	Value string
}

// ParseEvent reads an EVENT line; ok is false if it is not a well-formed
// one.
func ParseEvent(line string) (e Event, ok bool) {
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "EVENT" {
		return e, false
	}
	var tok string
	switch {
	case f[1] == "lost" && len(f) == 4:
		e.State, e.Name, tok = "lost", f[2], f[3]
	case f[1] == "wanted" && len(f) == 4:
		e.State, e.Name = "wanted", f[2]
		return e, true
	case f[1] == "session" && len(f) == 3 && (f[2] == "jeopardy" || f[2] == "safe"):
		// The session is at risk, or no longer: nothing a checker
		// judges yet.
		e.State, e.Name = f[2], "session"
		return e, true
	case len(f) == 5 && f[2] == "held":
		e.Name, e.State, tok, e.Value = f[1], "held", f[3], f[4]
	case len(f) == 5 && f[2] == "shared":
		e.Name, e.State, tok = f[1], "shared", f[4]
	case len(f) == 4 && f[2] == "free":
		e.Name, e.State, tok = f[1], "free", f[3]
	default:
		return e, false
	}
	t, err := strconv.ParseUint(tok, 10, 64)
	if err != nil {
		return e, false
	}
	e.Token = t
	return e, true
}

func (e Event) watched() bool { return e.State == "held" || e.State == "shared" || e.State == "free" }

func (e Event) String() string {
	s := fmt.Sprintf("EVENT %s %s %d", e.Name, e.State, e.Token)
	if e.State == "held" {
		s += " " + e.Value
	}
	return fmt.Sprintf("%s (client %d, stream %d, at %s)", s, e.Client, e.Stream, stamp(e.At))
}

// Proclaim is a `proclaim NAME VALUE` that was answered 200 OK.
type Proclaim struct {
	Client       int
	Session      string
	Name, Value  string
	Call, Return time.Duration
}

// Probe is an answer to `leader NAME`: Held with the leader's token and
// value, or not (409 no leader).
type Probe struct {
	Name         string
	Call, Return time.Duration
	Held         bool
	Token        uint64
	Value        string
}

func (p Probe) String() string {
	if !p.Held {
		return fmt.Sprintf("leader %s: no leader (%s..%s)", p.Name, stamp(p.Call), stamp(p.Return))
	}
	return fmt.Sprintf("leader %s: %d %s (%s..%s)", p.Name, p.Token, p.Value, stamp(p.Call), stamp(p.Return))
}

type stream struct {
	client, stream int
	name           string
}

// CheckWatchTokens checks that the tokens every watch tells only grow:
// within one watch stream (one client's connection) no event carries a
// token below one told before it. The same state may be told twice (after
// a takeover), so equal tokens are fine. Streams are checked apart: a new
// watch starts from the state now, which is no older, but this checker
// claims only what one stream shows.
func CheckWatchTokens(events []Event) Check {
	c := Check{Checker: "watch-tokens"}
	top := map[stream]Event{}
	for _, e := range events {
		if !e.watched() {
			continue
		}
		c.Ops++
		k := stream{e.Client, e.Stream, e.Name}
		t, ok := top[k]
		if ok && e.Token < t.Token {
			c.Violations = append(c.Violations, Violation{Name: e.Name, Message: fmt.Sprintf(
				"watch %q: token went backwards in one stream: %s after %s", e.Name, e, t)})
			continue
		}
		if !ok || e.Token > t.Token {
			top[k] = e
		}
	}
	c.Note = fmt.Sprintf("%d watch streams", len(top))
	return c
}

// agrees reports whether a watch event tells the state a probe saw. No
// leader agrees with any state that is not held, to claim only what is
// certain.
func agrees(e Event, p Probe) bool {
	if !p.Held {
		return e.State != "held"
	}
	return e.State == "held" && e.Token == p.Token && e.Value == p.Value
}

// Agreement returns the first moment (the Call of the second of two
// consecutive probes of name with the same answer) at which every
// watcher's latest event of name agreed with those probes; ok is false if
// there is none. A watcher is a client that received a watch event of
// name. Two equal probes around the moment make a change between them
// unlikely, which is what lets the test stop waiting.
func Agreement(name string, events []Event, probes []Probe) (at time.Duration, ok bool) {
	latest := func(client int, before time.Duration) (Event, bool) {
		var l Event
		found := false
		for _, e := range events {
			if e.Client == client && e.Name == name && e.watched() && e.At <= before && (!found || e.At >= l.At) {
				l, found = e, true
			}
		}
		return l, found
	}
	watchers := map[int]bool{}
	for _, e := range events {
		if e.Name == name && e.watched() {
			watchers[e.Client] = true
		}
	}
	var ps []Probe
	for _, p := range probes {
		if p.Name == name {
			ps = append(ps, p)
		}
	}
	for i := 1; i < len(ps); i++ {
		p1, p2 := ps[i-1], ps[i]
		if p1.Held != p2.Held || p1.Token != p2.Token || p1.Value != p2.Value {
			continue
		}
		all := true
		for w := range watchers {
			if e, ok := latest(w, p2.Call); !ok || !agrees(e, p1) {
				all = false
				break
			}
		}
		if all {
			return p2.Call, true
		}
	}
	return 0, false
}

// CheckWatchAgreement checks that after the last fault every watcher of
// name comes to tell what `leader NAME` answers: probes asked from since
// on must find a moment, within bound of since, when every watcher's
// latest event agrees with the leader (held with the same token and
// value, or not held when there is no leader). It reports a violation
// only when the probes went on past the bound without that moment.
func CheckWatchAgreement(name string, events []Event, probes []Probe, since, bound time.Duration) Check {
	c := Check{Checker: "watch-agreement"}
	var ps []Probe
	for _, p := range probes {
		if p.Name == name && p.Call >= since {
			ps = append(ps, p)
		}
	}
	c.Ops = len(ps)
	at, ok := Agreement(name, events, ps)
	switch {
	case ok && at <= since+bound:
		c.Note = fmt.Sprintf("watchers agreed with the leader %v after the faults", (at - since).Round(time.Millisecond))
	case len(ps) == 0:
		c.Violations = append(c.Violations, Violation{Name: name, Message: fmt.Sprintf("watch %q: no leader probe after %s: nothing to check", name, stamp(since))})
	case ps[len(ps)-1].Call < since+bound:
		c.Note = "probes stopped before the bound: inconclusive"
	default:
		msg := fmt.Sprintf("watch %q: watchers did not agree with the leader within %v of %s; last %s", name, bound, stamp(since), ps[len(ps)-1])
		last := ps[len(ps)-1]
		for _, e := range latestPerWatcher(name, events, last.Call) {
			if !agrees(e, last) {
				msg += "; " + e.String()
			}
		}
		c.Violations = append(c.Violations, Violation{Name: name, Message: msg})
	}
	return c
}

func latestPerWatcher(name string, events []Event, before time.Duration) []Event {
	l := map[int]Event{}
	for _, e := range events {
		if e.Name == name && e.watched() && e.At <= before {
			if o, ok := l[e.Client]; !ok || e.At >= o.At {
				l[e.Client] = e
			}
		}
	}
	out := make([]Event, 0, len(l))
	for _, e := range l {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Event) int { return a.Client - b.Client })
	return out
}

// CheckLostEvents checks that every `EVENT lost NAME TOKEN` a session was
// told is about a grant of that token the session was given, and that the
// grant was in fact released: no action of the session on the name
// invoked after the event was received shows the grant still held, unless
// the session may have been granted the name again in between. Such
// actions are a 200 Unlocked, a proclaim's 200 OK, and a grant carrying
// the lost token again (a re-entrant grant). A new grant in between is
// any take of the session on the name after the lost one that was granted
// with another or an unknown token, or whose outcome is unknown.
func CheckLostEvents(h []Operation, events []Event, proclaims []Proclaim) Check {
	c := Check{Checker: "lost-events"}
	type act struct {
		what      string
		call, ret time.Duration
	}
	lost := 0
	for _, e := range events {
		if e.State != "lost" {
			continue
		}
		lost++
		var grant *Operation
		unsure := false
		var mine []Operation
		for i := range h {
			o := h[i]
			if o.Session != e.Session || o.Name != e.Name {
				continue
			}
			mine = append(mine, o)
			if !o.Kind.Takes() || o.Call > e.At {
				continue
			}
			switch {
			case o.Status == Acquired && o.Token == e.Token && grant == nil:
				grant = &h[i]
			case o.Status == Unknown || o.Status == Acquired && o.Token == 0:
				unsure = true
			}
		}
		if grant == nil {
			if !unsure {
				c.Violations = append(c.Violations, Violation{Name: e.Name, Sessions: []string{e.Session}, Message: fmt.Sprintf(
					"lock %q: session %s was told %s, but was never granted token %d", e.Name, e.Session, e, e.Token)})
			}
			continue
		}
		var acts []act
		for _, o := range mine {
			if o.Call <= e.At || o.Status == Unknown {
				continue
			}
			if o.Kind == Unlock && o.Status == Unlocked || o.Kind.Takes() && o.Status == Acquired && o.Token == e.Token {
				acts = append(acts, act{o.describe(), o.Call, o.Return})
			}
		}
		for _, p := range proclaims {
			if p.Session == e.Session && p.Name == e.Name && p.Call > e.At {
				acts = append(acts, act{fmt.Sprintf("proclaim %q %s -> ok", p.Name, p.Value), p.Call, p.Return})
			}
		}
		for _, a := range acts {
			regranted := false
			for _, o := range mine {
				// A take invoked before the action ended, after the lost
				// grant (or of unknown outcome, which may take effect
				// late), that may have granted another term.
				maybeNew := o.Status == Unknown || o.Status == Acquired && o.Token != e.Token
				if o.Kind.Takes() && o.Call < a.ret && (o.Call > grant.Call || o.Status == Unknown) && maybeNew {
					regranted = true
					break
				}
			}
			if !regranted {
				c.Violations = append(c.Violations, Violation{Name: e.Name, Sessions: []string{e.Session}, Ops: []Operation{*grant}, Message: fmt.Sprintf(
					"lock %q: session %s was told %s of its grant %s, yet then %s (%s..%s) with no grant in between",
					e.Name, e.Session, e, grant, a.what, stamp(a.call), stamp(a.ret))})
				break
			}
		}
	}
	c.Ops = lost
	c.Note = fmt.Sprintf("%d lost events, %d proclaims", lost, len(proclaims))
	return c
}
