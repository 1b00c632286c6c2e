//go:build linux

package main

import (
	"golang.org/x/sys/unix"

	"github.com/elock/elock/testcluster/wait"
)

// hangUp closes the connection once the server's kernel has its FIN: a
// plain close returns before that, and under load the server may read a
// later client's request (sent on another socket) before it learns of
// this close. Waiting makes "closed, then" in a test mean what it says.
func (c *client) hangUp() {
	c.t.Helper()
	if err := c.nc.CloseWrite(); err != nil {
		c.t.Fatalf("%s: close write: %v", c.name, err)
	}
	raw, err := c.nc.SyscallConn()
	if err != nil {
		c.t.Fatal(err)
	}
	wait.For(c.t, readTimeout, c.name+"'s FIN to be acknowledged", func() bool {
		acked := true
		raw.Control(func(fd uintptr) {
			info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			acked = err != nil || info.State != unix.BPF_TCP_ESTABLISHED && info.State != unix.BPF_TCP_FIN_WAIT1
		})
		return acked
	})
	c.nc.Close()
}
