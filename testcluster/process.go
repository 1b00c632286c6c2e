// Package testcluster runs real elockd processes for tests: it builds the
// binaries once per test binary, starts processes on loopback addresses,
// waits until they serve, and stops, kills, pauses and resumes them. It
// keeps every process's log and prints it when a test fails.
//
// Start runs one standalone elockd. New runs a mesh cluster: one process
// per node, each on its own loopback address, and waits until the nodes
// agree (Cluster.WaitConverged). Conn is a raw protocol connection.
package testcluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartTimeout bounds how long a process may take to log that it serves.
const StartTimeout = 30 * time.Second

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{} // command name -> binary path
)

// Binary returns the path of cmd/NAME built from this module, building it
// the first time it is asked for. When the calling test binary has the
// race detector, so does the build, and a race in a child process makes it
// exit non-zero.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "elock-testcluster-")
		if err != nil {
			tb.Fatalf("testcluster: %v", err)
		}
		buildDir = d
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out := filepath.Join(buildDir, name)
	args := []string{"build", "-o", out}
	if raceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, "github.com/elock/elock/cmd/"+name)
	cmd := exec.Command(goBin, args...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Run(); err != nil {
		tb.Fatalf("testcluster: go %s: %v\n%s", strings.Join(args, " "), err, log.String())
	}
	built[name] = out
	return out
}

// Cleanup removes the built binaries. A TestMain may call it after m.Run.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
		buildDir, built = "", map[string]string{}
	}
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// Env is the environment of child processes: a race-enabled child must
// not sleep a second at exit, which would slow every stop.
func Env() []string {
	return append(os.Environ(), strings.TrimSpace("GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE")))
}

// Log is a process's combined output, safe for concurrent use.
type Log struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Log) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *Log) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Process is one running elockd.
type Process struct {
	tb   testing.TB
	Args []string
	Addr string // client address, from the "serving" log line
	// HTTPAddr is the -http address, from the same line; empty without.
	HTTPAddr string
	log      Log
	cmd      *exec.Cmd
	done     chan struct{} // closed once the process has exited
	state    *os.ProcessState
	// serving receives the address of the serving line.
	serving chan []string

	mu       sync.Mutex // guards stopping
	stopping bool       // the test ended the process on purpose
}

var (
	servingLine = regexp.MustCompile(`msg=serving (?:\S+ )*?addr=(\S+)`)
	httpAttr    = regexp.MustCompile(` http=(\S+)`)
	// The same with -log-format json.
	servingJSON  = regexp.MustCompile(`"msg":"serving",.*?"addr":"([^"]+)"`)
	httpAttrJSON = regexp.MustCompile(`"http":"([^"]+)"`)
)

// Start runs elockd with flags (plus -listen 127.0.0.1:0 unless flags set
// -listen) and returns once it logs that it serves. The test's cleanup
// stops it with SIGTERM, and reports a process that died on its own or
// exited with an error.
func Start(tb testing.TB, flags ...string) *Process {
	tb.Helper()
	p := Launch(tb, flags...)
	if err := p.WaitServing(StartTimeout); err != nil {
		tb.Fatalf("testcluster: %v\nlog:\n%s", err, p.Log())
	}
	return p
}

// Launch starts elockd without waiting for it to serve.
func Launch(tb testing.TB, flags ...string) *Process {
	tb.Helper()
	args := flags
	if !hasFlag(flags, "-listen") {
		args = append([]string{"-listen", "127.0.0.1:0"}, flags...)
	}
	p, err := launch(tb, args)
	if err != nil {
		tb.Fatalf("testcluster: %v", err)
	}
	tb.Cleanup(p.cleanup)
	return p
}

// launch starts elockd with exactly args. Unlike Launch it registers no
// cleanup: the caller owns the process and must stop it.
func launch(tb testing.TB, args []string) (*Process, error) {
	tb.Helper()
	cmd := exec.Command(Binary(tb, "elockd"), args...)
	cmd.Env = Env()
	cmd.SysProcAttr = sysProcAttr()
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = cmd.Stderr
	p := &Process{tb: tb, Args: args, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting elockd: %w", err)
	}
	p.serving = make(chan []string, 1)
	go p.read(pipe)
	return p, nil
}

func hasFlag(flags []string, name string) bool {
	for _, f := range flags {
		if f == name || f == "-"+name || strings.HasPrefix(f, name+"=") || strings.HasPrefix(f, "-"+name+"=") {
			return true
		}
	}
	return false
}

// read copies the process's output into its log and notes the serving
// line, then reaps the process.
func (p *Process) read(pipe interface{ Read([]byte) (int, error) }) {
	br := bufio.NewReader(pipe)
	found := false
	for {
		line, err := br.ReadString('\n')
		p.log.Write([]byte(line))
		if !found {
			serving, http := servingLine, httpAttr
			if strings.HasPrefix(line, "{") {
				serving, http = servingJSON, httpAttrJSON
			}
			if m := serving.FindStringSubmatch(line); m != nil {
				found = true
				addrs := []string{m[1], ""}
				if h := http.FindStringSubmatch(line); h != nil {
					addrs[1] = h[1]
				}
				p.serving <- addrs
			}
		}
		if err != nil {
			break
		}
	}
	p.cmd.Wait()
	p.state = p.cmd.ProcessState
	close(p.done)
}

// WaitServing waits for the serving line and sets Addr.
func (p *Process) WaitServing(limit time.Duration) error {
	select {
	case addrs := <-p.serving:
		p.Addr, p.HTTPAddr = addrs[0], addrs[1]
		return nil
	case <-p.done:
		return fmt.Errorf("elockd %v exited before serving: %v", p.Args, p.state)
	case <-time.After(limit):
		return fmt.Errorf("elockd %v did not serve within %v", p.Args, limit)
	}
}

// Log returns everything the process has written so far.
func (p *Process) Log() string { return p.log.String() }

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// State is the exit state, once Done is closed.
func (p *Process) State() *os.ProcessState { return p.state }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

func (p *Process) markStopping() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
}

// stopped reports whether the test ended the process on purpose.
func (p *Process) stopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopping
}

// crashed reports whether the process has exited without the test
// ending it.
func (p *Process) crashed() bool { return !p.Alive() && !p.stopped() }

// killedBy reports whether the process, which must have exited, died of
// signal s.
func (p *Process) killedBy(s syscall.Signal) bool {
	ws, ok := p.state.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == s
}

// Stop sends SIGTERM and waits up to limit for the exit, then kills the
// process. It returns how long the exit took and an error if the process
// had to be killed or did not exit with status 0.
func (p *Process) Stop(limit time.Duration) (time.Duration, error) {
	p.markStopping()
	start := time.Now()
	p.signal(syscall.SIGCONT) // a paused process cannot handle SIGTERM
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(limit):
		// Its goroutines' stacks, in its log, say where it hung.
		p.signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		return time.Since(start), fmt.Errorf("elockd did not exit within %v of SIGTERM; its stacks are in its log", limit)
	}
	d := time.Since(start)
	if !p.state.Success() {
		return d, fmt.Errorf("elockd exited with %v after SIGTERM", p.state)
	}
	return d, nil
}

// Kill sends SIGKILL and waits for the exit.
func (p *Process) Kill() {
	p.markStopping()
	p.signal(syscall.SIGKILL)
	<-p.done
}

// DumpStacks makes the process write every goroutine's stack into its
// log and exit (SIGQUIT, after SIGCONT in case it is paused), waiting up
// to limit before it kills it.
func (p *Process) DumpStacks(limit time.Duration) {
	p.markStopping()
	p.signal(syscall.SIGCONT)
	p.signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// Pause stops the process with SIGSTOP, as a long GC pause would. The
// signal takes effect asynchronously, so on Linux Pause returns only once
// every thread has stopped (or after signalWait): a test can count on a
// paused process answering nothing.
func (p *Process) Pause() {
	p.signal(syscall.SIGSTOP)
	p.awaitStopped(true)
}

// Resume continues a paused process with SIGCONT and, on Linux, returns
// once it runs again (or after signalWait).
func (p *Process) Resume() {
	p.signal(syscall.SIGCONT)
	p.awaitStopped(false)
}

// signalWait bounds how long Pause and Resume wait for the signal to take
// effect.
const signalWait = 5 * time.Second

func (p *Process) awaitStopped(want bool) {
	deadline := time.Now().Add(signalWait)
	for p.Alive() && time.Now().Before(deadline) {
		stopped, known := allStopped(p.Pid())
		if !known || stopped == want {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *Process) signal(s syscall.Signal) {
	if err := p.cmd.Process.Signal(s); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.tb.Errorf("testcluster: signal %v to elockd: %v", s, err)
	}
}

// Alive reports whether the process is still running.
func (p *Process) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *Process) cleanup() {
	p.mu.Lock()
	stopping := p.stopping
	p.stopping = true
	p.mu.Unlock()
	if p.Alive() {
		if _, err := p.Stop(10 * time.Second); err != nil {
			p.tb.Errorf("testcluster: %v", err)
		}
	} else if !stopping {
		p.tb.Errorf("testcluster: elockd %v exited on its own: %v", p.Args, p.state)
	}
	if p.tb.Failed() {
		p.tb.Logf("elockd %v log:\n%s", p.Args, p.Log())
	}
}
