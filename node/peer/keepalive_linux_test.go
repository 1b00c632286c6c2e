package peer

import (
	"net"
	"testing"
	"time"

	"github.com/elock/elock/testcluster/sockopt"
)

// Both ends of a peer connection probe a silent peer every KeepAlive,
// three times: a peer that vanished without closing is found in about
// 45 s, and what waited on it fails as lost.
func TestPeerConnectionsKeepAlive(t *testing.T) {
	accepted := make(chan net.Conn, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMux(&spyListener{Listener: ln, got: accepted}, nil, nil)
	m.Serve(NewServer(&testHandler{}, nil), nil)
	t.Cleanup(func() { m.Close() })
	c := NewClient(ln.Addr().String(), time.Second)
	defer c.Close()
	if _, err := c.Call(ctx(t), mEcho, nil); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	dialled := c.cur.nc
	c.mu.Unlock()
	secs := int(KeepAlive / time.Second)
	for name, nc := range map[string]net.Conn{"dialled": dialled, "accepted": <-accepted} {
		if on, idle, intvl, cnt := sockopt.KeepAlive(t, nc); on != 1 || idle != secs || intvl != secs || cnt != 3 {
			t.Errorf("%s: keepalive %d, idle %d s, interval %d s, count %d; want on, %d, %d, 3", name, on, idle, intvl, cnt, secs, secs)
		}
	}
}

// spyListener hands each accepted connection to got as well.
type spyListener struct {
	net.Listener
	got chan net.Conn
}

func (l *spyListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err == nil {
		select {
		case l.got <- nc:
		default:
		}
	}
	return nc, err
}
