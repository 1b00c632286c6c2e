package history

import (
	"testing"
	"time"
)

func ev(client, stream int, at time.Duration, line string) Event {
	e, ok := ParseEvent(line)
	if !ok {
		panic("bad event " + line)
	}
	e.Client, e.Stream, e.At = client, stream, at
	return e
}

func TestParseEvent(t *testing.T) {
	for line, want := range map[string]Event{
		"EVENT e held 7 v1":      {Name: "e", State: "held", Token: 7, Value: "v1"},
		"EVENT e shared 2 9":     {Name: "e", State: "shared", Token: 9},
		"EVENT e free 3":         {Name: "e", State: "free", Token: 3},
		"EVENT lost e 4":         {Name: "e", State: "lost", Token: 4},
		"EVENT wanted e 2":       {Name: "e", State: "wanted"},
		"EVENT session jeopardy": {Name: "session", State: "jeopardy"},
		"EVENT session safe":     {Name: "session", State: "safe"},
	} {
		if got, ok := ParseEvent(line); !ok || got != want {
			t.Errorf("ParseEvent(%q) = %+v, %v; want %+v", line, got, ok, want)
		}
	}
	for _, bad := range []string{"EVENT", "EVENT e held x v", "200 OK", "EVENT e gone 3"} {
		if _, ok := ParseEvent(bad); ok {
			t.Errorf("ParseEvent(%q) accepted", bad)
		}
	}
}

func TestCheckWatchTokens(t *testing.T) {
	ms := time.Millisecond
	valid := []Event{
		ev(1, 1, 1*ms, "EVENT e free 0"),
		ev(1, 1, 2*ms, "EVENT e held 3 a"),
		ev(1, 1, 3*ms, "EVENT e held 3 a"), // told twice after a takeover
		ev(1, 1, 4*ms, "EVENT e held 3 b"),
		ev(1, 1, 5*ms, "EVENT e free 3"),
		// Another stream of the same client starts over from the state now.
		ev(1, 2, 6*ms, "EVENT e held 5 c"),
		ev(2, 1, 1*ms, "EVENT e held 5 c"),
		ev(1, 1, 7*ms, "EVENT lost e 1"), // not a watch event
	}
	if c := CheckWatchTokens(valid); !c.OK() {
		t.Errorf("valid history: %s", c)
	}
	bad := append(valid, ev(2, 1, 9*ms, "EVENT e free 4"))
	if c := CheckWatchTokens(bad); len(c.Violations) != 1 {
		t.Errorf("backwards token: %s", c)
	}
}

func TestCheckWatchAgreement(t *testing.T) {
	s := time.Second
	events := []Event{
		ev(1, 1, 1*s, "EVENT e held 3 a"),
		ev(2, 1, 1*s, "EVENT e held 3 a"),
		ev(1, 1, 5*s, "EVENT e free 3"),
		ev(2, 1, 6*s, "EVENT e free 3"),
	}
	probe := func(at time.Duration, held bool, tok uint64, v string) Probe {
		return Probe{Name: "e", Call: at, Return: at + 10*time.Millisecond, Held: held, Token: tok, Value: v}
	}
	probes := []Probe{probe(4*s, false, 0, ""), probe(5*s, false, 0, ""), probe(7*s, false, 0, ""), probe(8*s, false, 0, "")}
	if c := CheckWatchAgreement("e", events, probes, 3*s, 10*s); !c.OK() {
		t.Errorf("valid history: %s", c)
	}
	// Watcher 2 never tells the name free: past the bound, a violation.
	stale := events[:3]
	late := append(probes, probe(14*s, false, 0, ""))
	if c := CheckWatchAgreement("e", stale, late, 3*s, 10*s); c.OK() {
		t.Errorf("stale watcher passed: %s", c)
	}
	// The same, probed only before the bound: inconclusive, not a violation.
	if c := CheckWatchAgreement("e", stale, probes, 3*s, 10*s); !c.OK() {
		t.Errorf("inconclusive reported as a violation: %s", c)
	}
	// A held leader must match token and value.
	held := []Probe{probe(2*s, true, 3, "a"), probe(3*s, true, 3, "a")}
	if _, ok := Agreement("e", events[:2], held); !ok {
		t.Error("held leader: no agreement")
	}
	wrong := []Probe{probe(2*s, true, 3, "b"), probe(3*s, true, 3, "b"), probe(20*s, true, 3, "b")}
	if c := CheckWatchAgreement("e", events[:2], wrong, 2*s, 10*s); c.OK() {
		t.Errorf("wrong value passed: %s", c)
	}
}

func TestCheckLostEvents(t *testing.T) {
	ms := time.Millisecond
	grant := Operation{Op: Op{Client: 1, Session: "s", Kind: LockWait, Name: "e", Wait: 1}, Result: Result{Status: Acquired, Token: 4}, Call: 1 * ms, Return: 2 * ms}
	unlock := Operation{Op: Op{Client: 1, Session: "s", Kind: Unlock, Name: "e"}, Result: Result{Status: NotLocked}, Call: 20 * ms, Return: 21 * ms}
	lost := Event{Client: 1, Session: "s", At: 10 * ms, Name: "e", State: "lost", Token: 4}
	if c := CheckLostEvents([]Operation{grant, unlock}, []Event{lost}, nil); !c.OK() {
		t.Errorf("valid history: %s", c)
	}
	// Unlocked after the grant was said lost: it was not released.
	held := unlock
	held.Status = Unlocked
	if c := CheckLostEvents([]Operation{grant, held}, []Event{lost}, nil); c.OK() {
		t.Errorf("unlock after lost passed: %s", c)
	}
	// Unless the session was granted the name again in between.
	again := Operation{Op: Op{Client: 1, Session: "s", Kind: Lock, Name: "e"}, Result: Result{Status: Acquired, Token: 6}, Call: 12 * ms, Return: 13 * ms}
	if c := CheckLostEvents([]Operation{grant, again, held}, []Event{lost}, nil); !c.OK() {
		t.Errorf("new grant in between: %s", c)
	}
	// A proclaim after the event proves the grant held too.
	pr := Proclaim{Client: 1, Session: "s", Name: "e", Value: "v", Call: 15 * ms, Return: 16 * ms}
	if c := CheckLostEvents([]Operation{grant, unlock}, []Event{lost}, []Proclaim{pr}); c.OK() {
		t.Errorf("proclaim after lost passed: %s", c)
	}
	// A proclaim before the event is fine.
	pr.Call, pr.Return = 5*ms, 6*ms
	if c := CheckLostEvents([]Operation{grant, unlock}, []Event{lost}, []Proclaim{pr}); !c.OK() {
		t.Errorf("proclaim before lost: %s", c)
	}
	// A lost event for a token the session never had.
	other := lost
	other.Token = 9
	if c := CheckLostEvents([]Operation{grant, unlock}, []Event{other}, nil); c.OK() {
		t.Errorf("lost of an unknown grant passed: %s", c)
	}
}
