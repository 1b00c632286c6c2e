package ring

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestStateString(t *testing.T) {
	for st, want := range map[State]string{Alive: "alive", Suspect: "suspect", Dead: "dead", Left: "left"} {
		if got := st.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(st), got, want)
		}
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := Meta{ID: "n-1.a_b", Nonce: NewNonce(), ClientAddr: "127.0.0.1:7000", PeerAddr: "[::1]:7001",
		Voter: true, Expect: 3, RingHash: RingHash(128), Leaving: true}
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("round trip: got %+v, want %+v", got, m)
	}
	t.Logf("typical meta: %d bytes: %s", len(b), b)
}

func TestMetaValidate(t *testing.T) {
	ok := Meta{ID: "n1", Nonce: "x", RingHash: "h"}
	for name, tc := range map[string]struct {
		edit func(*Meta)
		want error
	}{
		"ok":             {func(*Meta) {}, nil},
		"voter":          {func(m *Meta) { m.Voter, m.Expect = true, 3 }, nil},
		"empty id":       {func(m *Meta) { m.ID = "" }, ErrInvalidMeta},
		"long id":        {func(m *Meta) { m.ID = strings.Repeat("a", maxIDLen+1) }, ErrInvalidMeta},
		"space in id":    {func(m *Meta) { m.ID = "n 1" }, ErrInvalidMeta},
		"no nonce":       {func(m *Meta) { m.Nonce = "" }, ErrInvalidMeta},
		"no ring hash":   {func(m *Meta) { m.RingHash = "" }, ErrInvalidMeta},
		"bad client":     {func(m *Meta) { m.ClientAddr = "nohost" }, ErrInvalidMeta},
		"voter no exp":   {func(m *Meta) { m.Voter = true }, ErrInvalidMeta},
		"expect no vote": {func(m *Meta) { m.Expect = 3 }, ErrInvalidMeta},
		"negative":       {func(m *Meta) { m.Expect = -1 }, ErrInvalidMeta},
	} {
		m := ok
		tc.edit(&m)
		if err := m.Validate(); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: Validate() = %v, want %v", name, err, tc.want)
		}
	}
}

func TestDecodeMetaRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":    nil,
		"garbage":  []byte("not json"),
		"no id":    []byte(`{"n":"x","r":"h"}`),
		"too long": []byte(`{"id":"n1","n":"` + strings.Repeat("x", MaxMetaSize) + `","r":"h"}`),
	} {
		if _, err := DecodeMeta(b); err == nil {
			t.Errorf("%s: DecodeMeta accepted %q", name, b)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := newTestConfig("n1", "127.0.0.1:7946")
	if err := base.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	if err := DefaultConfig().Validate(); err == nil {
		t.Error("DefaultConfig() without Meta validated")
	}
	for name, edit := range map[string]func(*Config){
		"no port":       func(c *Config) { c.BindAddr = "127.0.0.1" },
		"hostname":      func(c *Config) { c.BindAddr = "localhost:0" },
		"bad port":      func(c *Config) { c.BindAddr = "127.0.0.1:70000" },
		"bad join":      func(c *Config) { c.Join = []string{"127.0.0.1"} },
		"zero retry":    func(c *Config) { c.RetryJoinInterval = 0 },
		"zero rejoin":   func(c *Config) { c.RejoinInterval = 0 },
		"zero bcast":    func(c *Config) { c.BroadcastTimeout = 0 },
		"invalid meta":  func(c *Config) { c.Meta.Nonce = "" },
		"oversize meta": func(c *Config) { c.Meta.PeerAddr = strings.Repeat("p", MaxMetaSize) + ":1" },
	} {
		c := base
		edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate() accepted %+v", name, c)
		}
	}
	c := base
	c.BindAddr = ":0" // empty host means all interfaces
	if err := c.Validate(); err != nil {
		t.Errorf(":0: %v", err)
	}
	if d := DefaultConfig(); d.RetryJoinInterval != time.Second || d.RejoinInterval != 10*time.Second {
		t.Errorf("DefaultConfig intervals = %v, %v", d.RetryJoinInterval, d.RejoinInterval)
	}
}

// TestSuspectLogLine pins the memberlist log line the Ring reads suspicion
// from; TestShutdownIsDead checks that memberlist still writes it.
func TestSuspectLogLine(t *testing.T) {
	var got []string
	b := &logBridge{log: newDiscardLogger(), onSuspect: func(n string) { got = append(got, n) }}
	for _, line := range []string{
		"[INFO] memberlist: Suspect n3 has failed, no acks received\n",
		"[DEBUG] memberlist: Failed UDP ping: n3 (timeout reached)\n",
		"[INFO] memberlist: Marking n3 as failed, suspect timeout reached (1 peer confirmations)\n",
		"[INFO] memberlist: Suspect  has failed, no acks received\n",
	} {
		if _, err := b.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(got, []string{"n3"}) {
		t.Errorf("suspects = %q, want [n3]", got)
	}
}
