package ring

import (
	"log/slog"
	"strings"
)

// logBridge is the io.Writer behind memberlist's *log.Logger. memberlist
// writes one line per Printf ("[LEVEL] memberlist: text\n"); the bridge
// forwards each to slog at debug level, so memberlist never writes to stderr
// on its own and its chatter (including its [ERR] lines, which are routine
// during churn) stays out of normal logs.
//
// It also recognises one line, because memberlist v0.7.0 exposes suspicion in
// no other way: it fires no event on suspicion, and the State field of the
// Nodes it hands out is never set (memberlist keeps the real state in an
// unexported field). "Suspect <name> has failed, no acks received" is logged
// exactly when this node's own probe of <name> failed and memberlist is about
// to suspect it. TestSuspectLogLine pins the format, so a memberlist upgrade
// that rewords it fails loudly instead of silently losing Suspect.
type logBridge struct {
	log *slog.Logger
	// onSuspect is called with the node name from a local probe failure.
	// It runs on memberlist's goroutines, possibly under memberlist's node
	// lock, so it must not call into memberlist.
	onSuspect func(name string)
}

const (
	suspectPrefix = "Suspect "
	suspectSuffix = " has failed, no acks received"
)

func (b *logBridge) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level := ""
	if strings.HasPrefix(line, "[") {
		if i := strings.IndexByte(line, ']'); i > 0 {
			level, line = line[1:i], strings.TrimLeft(line[i+1:], " ")
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	b.log.Debug(line, "src", "memberlist", "mlevel", level)
	if name, ok := suspectedNode(line); ok && b.onSuspect != nil {
		b.onSuspect(name)
	}
	return len(p), nil
}

// suspectedNode extracts <name> from memberlist's local-suspicion log line.
func suspectedNode(line string) (string, bool) {
	if !strings.HasPrefix(line, suspectPrefix) || !strings.HasSuffix(line, suspectSuffix) {
		return "", false
	}
	name := line[len(suspectPrefix) : len(line)-len(suspectSuffix)]
	return name, name != ""
}
