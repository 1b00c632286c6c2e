//go:build !linux

package main

// hangUp closes the connection; elsewhere than Linux there is no portable
// way to wait for the server's kernel to have the FIN.
func (c *client) hangUp() { c.nc.Close() }
