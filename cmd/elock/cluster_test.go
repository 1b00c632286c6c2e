package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// elock cluster turns -http on for every node and prints each node's
// endpoint next to its client address: "n1 CLIENT http://HTTP/".
func TestClusterPrintsHTTPAddresses(t *testing.T) {
	t.Parallel()
	cmd, out, stderr := startCluster(t, "-n", "2", "-insecure")
	sc := bufio.NewScanner(out)
	var urls []string
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "cluster of 2 serving") {
			break
		}
		if f := strings.Fields(l); len(f) == 3 && strings.HasPrefix(f[0], "n") {
			urls = append(urls, f[2])
		}
	}
	if len(urls) != 2 {
		cmd.Process.Kill()
		t.Fatalf("cluster printed HTTP addresses %q; stderr: %s", urls, stderr.String())
	}
	c := &http.Client{Timeout: 5 * time.Second}
	for _, u := range urls {
		if !strings.HasPrefix(u, "http://127.") {
			t.Errorf("HTTP address %q: want http:// on loopback", u)
			continue
		}
		res, err := c.Get(u + "readyz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%sreadyz: %d", u, res.StatusCode)
		}
	}
	cmd.Process.Signal(os.Interrupt)
	go io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("elock cluster after SIGINT: %v; stderr: %s", err, stderr.String())
	}
}
