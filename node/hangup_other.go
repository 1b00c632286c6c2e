//go:build !linux

package node

import "syscall"

// peerHungUp cannot look at the socket's state here; the connection's
// goroutine notices the close when it reads.
func peerHungUp(syscall.RawConn) bool { return false }
