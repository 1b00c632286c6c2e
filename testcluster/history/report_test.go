package history

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestHistoryRoundTrip(t *testing.T) {
	h := []Operation{
		lk(0, A, "a", 0, 10, Acquired, 1<<40|3),
		lk(1, B, "\xff\x00bin ary", 1, U, Unknown, 0),
		lw(2, "\xfe", "a", 5, 20, 70, Unavailable, 0),
		ul(0, A, "a", 12, 14, Refused),
		ua(0, A, 30, 40, OK),
		ex(0, A, 12, 112),
		rs(0, A, 50, 60, NotYours),
		rl(1, B, "r", 60, 70, Acquired, 4),
		rw(1, B, "r", 2, 70, U, Unknown, 0),
		lk(1, B, "r", 80, 90, NoUpgrade, 0),
		aq(2, C, "s", 3, 80, 90, Acquired, 5),
		aw(2, C, "s", 3, 1, 90, 100, Unavailable, 0),
	}
	var buf bytes.Buffer
	if err := WriteHistory(&buf, h); err != nil {
		t.Fatal(err)
	}
	got, err := ReadHistory(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, h)
	}
	if _, err := ReadHistory(strings.NewReader(`{"kind":"lock","status":"granted"}`)); err == nil {
		t.Fatal("an unknown status was accepted")
	}
}

func TestSaveReport(t *testing.T) {
	h := []Operation{
		lk(0, A, "a", 0, 10, Acquired, 1),
		lk(1, B, "a", 20, 30, Acquired, 2),
		ul(1, B, "b", 20, U, Unknown),
	}
	vs, err := CheckAll(h, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if AllOK(vs) {
		t.Fatal("a double grant passed")
	}
	dir := filepath.Join(t.TempDir(), "report")
	if err := SaveReport(dir, h, vs...); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadHistory(filepath.Join(dir, HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(loaded, h) {
		t.Fatalf("reloaded history differs:\n%+v", loaded)
	}
	html, err := os.ReadFile(filepath.Join(dir, VisualizationFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(html, []byte("<html")) || !bytes.Contains(html, []byte(`lock \"a\" -\u003e acquired 2`)) {
		t.Errorf("visualization lacks the history (%d bytes)", len(html))
	}
	summary, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"overlap: 1 violations", "linearizability: Illegal", "lock -> acquired", "3 operations, 2 clients, 2 sessions"} {
		if !strings.Contains(string(summary), want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	// The report re-checks offline to the same verdict.
	lin, err := CheckLinearizable(loaded, 10*time.Second)
	if err != nil || lin.Result != porcupine.Illegal {
		t.Fatalf("re-check: %v, %v", lin, err)
	}
}

func TestLinearizableTimeout(t *testing.T) {
	// A history with many indeterminate operations on one name, which
	// porcupine cannot settle in 50 ms.
	cfg := simConfig{clients: 10, names: 1, ops: 500, pRefuse: 0.05, p504: 0.05, pLost: 0.08,
		pResume: 0.9, pNoToken: 0.05, timeout: 60 * ms}
	h := simulate(cfg, 2)
	lin, err := CheckLinearizable(h, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if lin.Result != porcupine.Unknown || !lin.TimedOut || lin.OK() {
		t.Skipf("porcupine settled it in %v: %v", lin.Elapsed, lin.Result)
	}
	if n := lin.Names[0]; n.Result != porcupine.Unknown || n.Indeterminate == 0 {
		t.Errorf("%+v", n)
	}
	if s := lin.String(); !strings.Contains(s, "timed out") || !strings.Contains(s, "not verified before the timeout") {
		t.Error(s)
	}
	if lin.Err() == nil {
		t.Error("no error")
	}
}
