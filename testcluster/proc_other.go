//go:build !linux

package testcluster

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }

// allStopped cannot tell without /proc.
func allStopped(pid int) (stopped, known bool) { return false, false }
