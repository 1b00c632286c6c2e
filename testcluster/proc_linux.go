package testcluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr makes the kernel kill a child when the test binary dies, so
// that a test binary killed by "go test -timeout" or by hand leaves no
// elockd behind. Pdeathsig fires when the OS thread that started the
// child exits; the Go runtime ends threads only for goroutines that exit
// while locked to one, which this package never does (go.dev/issue/27505).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// allStopped reports whether every thread of process pid is stopped by a
// signal (state T in /proc), and whether it could tell.
func allStopped(pid int) (stopped, known bool) {
	stats, err := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "stat"))
	if err != nil || len(stats) == 0 {
		return false, false
	}
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			return false, false // the thread or the process is gone
		}
		// "pid (comm) S ...": comm may hold spaces and parentheses, the
		// state follows the last ")".
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) || s[i+2] != 'T' {
			return false, true
		}
	}
	return true, true
}
