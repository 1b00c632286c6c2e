package node

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// peerHungUp reports whether the client has sent its FIN (or a reset),
// even while bytes it sent before are still unread: the socket has left
// ESTABLISHED. A hand-over checks this at the moment of granting, because
// the kernel often knows of a close that the connection's goroutine has
// not read yet, and a waiter that has gone must not be handed the lock.
func peerHungUp(raw syscall.RawConn) bool {
	if raw == nil {
		return false
	}
	gone := true // a socket we can no longer look at is closed
	raw.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		gone = err != nil || info.State != unix.BPF_TCP_ESTABLISHED
	})
	return gone
}
