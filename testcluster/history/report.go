package history

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Files SaveReport writes into its directory.
const (
	HistoryFile       = "history.jsonl"
	VisualizationFile = "linearizability.html"
	SummaryFile       = "summary.txt"
)

// SaveReport writes the evidence of a check into dir, creating it:
// HistoryFile (h as JSON lines, one operation a line, line i+1 is #i),
// SummaryFile (every verdict's String, and counts of h), and, for each
// verdict that has a visualisation (a *Linearizability),
// VisualizationFile. Tests add their fault schedule and node logs to the
// same directory. LoadHistory reads HistoryFile back for an offline
// re-check.
func SaveReport(dir string, h []Operation, verdicts ...Verdict) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("history: report: %w", err)
	}
	var errs []error
	if err := writeFile(filepath.Join(dir, HistoryFile), func(w io.Writer) error { return WriteHistory(w, h) }); err != nil {
		errs = append(errs, err)
	}
	vis := 0
	for _, v := range verdicts {
		l, ok := v.(*Linearizability)
		if !ok || l == nil {
			continue
		}
		name := VisualizationFile
		if vis > 0 {
			name = fmt.Sprintf("linearizability-%d.html", vis)
		}
		vis++
		if err := l.WriteVisualization(filepath.Join(dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := writeFile(filepath.Join(dir, SummaryFile), func(w io.Writer) error {
		_, err := io.WriteString(w, Summary(h, verdicts...))
		return err
	}); err != nil {
		errs = append(errs, err)
	}
	if errs != nil {
		return fmt.Errorf("history: report: %w", errors.Join(errs...))
	}
	return nil
}

// Summary is the text of SummaryFile: the verdicts, then what h holds.
func Summary(h []Operation, verdicts ...Verdict) string {
	var b strings.Builder
	for _, v := range verdicts {
		if v == nil {
			continue
		}
		b.WriteString(v.String())
		b.WriteString("\n")
	}
	counts := map[string]int{}
	sessions, clients := map[string]bool{}, map[int]bool{}
	var end time.Duration
	for _, o := range h {
		counts[o.Kind.String()+" -> "+o.Status.String()]++
		sessions[o.Session] = true
		clients[o.Client] = true
		if o.Return != Never {
			end = max(end, o.Return)
		}
	}
	fmt.Fprintf(&b, "\nhistory: %d operations, %d clients, %d sessions, last reply at %s\n", len(h), len(clients), len(sessions), stamp(end))
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(&b, "  %-28s %d\n", k, counts[k])
	}
	return b.String()
}

func writeFile(path string, fill func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	err = fill(w)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// line is an Operation as a JSON line. Times are nanoseconds. A name or
// session that is not valid UTF-8 (names are opaque bytes) is written in
// hex, in the _hex field, so that it survives the round trip.
type line struct {
	ID         int    `json:"id"`
	Client     int    `json:"client"`
	Session    string `json:"session,omitempty"`
	SessionHex string `json:"session_hex,omitempty"`
	Kind       Kind   `json:"kind"`
	Name       string `json:"name,omitempty"`
	NameHex    string `json:"name_hex,omitempty"`
	Wait       int    `json:"wait,omitempty"`
	Limit      int    `json:"limit,omitempty"`
	Status     Status `json:"status"`
	Token      uint64 `json:"token,omitempty"`
	Call       int64  `json:"call"`
	Return     *int64 `json:"return,omitempty"` // absent: Never
	Detached   int64  `json:"detached,omitempty"`
}

func splitText(s string) (text, hx string) {
	if utf8.ValidString(s) {
		return s, ""
	}
	return "", hex.EncodeToString([]byte(s))
}

func joinText(text, hx string) (string, error) {
	if hx == "" {
		return text, nil
	}
	b, err := hex.DecodeString(hx)
	return string(b), err
}

// WriteHistory writes h as JSON lines.
func WriteHistory(w io.Writer, h []Operation) error {
	enc := json.NewEncoder(w)
	for i, o := range h {
		l := line{ID: i, Client: o.Client, Kind: o.Kind, Wait: o.Wait, Limit: o.Limit, Status: o.Status,
			Token: o.Token, Call: int64(o.Call), Detached: int64(o.Detached)}
		l.Session, l.SessionHex = splitText(o.Session)
		l.Name, l.NameHex = splitText(o.Name)
		if o.Return != Never {
			r := int64(o.Return)
			l.Return = &r
		}
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("history: #%d: %w", i, err)
		}
	}
	return nil
}

// ReadHistory reads JSON lines written by WriteHistory.
func ReadHistory(r io.Reader) ([]Operation, error) {
	dec := json.NewDecoder(r)
	var h []Operation
	for {
		var l line
		err := dec.Decode(&l)
		if err == io.EOF {
			return h, nil
		}
		if err != nil {
			return nil, fmt.Errorf("history: operation %d: %w", len(h), err)
		}
		o := Operation{
			Op:       Op{Client: l.Client, Kind: l.Kind, Wait: l.Wait, Limit: l.Limit},
			Result:   Result{Status: l.Status, Token: l.Token},
			Call:     time.Duration(l.Call),
			Return:   Never,
			Detached: time.Duration(l.Detached),
		}
		if l.Return != nil {
			o.Return = time.Duration(*l.Return)
		}
		var e1, e2 error
		o.Session, e1 = joinText(l.Session, l.SessionHex)
		o.Name, e2 = joinText(l.Name, l.NameHex)
		if err := errors.Join(e1, e2); err != nil {
			return nil, fmt.Errorf("history: operation %d: %w", len(h), err)
		}
		h = append(h, o)
	}
}

// LoadHistory reads a HistoryFile.
func LoadHistory(path string) ([]Operation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadHistory(bufio.NewReader(f))
}
