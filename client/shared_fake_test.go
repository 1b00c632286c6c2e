package client_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elock/elock/client"
	"github.com/elock/elock/testcluster/wait"
)

// TestSharedRequestLines: RLock, TryRLock, Acquire and TryAcquire send
// the requests of the protocol, the waiting ones with the wait, and keep
// the grant's token like Lock.
func TestSharedRequestLines(t *testing.T) {
	f := startFake(t, map[string][][]string{
		"rlock r 1":     {{"200 Acquired"}},
		"rlock tr":      {{"200 Acquired"}},
		"acquire s 3 1": {{"200 Acquired"}},
		"acquire ts 3":  {{"200 Acquired"}},
		"token r":       {{"200 11"}},
		"token tr":      {{"200 12"}},
		"token s":       {{"200 13"}},
		"token ts":      {{"200 14"}},
	})
	c := dial(t, []string{f.addr()}, client.WithMaxWait(time.Second))
	ctx := testCtx(t)
	calls := []struct {
		name string
		call func() (uint64, error)
		want uint64
	}{
		{"r", func() (uint64, error) { return c.RLock(ctx, "r") }, 11},
		{"tr", func() (uint64, error) { return c.TryRLock(ctx, "tr") }, 12},
		{"s", func() (uint64, error) { return c.Acquire(ctx, "s", 3) }, 13},
		{"ts", func() (uint64, error) { return c.TryAcquire(ctx, "ts", 3) }, 14},
	}
	for _, tt := range calls {
		if tok, err := tt.call(); err != nil || tok != tt.want {
			t.Fatalf("%s: %d, %v; want %d", tt.name, tok, err, tt.want)
		}
	}
	if h := c.Held(); len(h) != 4 || h["r"] != 11 || h["tr"] != 12 || h["s"] != 13 || h["ts"] != 14 {
		t.Fatalf("Held = %v", h)
	}
	for _, l := range []string{"rlock r 1", "rlock tr", "acquire s 3 1", "acquire ts 3"} {
		if n := f.times(l); n != 1 {
			t.Errorf("%q sent %d times, want 1", l, n)
		}
	}
}

// TestSharedRefusals: the 400s of shared locks and semaphores are
// definite: told apart with errors.Is inside a ServerError 400, not
// retried, on the same connection, with nothing left to release.
func TestSharedRefusals(t *testing.T) {
	f := startFake(t, map[string][][]string{
		"lock sem 1":    {{"400 kind mismatch: sem is a semaphore"}},
		"rlock sem":     {{"400 kind mismatch: sem is a semaphore"}},
		"acquire lk 2":  {{"400 kind mismatch: lk is a lock"}},
		"acquire s 3 1": {{"400 limit mismatch: s has 2 permits"}},
		"lock rd":       {{"400 no upgrade: rd is held shared by this session"}},
		"acquire big 9": {{"400 bad limit: at most 5"}},
		"token sem":     {{"403 not_locked"}},
		"token lk":      {{"403 not_yours"}},
		"token s":       {{"403 not_yours"}},
		"token rd":      {{"200 4"}},
		"token big":     {{"403 not_locked"}},
	})
	c := dial(t, []string{f.addr()}, client.WithMaxWait(time.Second))
	ctx := testCtx(t)
	tests := []struct {
		line string
		call func() error
		is   error
	}{
		{"lock sem 1", func() error { _, err := c.Lock(ctx, "sem"); return err }, client.ErrKindMismatch},
		{"rlock sem", func() error { _, err := c.TryRLock(ctx, "sem"); return err }, client.ErrKindMismatch},
		{"acquire lk 2", func() error { _, err := c.TryAcquire(ctx, "lk", 2); return err }, client.ErrKindMismatch},
		{"acquire s 3 1", func() error { _, err := c.Acquire(ctx, "s", 3); return err }, client.ErrLimitMismatch},
		{"lock rd", func() error { _, err := c.TryLock(ctx, "rd"); return err }, client.ErrNoUpgrade},
		{"acquire big 9", func() error { _, err := c.TryAcquire(ctx, "big", 9); return err }, client.ErrInvalidLimit},
	}
	others := []error{client.ErrKindMismatch, client.ErrLimitMismatch, client.ErrNoUpgrade, client.ErrInvalidLimit, client.ErrUnavailable}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			err := tt.call()
			var se *client.ServerError
			if !errors.Is(err, tt.is) || !errors.As(err, &se) || se.Code != 400 || se.Retryable() || se.Indeterminate() {
				t.Fatalf("err = %v, want %v in a ServerError 400", err, tt.is)
			}
			for _, o := range others {
				if o != tt.is && errors.Is(err, o) {
					t.Fatalf("err = %v is also %v", err, o)
				}
			}
			if !strings.HasPrefix(err.Error(), "client: ") {
				t.Fatalf("err = %q, want the client: prefix", err)
			}
			if n := f.times(tt.line); n != 1 {
				t.Fatalf("%q sent %d times, want 1", tt.line, n)
			}
		})
	}
	if h := c.Held(); len(h) != 0 {
		t.Fatalf("Held after refusals = %v", h)
	}
	// Refusals keep the connection, and leave no release pending: the
	// next command is the only thing sent.
	before := len(f.seenLines())
	if _, err := c.Stats(ctx); err == nil {
		t.Fatal("the fake has no stats")
	}
	if got := f.seenLines()[before:]; len(got) != 1 || got[0] != "stats" {
		t.Fatalf("sent after the refusals: %q, want only stats", got)
	}
	if n := f.times("conn_id"); n != 1 {
		t.Fatalf("%d sessions registered, want 1", n)
	}
	// Another 400 stays a bare ServerError.
	var se *client.ServerError
	if _, err := c.TryLock(ctx, "x"); !errors.As(err, &se) || se.Code != 400 || errors.Unwrap(se) != nil {
		t.Fatalf("TryLock x = %v, want a ServerError 400 with no sentinel", err)
	}
}

// TestSharedInvalidLimit: a limit outside 1..MaxPermits is refused
// before anything is sent.
func TestSharedInvalidLimit(t *testing.T) {
	f := startFake(t, nil)
	c := dial(t, []string{f.addr()})
	ctx := testCtx(t)
	limits := []int{0, -1}
	if strconv.IntSize == 64 {
		most := uint64(client.MaxPermits)
		limits = append(limits, int(most+1))
	}
	for _, limit := range limits {
		if _, err := c.Acquire(ctx, "s", limit); err != client.ErrInvalidLimit {
			t.Errorf("Acquire limit %d = %v, want ErrInvalidLimit", limit, err)
		}
		if _, err := c.TryAcquire(ctx, "s", limit); err != client.ErrInvalidLimit {
			t.Errorf("TryAcquire limit %d = %v, want ErrInvalidLimit", limit, err)
		}
	}
	if _, err := c.TryAcquire(ctx, "a b", 1); err != client.ErrInvalidName {
		t.Errorf("TryAcquire of a bad name = %v, want ErrInvalidName", err)
	}
	if _, err := c.RLock(ctx, ""); err != client.ErrInvalidName {
		t.Errorf("RLock of an empty name = %v, want ErrInvalidName", err)
	}
	for _, l := range f.seenLines() {
		if strings.HasPrefix(l, "acquire") || strings.HasPrefix(l, "rlock") {
			t.Fatalf("sent %q", l)
		}
	}
	// The largest limit goes out as it is (where an int holds it).
	if strconv.IntSize == 64 {
		most := uint64(client.MaxPermits)
		line := fmt.Sprint("acquire s ", most)
		if _, err := c.TryAcquire(ctx, "s", int(most)); err == client.ErrInvalidLimit || f.times(line) != 1 {
			t.Fatalf("TryAcquire limit %d: %v, sent %d times", most, err, f.times(line))
		}
	}
}

// TestSharedIndeterminate: what a 504 on a shared request or a permit
// comes to.
func TestSharedIndeterminate(t *testing.T) {
	tests := []struct {
		name   string
		script map[string][][]string
		call   func(ctx context.Context, c *client.Client) (uint64, error)
		want   error  // errors.Is; nil: success with token tok
		tok    uint64 // the token of a success
		line   string // then line must have been sent n times
		n      int
	}{
		{
			// Unlike TryLock's, another session's hold does not mean a
			// shared request failed: it is asked again.
			name:   "tryrlock 504 then another's",
			script: map[string][][]string{"rlock t": {{"504 unknown"}, {"409 Unavailable"}}, "token t": {{"403 not_yours"}}},
			call:   func(ctx context.Context, c *client.Client) (uint64, error) { return c.TryRLock(ctx, "t") },
			want:   client.ErrUnavailable,
			line:   "rlock t", n: 2,
		},
		{
			name:   "tryacquire 504 then another's, granted on retry",
			script: map[string][][]string{"acquire t 2": {{"504 unknown"}, {"200 Acquired"}}, "token t": {{"403 not_yours"}, {"200 8"}}},
			call:   func(ctx context.Context, c *client.Client) (uint64, error) { return c.TryAcquire(ctx, "t", 2) },
			tok:    8,
			line:   "acquire t 2", n: 2,
		},
		{
			name:   "rlock 504 then held",
			script: map[string][][]string{"rlock t 1": {{"504 unknown"}}, "token t": {{"200 6"}}},
			call:   func(ctx context.Context, c *client.Client) (uint64, error) { return c.RLock(ctx, "t") },
			tok:    6,
			line:   "rlock t 1", n: 1,
		},
		{
			// The session held t shared: a token after the 504 may be
			// that grant's and settles nothing. The retry's answer does.
			name: "lock 504 on a name held shared",
			script: map[string][][]string{
				"rlock t":  {{"200 Acquired"}},
				"token t":  {{"200 4"}},
				"lock t 1": {{"504 unknown"}, {"400 no upgrade: t is held shared by this session"}},
			},
			call: func(ctx context.Context, c *client.Client) (uint64, error) {
				if _, err := c.TryRLock(ctx, "t"); err != nil {
					return 0, err
				}
				return c.Lock(ctx, "t")
			},
			want: client.ErrNoUpgrade,
			line: "lock t 1", n: 2,
		},
		{
			name: "acquire 504 with another limit on a held permit",
			script: map[string][][]string{
				"acquire t 2":   {{"200 Acquired"}},
				"token t":       {{"200 4"}},
				"acquire t 3 1": {{"504 unknown"}, {"400 limit mismatch: t has 2 permits"}},
			},
			call: func(ctx context.Context, c *client.Client) (uint64, error) {
				if _, err := c.TryAcquire(ctx, "t", 2); err != nil {
					return 0, err
				}
				return c.Acquire(ctx, "t", 3)
			},
			want: client.ErrLimitMismatch,
			line: "acquire t 3 1", n: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, tt.script)
			c := dial(t, []string{f.addr()}, client.WithMaxWait(time.Second))
			tok, err := tt.call(testCtx(t), c)
			if tt.want == nil && (err != nil || tok != tt.tok) || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("= %d, %v; want %d, %v", tok, err, tt.tok, tt.want)
			}
			if tt.line != "" && f.times(tt.line) != tt.n {
				t.Fatalf("%q sent %d times, want %d", tt.line, f.times(tt.line), tt.n)
			}
		})
	}
}

// TestSharedLostAfterResume: shared grants and permits are checked after
// a resume like exclusive locks: one found gone is reported lost and
// forgotten, one still held is kept.
func TestSharedLostAfterResume(t *testing.T) {
	f := startFake(t, map[string][][]string{
		"rlock r":     {{"200 Acquired"}},
		"acquire s 2": {{"200 Acquired"}},
		"acquire p 2": {{"200 Acquired"}},
		"token r":     {{"200 3"}, {"403 not_locked"}},
		"token s":     {{"200 4"}},
		"token p":     {{"200 5"}, {"200 9"}},
	})
	var lost lostRecorder
	c := dial(t, []string{f.addr()}, client.WithKeepalive(-1), client.WithOnLost(lost.record))
	ctx := testCtx(t)
	if _, err := c.TryRLock(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryAcquire(ctx, "s", 2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TryAcquire(ctx, "p", 2); err != nil {
		t.Fatal(err)
	}
	f.killConns()
	if _, err := c.Token(ctx, "s"); err != nil {
		t.Fatalf("Token s after the resume: %v", err)
	}
	wait.For(t, 10*time.Second, "two lost reports", func() bool { return len(lost.get()) == 2 })
	got := map[string]uint64{}
	for _, ev := range lost.get() {
		if !errors.Is(ev.Err, client.ErrLockLost) {
			t.Errorf("lost %s: %v, want ErrLockLost", ev.Name, ev.Err)
		}
		got[ev.Name] = ev.Token
	}
	// r is gone; p was granted again, with another token.
	if len(got) != 2 || got["r"] != 3 || got["p"] != 5 {
		t.Fatalf("lost %v, want r:3 and p:5", got)
	}
	if h := c.Held(); len(h) != 1 || h["s"] != 4 {
		t.Fatalf("Held = %v, want s:4", h)
	}
}

// TestSharedInfo: Info reads the kind, mode, holders and limit after the
// older lines, and leaves them empty when a server does not send them.
func TestSharedInfo(t *testing.T) {
	f := startFake(t, map[string][][]string{
		"info s":   {{"200 INFO", "STAT held 1", "STAT mine 1", "STAT token 7", "STAT held_ms 1500", "STAT waiters 2", "STAT kind semaphore", "STAT mode shared", "STAT holders 3", "STAT limit 4", "END"}},
		"info old": {{"200 INFO", "STAT held 1", "STAT mine 0", "STAT token 2", "STAT held_ms 0", "STAT waiters 0", "END"}},
		"info bad": {{"200 INFO", "STAT held 1", "STAT holders many", "END"}},
	})
	c := dial(t, []string{f.addr()})
	ctx := testCtx(t)
	in, err := c.Info(ctx, "s")
	want := client.Info{Held: true, Mine: true, Token: 7, HeldFor: 1500 * time.Millisecond, Waiters: 2,
		Kind: client.KindSemaphore, Mode: client.ModeShared, Holders: 3, Limit: 4}
	if err != nil || in != want {
		t.Fatalf("Info s = %+v, %v; want %+v", in, err, want)
	}
	in, err = c.Info(ctx, "old")
	if want := (client.Info{Held: true, Token: 2}); err != nil || in != want {
		t.Fatalf("Info old = %+v, %v; want %+v", in, err, want)
	}
	if in, err := c.Info(ctx, "bad"); err == nil {
		t.Fatalf("Info bad = %+v, want a protocol error", in)
	}
}
