package locktable_test

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
)

// A scenario script is a list of calls, each followed by the lines it must
// print, indented by two spaces:
//
//	lock 0s s1 a
//	  granted 1.1
//	lock 0s s2 a wait=1 until=10s
//	  queued
//	unlock 5s s1 a
//	  unlocked
//	  > held a s2 1.2
//	  > granted w1 s2 a 1.2
//
// Times are durations since an arbitrary origin of the caller's clock;
// tokens print as epoch.count. Lines starting with '#' are comments. The
// runner prints the whole transcript it got, so a failure reads like a
// golden-file diff.

// origin is where the scripts' clock starts: far from zero, so that a
// confusion of absolute and relative times shows.
const origin locktable.Time = 1_000_000 * locktable.Time(time.Second)

func at(s string) locktable.Time { return origin + locktable.Time(dur(s)) }

func dur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(fmt.Sprintf("bad duration %q", s))
	}
	return d
}

func since(t locktable.Time) time.Duration { return time.Duration(t - origin) }

func tok(v uint64) string { return fmt.Sprintf("%d.%d", v>>32, v&(1<<32-1)) }

func fmtEffect(e locktable.Effect) string {
	switch e.Kind {
	case locktable.WaiterGranted:
		return fmt.Sprintf("> granted w%d %s %s %s", e.Waiter, e.Session, e.Name, tok(e.Token))
	case locktable.WaiterTimedOut:
		return fmt.Sprintf("> timed-out w%d %s %s", e.Waiter, e.Session, e.Name)
	case locktable.SessionExpired:
		return fmt.Sprintf("> expired %s", e.Session)
	case locktable.LockHeld:
		return fmt.Sprintf("> held %s %s %s", e.Name, e.Session, tok(e.Token))
	case locktable.LockWanted:
		return fmt.Sprintf("> wanted %s by %s", e.Name, e.Session)
	case locktable.LockFreed:
		return fmt.Sprintf("> freed %s %s %s", e.Name, e.Session, tok(e.Token))
	}
	return fmt.Sprintf("> effect? %+v", e)
}

func fmtResult(r locktable.Result, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	s := r.Status.String()
	switch r.Status {
	case locktable.KindMismatch:
		s += " " + r.Kind.String()
	case locktable.LimitMismatch:
		s += fmt.Sprintf(" limit=%d", r.Limit)
	}
	if r.Status == locktable.Granted {
		s += " " + tok(r.Token)
		if r.Reentrant {
			s += " reentrant"
		}
	}
	return s
}

func fmtErr(err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return "ok"
}

// runner executes script commands against one table.
type runner struct {
	tb *locktable.Table
}

// exec runs one command line and returns what it printed.
func (r *runner) exec(cmd string) []string {
	f := strings.Fields(cmd)
	kv := map[string]string{}
	var pos []string
	for _, a := range f[1:] {
		if k, v, ok := strings.Cut(a, "="); ok {
			kv[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	arg := func(i int) string {
		if i >= len(pos) {
			panic(fmt.Sprintf("%q: missing argument %d", cmd, i))
		}
		return pos[i]
	}
	num := func(s string) uint64 {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			panic(fmt.Sprintf("%q: bad number %q", cmd, s))
		}
		return v
	}
	var out []string
	withEffects := func(head string, fx []locktable.Effect) []string {
		out = append(out, head)
		for _, e := range fx {
			out = append(out, fmtEffect(e))
		}
		return out
	}
	switch f[0] {
	case "lock":
		var w locktable.WaiterID
		var until locktable.Time
		if s, ok := kv["wait"]; ok {
			w = locktable.WaiterID(num(s))
			until = at(kv["until"])
		}
		res, fx, err := r.tb.Lock(at(arg(0)), arg(1), []byte(arg(2)), w, until)
		return withEffects(fmtResult(res, err), fx)
	case "campaign":
		// campaign TIME SESSION NAME VALUE [wait=W until=T]
		var w locktable.WaiterID
		var until locktable.Time
		if s, ok := kv["wait"]; ok {
			w = locktable.WaiterID(num(s))
			until = at(kv["until"])
		}
		res, fx, err := r.tb.Acquire(at(arg(0)), arg(1), 0, []byte(arg(2)), locktable.Want{Value: arg(3)}, w, until)
		return withEffects(fmtResult(res, err), fx)
	case "proclaim":
		res, fx := r.tb.Proclaim(arg(0), []byte(arg(1)), arg(2))
		return withEffects(fmtResult(res, nil), fx)
	case "leader":
		tk, v, ok := r.tb.Leader([]byte(arg(0)))
		if !ok {
			return []string{"no leader"}
		}
		return []string{strings.TrimSpace(tok(tk) + " " + v)}
	case "rlock", "acquire":
		// rlock TIME SESSION NAME [wait=W until=T] [epoch=E]
		// acquire TIME SESSION NAME LIMIT [wait=W until=T] [epoch=E]
		want := locktable.Want{Mode: locktable.Shared}
		if f[0] == "acquire" {
			want = locktable.Want{Mode: locktable.Permit, Limit: uint32(num(arg(3)))}
		}
		var w locktable.WaiterID
		var until locktable.Time
		if s, ok := kv["wait"]; ok {
			w = locktable.WaiterID(num(s))
			until = at(kv["until"])
		}
		var epoch uint64
		if s, ok := kv["epoch"]; ok {
			epoch = num(s)
		}
		res, fx, err := r.tb.Acquire(at(arg(0)), arg(1), epoch, []byte(arg(2)), want, w, until)
		return withEffects(fmtResult(res, err), fx)
	case "unlock":
		res, fx := r.tb.Unlock(at(arg(0)), arg(1), []byte(arg(2)))
		return withEffects(fmtResult(res, nil), fx)
	case "release":
		n, fx := r.tb.ReleaseSession(at(arg(0)), arg(1))
		return withEffects(fmt.Sprintf("released %d", n), fx)
	case "cancel":
		now := origin
		if a, ok := kv["at"]; ok {
			now = at(a)
		}
		ok, fx := r.tb.CancelWait(now, locktable.WaiterID(num(arg(0))))
		return withEffects(strconv.FormatBool(ok), fx)
	case "cancel-later":
		return []string{strconv.FormatBool(r.tb.CancelWaitLater(locktable.WaiterID(num(arg(0)))))}
	case "withdraw":
		return []string{strconv.FormatBool(r.tb.Withdraw(locktable.WaiterID(num(arg(0)))))}
	case "tick":
		return withEffects("ok", r.tb.Tick(at(arg(0))))
	case "token":
		v, st := r.tb.Token(arg(0), []byte(arg(1)))
		if st == locktable.Granted {
			return []string{tok(v)}
		}
		if v != 0 {
			return []string{fmt.Sprintf("%s with token %d", st, v)}
		}
		return []string{st.String()}
	case "info":
		in := r.tb.Info(at(arg(0)), arg(1), []byte(arg(2)))
		if !in.Held {
			if in != (locktable.Info{}) {
				return []string{fmt.Sprintf("free but %+v", in)}
			}
			return []string{"free"}
		}
		whose := "theirs"
		if in.Mine {
			whose = "mine"
		}
		line := fmt.Sprintf("held %s %s for=%v waiters=%d", whose, tok(in.Token), in.HeldFor, in.Waiters)
		if in.Kind != locktable.KindLock || in.Mode != locktable.Exclusive || in.Holders != 1 {
			line += fmt.Sprintf(" %v %v holders=%d", in.Kind, in.Mode, in.Holders)
			if in.Kind == locktable.KindSemaphore {
				line += fmt.Sprintf(" limit=%d", in.Limit)
			}
		}
		return []string{line}
	case "held-by":
		return []string{strconv.Itoa(r.tb.HeldBy(arg(0)))}
	case "counts":
		c := r.tb.Counts()
		return []string{fmt.Sprintf("locks=%d waiters=%d sessions=%d", c.Locks, c.Waiters, c.Sessions)}
	case "next":
		d, ok := r.tb.NextDeadline()
		if !ok {
			return []string{"none"}
		}
		if d == math.MinInt64 {
			return []string{"at once"}
		}
		return []string{since(d).String()}
	case "attach":
		a, fx, err := r.tb.Attach(at(arg(0)), arg(1), arg(2))
		if err != nil {
			return withEffects(fmtErr(err), fx)
		}
		kind := "new"
		if a.Resumed {
			kind = "resumed"
		}
		return withEffects(fmt.Sprintf("%s epoch=%d timeout=%v", kind, a.Epoch, a.Timeout), fx)
	case "detach":
		return withEffects("ok", r.tb.Detach(at(arg(0)), arg(1), num(arg(2))))
	case "set-timeout":
		return []string{fmtErr(r.tb.SetTimeout(arg(0), dur(arg(1))))}
	case "session":
		s, ok := r.tb.Session(arg(0))
		if !ok {
			return []string{"none"}
		}
		if s.Attached {
			return []string{fmt.Sprintf("%s attached epoch=%d home=%s timeout=%v", s.ID, s.Epoch, s.Home, s.Timeout)}
		}
		return []string{fmt.Sprintf("%s detached epoch=%d expires=%v timeout=%v", s.ID, s.Epoch, since(s.Expires), s.Timeout)}
	case "set-epoch":
		return []string{fmtErr(r.tb.SetEpoch(num(arg(0))))}
	case "epoch":
		return []string{strconv.FormatUint(r.tb.Epoch(), 10)}
	case "set-count":
		// set-count left=N: leave N tokens in this epoch.
		r.tb.SetCount(1<<32 - 1 - num(kv["left"]))
		return []string{"ok"}
	case "tokens-left":
		return []string{strconv.FormatUint(r.tb.TokensLeft(), 10)}
	}
	panic(fmt.Sprintf("unknown script command %q", cmd))
}

// runScript runs script on tb and fails with the whole transcript if any
// output differs.
func runScript(t *testing.T, tb *locktable.Table, script string) {
	t.Helper()
	r := &runner{tb: tb}
	var got, want strings.Builder
	failed := false
	var cmd string
	var expect []string
	flush := func() {
		if cmd == "" {
			return
		}
		out := r.exec(cmd)
		fmt.Fprintln(&got, cmd)
		fmt.Fprintln(&want, cmd)
		for _, l := range out {
			fmt.Fprintln(&got, "  "+l)
		}
		for _, l := range expect {
			fmt.Fprintln(&want, "  "+l)
		}
		if err := r.tb.CheckInvariants(); err != nil {
			out = append(out, "invariant broken: "+err.Error())
		}
		if strings.Join(out, "\n") != strings.Join(expect, "\n") {
			failed = true
			fmt.Fprintln(&got, "  ^^^ differs")
		}
		cmd, expect = "", nil
	}
	for _, line := range strings.Split(script, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
		case strings.HasPrefix(line, "\t") || strings.HasPrefix(line, " "):
			if cmd == "" {
				t.Fatalf("output line %q before any command", line)
			}
			expect = append(expect, trimmed)
		default:
			flush()
			cmd = trimmed
		}
	}
	flush()
	if failed {
		t.Errorf("transcript differs.\ngot:\n%s\nwant:\n%s", got.String(), want.String())
	}
}
