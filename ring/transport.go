package ring

import (
	"fmt"
	"log"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

// transport is memberlist's NetTransport, except that its TCP dials
// (push-pull syncs, fallback probes) come from the gossip IP, as its UDP
// packets already do. Without that the kernel picks the source: on
// loopback, 127.0.0.1 for every node, so neither peers nor firewall rules
// could tell nodes apart by address.
type transport struct {
	*memberlist.NetTransport
	source net.Addr // nil when bound to every interface
}

// newTransport binds host:port, retrying a port the kernel picked (port 0)
// that UDP and TCP could not both have, as memberlist does for its own.
func newTransport(host string, port int, logger *log.Logger) (*transport, error) {
	var source net.Addr
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		source = &net.TCPAddr{IP: ip}
	}
	cfg := &memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logger}
	tries := 1
	if port == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		if nt, err = memberlist.NewNetTransport(cfg); err == nil {
			return &transport{NetTransport: nt, source: source}, nil
		}
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("ring: gossip transport on %s: %w", net.JoinHostPort(host, fmt.Sprint(port)), err)
}

func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: t.source}
	return d.Dial("tcp", a.Addr)
}

func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}
