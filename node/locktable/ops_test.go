package locktable_test

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"pgregory.net/rapid"

	"github.com/elock/elock/node/locktable"
)

// The random tests drive tables with operations over a few sessions and
// names and a clock that only moves forward.
var (
	opSessions = []string{"s1", "s2", "s3"}
	opNames    = []string{"a", "b", "c"}
	opHomes    = []string{"h1", "h2"}
)

type opKind uint8

const (
	opLock opKind = iota
	opLockWait
	opUnlock
	opRelease
	opCancel
	opTick
	opAttach
	opDetach
	opSetTimeout
	opSetEpoch
	opProclaim
	opKinds
)

var opKindNames = [...]string{"lock", "lock-wait", "unlock", "release", "cancel", "tick", "attach", "detach", "set-timeout", "set-epoch", "proclaim"}

// op is one call. Fields that depend on the table's state at the time
// (the current epochs) are relative, so the same op can be applied to the
// real table and to the model.
type op struct {
	kind  opKind
	dt    locktable.Time // the clock moves forward by dt first
	s     string
	name  string
	w     locktable.WaiterID // lock-wait: the new waiter; cancel: the one to cancel
	until locktable.Time     // lock-wait: deadline relative to now
	d     time.Duration      // set-timeout
	de    int                // detach: epoch relative to the session's current one
	home  string
	epoch uint64         // set-epoch: the current epoch + epoch - 1
	want  locktable.Want // lock, lock-wait
}

func (o op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "+%d %s", o.dt, opKindNames[o.kind])
	switch o.kind {
	case opLock:
		fmt.Fprintf(&b, " %s %s %s", o.s, o.name, fmtWant(o.want))
	case opUnlock:
		fmt.Fprintf(&b, " %s %s", o.s, o.name)
	case opLockWait:
		fmt.Fprintf(&b, " %s %s %s w%d until=+%d", o.s, o.name, fmtWant(o.want), o.w, o.until)
	case opRelease:
		fmt.Fprintf(&b, " %s", o.s)
	case opCancel:
		fmt.Fprintf(&b, " w%d", o.w)
	case opAttach:
		fmt.Fprintf(&b, " %s %s", o.s, o.home)
	case opDetach:
		fmt.Fprintf(&b, " %s epoch%+d", o.s, o.de)
	case opSetTimeout:
		fmt.Fprintf(&b, " %s %d", o.s, o.d)
	case opSetEpoch:
		fmt.Fprintf(&b, " current%+d", int(o.epoch)-1)
	case opProclaim:
		fmt.Fprintf(&b, " %s %s %q", o.s, o.name, o.want.Value)
	}
	return b.String()
}

func fmtWant(w locktable.Want) string {
	switch {
	case w.Mode == locktable.Permit:
		return fmt.Sprintf("permit/%d", w.Limit)
	case w.Value != "":
		return fmt.Sprintf("campaign/%s", w.Value)
	}
	return w.Mode.String()
}

// drawWant picks a mode, mostly exclusive, and for a permit one of a few
// limits, so that limits clash now and then.
func drawWant(t *rapid.T) locktable.Want {
	w := locktable.Want{Mode: rapid.SampledFrom([]locktable.Mode{locktable.Exclusive, locktable.Exclusive, locktable.Shared, locktable.Shared, locktable.Permit}).Draw(t, "mode")}
	switch w.Mode {
	case locktable.Permit:
		w.Limit = uint32(rapid.SampledFrom([]int{1, 2, 2, 2, 3}).Draw(t, "limit"))
	case locktable.Exclusive:
		// Sometimes a campaign, which publishes a value.
		w.Value = rapid.SampledFrom([]string{"", "", "v1", "v2"}).Draw(t, "value")
	}
	return w
}

// opGen draws operations; it hands out waiter ids, which must be unique.
type opGen struct{ lastW locktable.WaiterID }

func (g *opGen) draw(t *rapid.T) op {
	o := op{
		kind: opKind(rapid.IntRange(0, int(opKinds)-1).Draw(t, "kind")),
		dt:   locktable.Time(rapid.IntRange(0, 10).Draw(t, "dt")),
		s:    rapid.SampledFrom(opSessions).Draw(t, "session"),
	}
	switch o.kind {
	case opLock:
		o.name = rapid.SampledFrom(opNames).Draw(t, "name")
		o.want = drawWant(t)
	case opUnlock:
		o.name = rapid.SampledFrom(opNames).Draw(t, "name")
	case opLockWait:
		o.name = rapid.SampledFrom(opNames).Draw(t, "name")
		o.want = drawWant(t)
		g.lastW++
		o.w = g.lastW
		o.until = locktable.Time(rapid.IntRange(-3, 40).Draw(t, "until"))
	case opCancel:
		o.w = locktable.WaiterID(rapid.IntRange(1, int(g.lastW)+1).Draw(t, "cancel"))
	case opAttach:
		o.home = rapid.SampledFrom(opHomes).Draw(t, "home")
	case opDetach:
		o.de = rapid.SampledFrom([]int{0, 0, 0, -1, 1}).Draw(t, "de")
	case opSetTimeout:
		o.d = time.Duration(rapid.IntRange(-2, 80).Draw(t, "timeout"))
	case opSetEpoch:
		o.epoch = uint64(rapid.IntRange(0, 3).Draw(t, "epoch"))
	case opProclaim:
		o.name = rapid.SampledFrom(opNames).Draw(t, "name")
		o.want.Value = rapid.SampledFrom([]string{"v1", "v2", ""}).Draw(t, "value")
	}
	return o
}

// outcome is what one call returned: a rendered result and its effects,
// copied out of the table's reused buffer.
type outcome struct {
	head string
	fx   []locktable.Effect
}

func (o outcome) String() string { return o.head + " " + describe(o.fx) }

func relEpoch(cur uint64, rel int) uint64 {
	if rel < 0 && cur == 0 {
		return 0
	}
	return uint64(int64(cur) + int64(rel))
}

func applyTable(tb *locktable.Table, now locktable.Time, o op) outcome {
	var fx []locktable.Effect
	head := ""
	switch o.kind {
	case opLock, opLockWait:
		var deadline locktable.Time
		if o.kind == opLockWait {
			deadline = now + o.until
		}
		var res locktable.Result
		var err error
		res, fx, err = tb.Acquire(now, o.s, 0, []byte(o.name), o.want, o.w, deadline)
		head = fmtResult(res, err)
	case opUnlock:
		var res locktable.Result
		res, fx = tb.Unlock(now, o.s, []byte(o.name))
		head = fmtResult(res, nil)
	case opRelease:
		var n int
		n, fx = tb.ReleaseSession(now, o.s)
		head = fmt.Sprintf("released %d", n)
	case opCancel:
		var ok bool
		ok, fx = tb.CancelWait(now, o.w)
		head = fmt.Sprint(ok)
	case opTick:
		fx = tb.Tick(now)
		head = "tick"
	case opAttach:
		a, f, err := tb.Attach(now, o.s, o.home)
		fx = f
		head = fmt.Sprintf("%+v %v", a, err)
	case opDetach:
		cur, _ := tb.Session(o.s)
		fx = tb.Detach(now, o.s, relEpoch(cur.Epoch, o.de))
		head = "detached"
	case opSetTimeout:
		head = fmtErr(tb.SetTimeout(o.s, o.d))
	case opSetEpoch:
		e := tb.Epoch() + o.epoch - 1
		head = fmt.Sprintf("set-epoch %d: %s", e, fmtErr(tb.SetEpoch(e)))
	case opProclaim:
		var res locktable.Result
		res, fx = tb.Proclaim(o.s, []byte(o.name), o.want.Value)
		head = fmtResult(res, nil)
	}
	return outcome{head: head, fx: slices.Clone(fx)}
}

// applyModel is applyTable for the model.
func applyModel(m *model, now locktable.Time, o op) outcome {
	var fx []locktable.Effect
	head := ""
	switch o.kind {
	case opLock, opLockWait:
		var deadline locktable.Time
		if o.kind == opLockWait {
			deadline = now + o.until
		}
		var res locktable.Result
		var err error
		res, fx, err = m.lock(now, o.s, o.name, o.want, o.w, deadline)
		head = fmtResult(res, err)
	case opUnlock:
		var res locktable.Result
		res, fx = m.unlock(now, o.s, o.name)
		head = fmtResult(res, nil)
	case opRelease:
		var n int
		n, fx = m.releaseSession(now, o.s)
		head = fmt.Sprintf("released %d", n)
	case opCancel:
		var ok bool
		ok, fx = m.cancel(now, o.w)
		head = fmt.Sprint(ok)
	case opTick:
		fx = m.tick(now)
		head = "tick"
	case opAttach:
		a, f, err := m.attach(now, o.s, o.home)
		fx = f
		head = fmt.Sprintf("%+v %v", a, err)
	case opDetach:
		cur, _ := m.session(o.s)
		fx = m.detach(now, o.s, relEpoch(cur.Epoch, o.de))
		head = "detached"
	case opSetTimeout:
		head = fmtErr(m.setTimeout(o.s, o.d))
	case opSetEpoch:
		e := m.epoch + o.epoch - 1
		head = fmt.Sprintf("set-epoch %d: %s", e, fmtErr(m.setEpoch(e)))
	case opProclaim:
		var res locktable.Result
		res, fx = m.proclaim(o.s, o.name, o.want.Value)
		head = fmtResult(res, nil)
	}
	return outcome{head: head, fx: fx}
}

// stateDiff compares everything observable of the table with the model
// and describes the first difference, or returns "".
func stateDiff(tb *locktable.Table, m *model, now locktable.Time) string {
	if got, want := tb.Counts(), m.counts(); got != want {
		return fmt.Sprintf("Counts = %+v, model %+v", got, want)
	}
	gd, gok := tb.NextDeadline()
	wd, wok := m.nextDeadline()
	if gok != wok || gd != wd {
		return fmt.Sprintf("NextDeadline = %d, %v; model %d, %v", gd, gok, wd, wok)
	}
	if tb.Epoch() != m.epoch || tb.TokensLeft() != m.tokensLeft() {
		return fmt.Sprintf("epoch %d, tokens left %d; model %d, %d", tb.Epoch(), tb.TokensLeft(), m.epoch, m.tokensLeft())
	}
	for _, s := range opSessions {
		if got, want := tb.HeldBy(s), m.heldBy(s); got != want {
			return fmt.Sprintf("HeldBy(%s) = %d, model %d", s, got, want)
		}
		gs, gok := tb.Session(s)
		ws, wok := m.session(s)
		if gs != ws || gok != wok {
			return fmt.Sprintf("Session(%s) = %+v, %v; model %+v, %v", s, gs, gok, ws, wok)
		}
		for _, n := range opNames {
			gt, gst := tb.Token(s, []byte(n))
			wt, wst := m.token(s, n)
			if gt != wt || gst != wst {
				return fmt.Sprintf("Token(%s, %s) = %s %v; model %s %v", s, n, tok(gt), gst, tok(wt), wst)
			}
			if got, want := tb.State([]byte(n)), m.state(n); got != want {
				return fmt.Sprintf("State(%s) = %+v; model %+v", n, got, want)
			}
			gt, gv, gok := tb.Leader([]byte(n))
			mi := m.info(now, "", n)
			if wok := mi.Mode == locktable.Exclusive && mi.Held; gok != wok || gok && (gt != mi.Token || gv != mi.Value) {
				return fmt.Sprintf("Leader(%s) = %s %q %v; model %+v", n, tok(gt), gv, gok, mi)
			}
			if got, want := tb.Info(now, s, []byte(n)), m.info(now, s, n); got != want {
				return fmt.Sprintf("Info(%s, %s) = %+v; model %+v", s, n, got, want)
			}
		}
	}
	return ""
}
