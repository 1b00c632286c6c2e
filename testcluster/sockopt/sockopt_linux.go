// Package sockopt reads socket options of connections, for tests that
// check how a node sets up its sockets.
package sockopt

import (
	"net"
	"syscall"
	"testing"
)

// KeepAlive returns a TCP connection's keepalive settings: whether it is
// on, the idle time and the interval between probes in seconds, and the
// number of probes.
func KeepAlive(tb testing.TB, nc net.Conn) (on, idle, interval, count int) {
	tb.Helper()
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		tb.Fatalf("sockopt: %T is not a TCP connection", nc)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	opt := func(level, name int) int {
		var v int
		var gerr error
		if err := raw.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), level, name) }); err != nil {
			tb.Fatal(err)
		}
		if gerr != nil {
			tb.Fatal(gerr)
		}
		return v
	}
	return opt(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE), opt(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE),
		opt(syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL), opt(syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT)
}
