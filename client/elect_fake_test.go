package client_test

import (
	"testing"
	"time"

	"github.com/elock/elock/client"
)

// TestElectionFake: the request lines of elections, and the answers a
// real server gives only under faults: a 504 settled by the token that
// rides with the campaign, a 503 retried, a malformed leader reply.
func TestElectionFake(t *testing.T) {
	f := startFake(t, map[string][][]string{
		"campaign e host:1 1": {{"504 unknown"}},
		"token e":             {{"200 7"}},
		"campaign te v":       {{"504 unknown"}},
		"token te":            {{"403 not_yours"}},
		"proclaim e host:2":   {{"503 busy"}, {"200 OK"}},
		"leader e":            {{"200 LEADER 7 host:2"}},
		"leader none":         {{"409 no leader"}},
		"leader plain":        {{"200 LEADER 9 -"}},
		"leader bad":          {{"200 LEADER x"}},
	})
	c := dial(t, []string{f.addr()}, client.WithMaxWait(time.Second))
	ctx := testCtx(t)
	// After a 504, the token shows the campaign was granted.
	if tok, err := c.Campaign(ctx, "e", "host:1"); err != nil || tok != 7 || c.Held()["e"] != 7 {
		t.Fatalf("Campaign after a 504 = %d, %v, Held %v; want 7", tok, err, c.Held())
	}
	// Another session leads: a campaign that does not wait was refused,
	// and is not asked again.
	if _, err := c.TryCampaign(ctx, "te", "v"); err != client.ErrUnavailable || f.times("campaign te v") != 1 {
		t.Fatalf("TryCampaign after a 504 with another leader = %v, sent %d times; want ErrUnavailable once", err, f.times("campaign te v"))
	}
	if err := c.Proclaim(ctx, "e", "host:2"); err != nil || f.times("proclaim e host:2") != 2 {
		t.Fatalf("Proclaim after a 503 = %v, sent %d times; want nil, twice", err, f.times("proclaim e host:2"))
	}
	for name, want := range map[string]client.LeaderInfo{"e": {Token: 7, Value: "host:2"}, "plain": {Token: 9}} {
		if li, err := c.Leader(ctx, name); err != nil || li != want {
			t.Fatalf("Leader %s = %+v, %v; want %+v", name, li, err, want)
		}
	}
	if _, err := c.Leader(ctx, "none"); err != client.ErrNoLeader {
		t.Fatalf("Leader on 409 = %v, want ErrNoLeader", err)
	}
	// A malformed reply fails the call at once, not after retries.
	if li, err := c.Leader(ctx, "bad"); err == nil || f.times("leader bad") != 1 {
		t.Fatalf("Leader on a malformed reply = %+v, %v, sent %d times; want an error, once", li, err, f.times("leader bad"))
	}
}
