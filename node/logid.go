package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"

	"github.com/elock/elock/node/wire"
)

// LogID is how logs name a session. A session id is a bearer secret
// ("conn_id ID" resumes the session and its locks), and logs travel
// further than the client port, so they carry a digest of it: the same
// for every line about one session, so lines can be matched, and of no
// use for resuming it. An operator who has an id finds its lines by
// computing LogID of it.
func LogID(id string) string {
	if id == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(id))
	return "#" + hex.EncodeToString(sum[:6])
}

// logLine is a request line as the debug log shows it: a conn_id line
// with what follows the verb replaced by its LogID, whether or not it
// parsed.
func logLine(line []byte) string {
	rest := bytes.TrimLeft(line, " ")
	verb, args, _ := bytes.Cut(rest, []byte(" "))
	if !bytes.EqualFold(verb, []byte(wire.ConnID.String())) {
		return string(line)
	}
	args = bytes.TrimRight(bytes.TrimSpace(args), "\r")
	if len(args) == 0 {
		return string(line)
	}
	return string(verb) + " " + LogID(string(args))
}
