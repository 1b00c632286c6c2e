package main

import (
	"fmt"
	"strings"
	"testing"
)

// Elections over a real elockd: campaign, proclaim, leader, resign.
func TestElectionProtocol(t *testing.T) {
	t.Parallel()
	p := startElockd(t)
	a, b, o := p.dial(t, "A"), p.dial(t, "B"), p.dial(t, "O")

	o.expect("leader svc", "409 no leader")
	a.expect("campaign svc host-a:8080", "200 Elected")
	ta := a.token("svc")
	o.expect("leader svc", fmt.Sprintf("200 LEADER %d host-a:8080", ta))
	a.expect("campaign svc host-a:8080", "200 Elected") // re-entrant
	b.expect("campaign svc host-b", "409 Unavailable")
	b.expect("proclaim svc host-b", "403 not_yours")
	a.expect("proclaim svc host-a:9090", "200 OK")
	o.expect("leader svc", fmt.Sprintf("200 LEADER %d host-a:9090", ta))
	o.expect("proclaim nobody x", "403 not_locked")

	// A waiting campaign is elected when the leader resigns, with its
	// own value and a higher term.
	b.send("campaign svc host-b 20")
	o.waitWaiters("svc", 1)
	b.noReply("the leader holds it")
	a.expect("unlock svc", "200 Unlocked")
	b.expectRead("the next leader", "200 Elected")
	tb := b.token("svc")
	if tb <= ta {
		t.Fatalf("term %d after %d", tb, ta)
	}
	o.expect("leader svc", fmt.Sprintf("200 LEADER %d host-b", tb))

	// A plain lock leads with no value; readers lead nothing.
	b.expect("unlock svc", "200 Unlocked")
	a.expect("lock svc", "200 Acquired")
	o.expect("leader svc", fmt.Sprintf("200 LEADER %d -", a.token("svc")))
	a.expect("unlock svc", "200 Unlocked")
	a.expect("rlock svc", "200 Acquired")
	o.expect("leader svc", "409 no leader")
	a.expect("proclaim svc x", "403 not_yours")
	a.expect("unlock svc", "200 Unlocked")

	// Bad input is refused and the connection goes on.
	o.expect("campaign svc "+strings.Repeat("v", 251), "413 value too long (max 250 bytes)")
	o.expect("campaign svc v x", "400 bad wait: want whole seconds from 0 to 86400")
	o.expect("campaign svc", `400 Unknown command: "campaign"`)
	o.expect("proclaim svc", `400 Unknown command: "proclaim"`)
	o.expect("leader", `400 Unknown command: "leader"`)
	o.expect("acquire svc 2", "200 Acquired")
	a.expect("campaign svc v", "400 kind mismatch: svc is a semaphore")
	o.expect("leader svc", "409 no leader")
}
