// Package nemesis injects faults into a testcluster: network partitions
// of every shape (symmetric halves, an isolated node, one-way loss, a
// bridge), besides the kills, pauses, joins and leaves the cluster does
// itself, on a seeded schedule.
//
// Network faults are iptables rules that drop packets between the nodes'
// loopback addresses, UDP (gossip) and TCP (RPC, raft, clients) alike.
// They are only ever installed inside a private network namespace (see
// Main), never on the host's firewall.
//
// The suite itself (TestNemesis) and how to run it at length are in the
// README, under "Fault suite".
package nemesis

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// envInNetns marks a process re-executed inside its private namespace.
const envInNetns = "ELOCK_NEMESIS_NETNS"

// Main runs the tests inside a private network namespace: unless it is
// already in one, it re-executes the test binary under `unshare -rn`,
// with the loopback interface up, and returns its exit status. If the
// namespace cannot be made it says why and fails: a fault suite that
// cannot inject its faults must not pass by skipping them.
func Main(m *testing.M) int {
	if os.Getenv(envInNetns) == "1" {
		return m.Run()
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		fmt.Fprintln(os.Stderr, "nemesis: cannot make a private network namespace: unshare not found:", err)
		return 1
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		fmt.Fprintln(os.Stderr, "nemesis: iptables not found (apt-get install -y iptables); the partition faults need it:", err)
		return 1
	}
	args := append([]string{"-rn", "sh", "-c", `ip link set lo up && exec "$0" "$@"`}, os.Args...)
	cmd := exec.Command(unshare, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInNetns+"=1")
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "nemesis: cannot run the tests in a private network namespace (unshare -rn):", err)
		return 1
	}
	return 0
}

// chain holds every rule the nemesis installs, so that healing is one
// flush and nothing else of the firewall is touched.
const chain = "ELOCK_NEMESIS"

// Net cuts and heals traffic between nodes, by address.
type Net struct {
	mu sync.Mutex // serialises iptables calls
}

// NewNet prepares the firewall chain. It refuses to run outside the
// private namespace that Main makes.
func NewNet() (*Net, error) {
	if os.Getenv(envInNetns) != "1" {
		return nil, errors.New("nemesis: refusing to change a firewall outside the private network namespace (run the tests through nemesis.Main)")
	}
	n := &Net{}
	if err := n.ipt("-N", chain); err != nil && !strings.Contains(err.Error(), "exists") {
		return nil, err
	}
	if err := n.ipt("-C", "INPUT", "-j", chain); err != nil {
		if err := n.ipt("-I", "INPUT", "-j", chain); err != nil {
			return nil, err
		}
	}
	return n, n.Heal()
}

func (n *Net) ipt(args ...string) error {
	out, err := exec.Command("iptables", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nemesis: iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Drop drops every packet from address from to address to: one direction.
func (n *Net) Drop(from, to string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ipt("-A", chain, "-s", from, "-d", to, "-j", "DROP")
}

// Cut drops traffic both ways between every address of a and every one of b.
func (n *Net) Cut(a, b []string) error {
	for _, x := range a {
		for _, y := range b {
			if err := n.Drop(x, y); err != nil {
				return err
			}
			if err := n.Drop(y, x); err != nil {
				return err
			}
		}
	}
	return nil
}

// Heal removes every rule.
func (n *Net) Heal() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ipt("-F", chain)
}

// IP returns the host part of a host:port address.
func IP(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}
