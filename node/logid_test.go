package node

import (
	"strings"
	"testing"
)

// Logs never carry a session id in full: LogID is a digest, the same for
// one id and different for another, and the debug log's copy of a
// conn_id line carries LogID in place of the id.
func TestLogsNeverCarryASessionID(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef"
	if got := LogID(id); strings.Contains(got, id[:8]) || got != LogID(id) || got == LogID(id+"x") {
		t.Fatalf("LogID(%q) = %q", id, got)
	}
	for _, line := range []string{"conn_id " + id, "conn_id " + id + "\r", "  CONN_ID " + id, "conn_id " + id + " extra"} {
		if got := logLine([]byte(line)); strings.Contains(got, id[:8]) || !strings.Contains(strings.ToLower(got), "conn_id #") {
			t.Errorf("logLine(%q) = %q", line, got)
		}
	}
	for _, line := range []string{"conn_id", "lock a 5", "stats"} {
		if got := logLine([]byte(line)); got != line {
			t.Errorf("logLine(%q) = %q, want it unchanged", line, got)
		}
	}
}
