package main

import (
	"bytes"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The gossip key flags: -encrypt takes one key, -encrypt-file one per
// line (the first encrypts); a key that is not base64 of 16, 24 or 32
// bytes, both flags at once, or a key without a mesh is refused with a
// reason that never repeats the key.
func TestGossipKeyFlags(t *testing.T) {
	k16 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 16))
	k32 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	bad := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{3}, 20))
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rotation := file("rotation", "# new key first once every node has it\n"+k32+"\n\n"+k16+"\n")
	for _, tc := range []struct {
		args []string
		keys [][]byte // nil: an error is wanted
		why  string   // in the error
	}{
		{args: []string{"-join", "127.0.0.1:1", "-encrypt", k32}, keys: [][]byte{bytes.Repeat([]byte{2}, 32)}},
		{args: []string{"-join", "127.0.0.1:1", "-encrypt-file", rotation}, keys: [][]byte{bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{1}, 16)}},
		{args: []string{"-join", "127.0.0.1:1", "-encrypt", bad}, why: "16, 24 or 32 bytes"},
		{args: []string{"-join", "127.0.0.1:1", "-encrypt", "not base64!"}, why: "not base64"},
		{args: []string{"-join", "127.0.0.1:1", "-encrypt", k16, "-encrypt-file", rotation}, why: "not both"},
		{args: []string{"-join", "127.0.0.1:1", "-encrypt-file", file("empty", "# nothing\n")}, why: "holds no key"},
		{args: []string{"-join", "127.0.0.1:1", "-encrypt-file", filepath.Join(dir, "missing")}, why: "missing"},
		{args: []string{"-encrypt", k16}, why: "apply to a mesh"},
	} {
		o, err := parseFlags(tc.args, io.Discard)
		if tc.keys == nil {
			if err == nil || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("%q: %v, want an error saying %q", tc.args, err, tc.why)
			}
			if err != nil && (strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), k16)) {
				t.Errorf("%q: the error repeats a key: %v", tc.args, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if len(o.keys) != len(tc.keys) {
			t.Errorf("%q: %d keys, want %d", tc.args, len(o.keys), len(tc.keys))
			continue
		}
		for i := range tc.keys {
			if !bytes.Equal(o.keys[i], tc.keys[i]) {
				t.Errorf("%q: key %d is %x, want %x", tc.args, i+1, o.keys[i], tc.keys[i])
			}
		}
	}
}

// Beyond loopback a mesh node needs gossip encryption and peer TLS, and
// says which flags are missing; -insecure is the explicit way out. A
// loopback mesh, and a single node anywhere, need neither.
func TestAMeshBeyondLoopbackMustBeSecured(t *testing.T) {
	dir := t.TempDir()
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	peerTLS := []string{"-peer-cert", dir + "/c", "-peer-key", dir + "/k", "-peer-ca", dir + "/ca"}
	for _, tc := range []struct {
		args    []string
		missing []string // in the error; nil: no error
	}{
		{args: []string{"-join", "127.0.0.1:7946"}},
		{args: []string{"-listen", "10.1.2.3:11400"}},
		{args: []string{"-gossip", "10.1.2.3:7946"}, missing: []string{"-gossip 10.1.2.3:7946", "-encrypt", "-peer-cert"}},
		{args: []string{"-peer", "0.0.0.0:11401", "-encrypt", key}, missing: []string{"-peer 0.0.0.0:11401", "-peer-cert"}},
		{args: append([]string{"-gossip", "10.1.2.3:7946"}, peerTLS...), missing: []string{"-encrypt"}},
		{args: append([]string{"-gossip", "10.1.2.3:7946", "-peer", "10.1.2.3:11401", "-encrypt", key}, peerTLS...)},
		{args: []string{"-gossip", "10.1.2.3:7946", "-insecure"}},
		{args: []string{"-debug-addr", "0.0.0.0:6060"}, missing: []string{"-debug-addr 0.0.0.0:6060", "-insecure"}},
		{args: []string{"-debug-addr", "127.0.0.1:6060"}},
		{args: []string{"-debug-addr", "0.0.0.0:6060", "-insecure"}},
		{args: []string{"-http", "0.0.0.0:8080"}, missing: []string{"-http 0.0.0.0:8080", "-tls-cert", "-insecure"}},
		{args: []string{"-http", "10.1.2.3:8080", "-tls-cert", dir + "/c", "-tls-key", dir + "/k"}},
		{args: []string{"-http", "0.0.0.0:8080", "-insecure"}},
		{args: []string{"-http", "localhost:8080"}},
		{args: []string{"-http", "127.0.0.1:8080", "-debug-addr", "127.0.0.1:8080"}},
		{args: []string{"-http", "127.0.0.1:8080", "-debug-addr", "127.0.0.1:6060"}, missing: []string{"alias", "-http 127.0.0.1:8080", "-debug-addr 127.0.0.1:6060"}},
		{args: []string{"-log-format", "xml"}, missing: []string{"-log-format"}},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if tc.missing == nil {
			if err != nil {
				t.Errorf("%q: %v", tc.args, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%q: accepted", tc.args)
			continue
		}
		for _, m := range tc.missing {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("%q: %v; want it to name %s", tc.args, err, m)
			}
		}
	}
}
