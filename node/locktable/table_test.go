package locktable_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/elock/elock/node/locktable"
)

var defaultLimits = locktable.Limits{DefaultTimeout: 30 * time.Second}

// TestScenarios runs scripted scenarios; see script_test.go for the
// format. Epochs start at 1, so the first token is 1.1.
func TestScenarios(t *testing.T) {
	tests := []struct {
		name    string
		limits  locktable.Limits
		changes bool
		script  string
	}{
		{
			name:   "grant, re-entrancy and unlock",
			limits: defaultLimits,
			script: `
lock 0s s1 a
  granted 1.1
# Re-entrant: the same token, and it is not counted twice.
lock 1s s1 a
  granted 1.1 reentrant
held-by s1
  1
counts
  locks=1 waiters=0 sessions=0
lock 1s s2 a
  unavailable
unlock 2s s2 a
  not_yours
token s2 a
  not_yours
info 2s s1 a
  held mine 1.1 for=2s waiters=0
info 2s s2 a
  held theirs 1.1 for=2s waiters=0
# One unlock releases a lock taken twice.
unlock 2s s1 a
  unlocked
unlock 2s s1 a
  not_locked
token s1 a
  not_locked
info 2s s1 a
  free
held-by s1
  0
counts
  locks=0 waiters=0 sessions=0
# Tokens keep growing across names and re-grants of a forgotten name.
lock 3s s2 a
  granted 1.2
lock 3s s2 b
  granted 1.3
held-by s2
  2
`,
		},
		{
			name:   "hand-over is FIFO among waiters",
			limits: defaultLimits,
			script: `
lock 0s s1 a
  granted 1.1
lock 0s s2 a wait=1 until=60s
  queued
lock 1s s3 a wait=2 until=60s
  queued
lock 2s s4 a wait=3 until=60s
  queued
# A waiting session asking again without waiting is refused at once.
lock 2s s3 a
  unavailable
counts
  locks=1 waiters=3 sessions=0
info 5s s3 a
  held theirs 1.1 for=5s waiters=3
held-by s2
  0
unlock 10s s1 a
  unlocked
  > granted w1 s2 a 1.2
info 12s s2 a
  held mine 1.2 for=2s waiters=2
token s2 a
  1.2
lock 12s s2 a
  granted 1.2 reentrant
unlock 20s s2 a
  unlocked
  > granted w2 s3 a 1.3
unlock 21s s3 a
  unlocked
  > granted w3 s4 a 1.4
unlock 22s s4 a
  unlocked
counts
  locks=0 waiters=0 sessions=0
next
  none
`,
		},
		{
			// No Tick ran (an owner without a lease ticks nothing), but a
			// waiter past its deadline is never handed the lock: its
			// client has been told it timed out.
			name:   "a hand-over skips waiters past their deadline",
			limits: defaultLimits,
			script: `
lock 0s s1 a
  granted 1.1
lock 0s s2 a wait=1 until=10s
  queued
lock 0s s3 a wait=2 until=30s
  queued
unlock 20s s1 a
  unlocked
  > timed-out w1 s2 a
  > granted w2 s3 a 1.2
unlock 40s s3 a
  unlocked
counts
  locks=0 waiters=0 sessions=0
`,
		},
		{
			name:   "a session's later waiters are granted with its first",
			limits: defaultLimits,
			script: `
lock 0s s1 a
  granted 1.1
lock 0s s2 a wait=1 until=60s
  queued
lock 0s s3 a wait=2 until=60s
  queued
lock 0s s2 a wait=3 until=50s
  queued
unlock 1s s1 a
  unlocked
  > granted w1 s2 a 1.2
  > granted w3 s2 a 1.2
held-by s2
  1
counts
  locks=1 waiters=1 sessions=0
next
  1m0s
cancel 3
  false
unlock 2s s2 a
  unlocked
  > granted w2 s3 a 1.3
`,
		},
		{
			name:   "waiter limit per lock",
			limits: locktable.Limits{MaxWaiters: 2, DefaultTimeout: time.Second},
			script: `
lock 0s s1 a
  granted 1.1
lock 0s s2 a wait=1 until=10s
  queued
lock 0s s3 a wait=2 until=10s
  queued
lock 0s s4 a wait=3 until=10s
  too_many_waiters
# Not waiting, and holding, are unaffected by the limit.
lock 0s s4 a
  unavailable
lock 0s s1 a
  granted 1.1 reentrant
# The limit is per lock.
lock 0s s4 b wait=4 until=10s
  granted 1.2
lock 0s s1 b wait=5 until=10s
  queued
cancel 1
  true
lock 0s s4 a wait=6 until=10s
  queued
counts
  locks=2 waiters=3 sessions=0
`,
		},
		{
			name:   "waiters time out in deadline order and leave the queue",
			limits: defaultLimits,
			script: `
lock 0s s1 a
  granted 1.1
lock 0s s2 a wait=1 until=5s
  queued
lock 0s s3 a wait=2 until=3s
  queued
lock 0s s4 a wait=3 until=8s
  queued
next
  3s
tick 2s
  ok
tick 3s
  ok
  > timed-out w2 s3 a
next
  5s
counts
  locks=1 waiters=2 sessions=0
tick 6s
  ok
  > timed-out w1 s2 a
info 6s s1 a
  held mine 1.1 for=6s waiters=1
cancel 1
  false
cancel 2
  false
# The timed-out waiters are skipped: the next in line is s4.
unlock 7s s1 a
  unlocked
  > granted w3 s4 a 1.2
tick 100s
  ok
next
  none
# A deadline already past when queued expires at the next tick.
lock 100s s1 a wait=4 until=99s
  queued
next
  1m39s
tick 100s
  ok
  > timed-out w4 s1 a
counts
  locks=1 waiters=0 sessions=0
`,
		},
		{
			name:   "cancel",
			limits: defaultLimits,
			script: `
lock 0s s1 a
  granted 1.1
lock 0s s2 a wait=1 until=10s
  queued
lock 0s s3 a wait=2 until=20s
  queued
cancel 1
  true
cancel 1
  false
cancel 99
  false
next
  20s
unlock 1s s1 a
  unlocked
  > granted w2 s3 a 1.2
# Already granted: the caller has that effect.
cancel 2
  false
tick 30s
  ok
`,
		},
		{
			name:   "release session hands over each lock and answers its waits",
			limits: defaultLimits,
			script: `
lock 0s s1 a
  granted 1.1
lock 1s s1 b
  granted 1.2
lock 2s s1 c
  granted 1.3
lock 3s s2 a wait=1 until=60s
  queued
lock 3s s3 c wait=2 until=60s
  queued
lock 3s s2 c wait=3 until=60s
  queued
lock 4s s4 x
  granted 1.4
lock 4s s1 x wait=4 until=50s
  queued
counts
  locks=4 waiters=4 sessions=0
# The most recently acquired lock is released first; its own wait is
# answered as run out.
release 5s s1
  released 3
  > granted w2 s3 c 1.5
  > granted w1 s2 a 1.6
  > timed-out w4 s1 x
counts
  locks=3 waiters=1 sessions=0
held-by s1
  0
cancel 4
  false
info 5s s4 x
  held mine 1.4 for=1s waiters=0
info 6s s3 c
  held mine 1.5 for=1s waiters=1
token s1 b
  not_locked
next
  1m0s
release 6s s1
  released 0
release 6s nobody
  released 0
# s2 holds a and waits for c: it releases one lock and stops waiting.
release 7s s2
  released 1
  > timed-out w3 s2 c
counts
  locks=2 waiters=0 sessions=0
`,
		},
		{
			name:   "attach and detach",
			limits: defaultLimits,
			script: `
attach 0s s1 h1
  new epoch=1 timeout=30s
session s1
  s1 attached epoch=1 home=h1 timeout=30s
attach 1s s1 h2
  error: locktable: session attached to a live connection
counts
  locks=0 waiters=0 sessions=1
# A detach with another epoch is stale and ignored.
detach 2s s1 2
  ok
detach 2s s1 0
  ok
session s1
  s1 attached epoch=1 home=h1 timeout=30s
detach 2s s1 1
  ok
session s1
  s1 detached epoch=1 expires=32s timeout=30s
next
  32s
# Detaching a detached session changes nothing.
detach 3s s1 1
  ok
session s1
  s1 detached epoch=1 expires=32s timeout=30s
attach 10s s1 h2
  resumed epoch=2 timeout=30s
session s1
  s1 attached epoch=2 home=h2 timeout=30s
next
  none
# The old home's detach comes late.
detach 11s s1 1
  ok
session s1
  s1 attached epoch=2 home=h2 timeout=30s
set-timeout s1 5s
  ok
set-timeout s9 5s
  error: locktable: no such session
detach 12s s1 2
  ok
session s1
  s1 detached epoch=2 expires=17s timeout=5s
tick 16s
  ok
tick 17s
  ok
  > expired s1
session s1
  none
counts
  locks=0 waiters=0 sessions=0
detach 18s s1 2
  ok
attach 18s s1 h1
  new epoch=3 timeout=30s
detach 19s nobody 1
  ok
`,
		},
		{
			name:   "zero or negative timeout expires at detach",
			limits: defaultLimits,
			script: `
attach 0s s1 h1
  new epoch=1 timeout=30s
set-timeout s1 0s
  ok
detach 1s s1 1
  ok
  > expired s1
session s1
  none
next
  none
attach 2s s2 h1
  new epoch=2 timeout=30s
set-timeout s2 -5s
  ok
detach 3s s2 2
  ok
  > expired s2
counts
  locks=0 waiters=0 sessions=0
tick 1h
  ok
`,
		},
		{
			name:   "zero default timeout",
			limits: locktable.Limits{},
			script: `
attach 0s s1 h1
  new epoch=1 timeout=0s
detach 0s s1 1
  ok
  > expired s1
`,
		},
		{
			name:   "attach after expiry but before the tick starts a new session",
			limits: defaultLimits,
			script: `
attach 0s s1 h1
  new epoch=1 timeout=30s
detach 1s s1 1
  ok
# Just in time: resumed.
attach 30s s1 h2
  resumed epoch=2 timeout=30s
set-timeout s1 10s
  ok
detach 40s s1 2
  ok
next
  50s
# The timeout has run out; no tick has seen it yet.
attach 50s s1 h2
  new epoch=3 timeout=30s
  > expired s1
session s1
  s1 attached epoch=3 home=h2 timeout=30s
next
  none
tick 100s
  ok
counts
  locks=0 waiters=0 sessions=1
`,
		},
		{
			name:   "tick expires waiters and sessions, and releases no locks",
			limits: defaultLimits,
			script: `
attach 0s s1 h1
  new epoch=1 timeout=30s
set-timeout s1 10s
  ok
lock 0s s1 x
  granted 1.1
detach 0s s1 1
  ok
lock 0s s2 a
  granted 1.2
lock 0s s3 a wait=1 until=20s
  queued
next
  10s
tick 10s
  ok
  > expired s1
# The caller releases an expired session's locks, in every partition.
token s1 x
  1.1
next
  20s
tick 25s
  ok
  > timed-out w1 s3 a
next
  none
release 25s s1
  released 1
`,
		},
		{
			name:   "a tick reports waiters and sessions due at once",
			limits: defaultLimits,
			script: `
attach 0s s1 h1
  new epoch=1 timeout=30s
set-timeout s1 5s
  ok
detach 0s s1 1
  ok
lock 0s s2 a
  granted 1.1
lock 0s s3 a wait=1 until=4s
  queued
tick 9s
  ok
  > timed-out w1 s3 a
  > expired s1
`,
		},
		{
			name:   "set epoch",
			limits: defaultLimits,
			script: `
lock 0s s1 a
  granted 1.1
lock 0s s1 b
  granted 1.2
lock 0s s2 a wait=1 until=60s
  queued
set-epoch 1
  error: locktable: epoch not above the current one
set-epoch 0
  error: locktable: epoch not above the current one
epoch
  1
set-epoch 3
  ok
epoch
  3
tokens-left
  4294967295
lock 1s s2 c
  granted 3.1
unlock 2s s1 a
  unlocked
  > granted w1 s2 a 3.2
# A lock held across the change keeps its token.
token s1 b
  1.2
set-epoch 2
  error: locktable: epoch not above the current one
`,
		},
		{
			name:   "the last tokens of an epoch are reserved for queued waiters",
			limits: defaultLimits,
			script: `
set-count left=3
  ok
tokens-left
  3
lock 0s s1 a
  granted 1.4294967293
tokens-left
  2
lock 0s s2 a wait=1 until=60s
  queued
lock 0s s3 a wait=2 until=60s
  queued
# Two tokens left, both promised to the two waiters.
lock 0s s4 a wait=3 until=60s
  error: locktable: token space of this epoch exhausted
lock 0s s4 b
  error: locktable: token space of this epoch exhausted
# Answers that need no token still work.
lock 0s s1 a
  granted 1.4294967293 reentrant
lock 0s s4 a
  unavailable
unlock 1s s1 a
  unlocked
  > granted w1 s2 a 1.4294967294
unlock 2s s2 a
  unlocked
  > granted w2 s3 a 1.4294967295
tokens-left
  0
unlock 3s s3 a
  unlocked
lock 4s s4 b
  error: locktable: token space of this epoch exhausted
counts
  locks=0 waiters=0 sessions=0
set-epoch 2
  ok
lock 4s s4 b
  granted 2.1
`,
		},
		{
			name:   "a waiter that leaves gives its reserved token back",
			limits: defaultLimits,
			script: `
set-count left=2
  ok
lock 0s s1 a
  granted 1.4294967294
lock 0s s2 a wait=1 until=5s
  queued
lock 0s s3 b
  error: locktable: token space of this epoch exhausted
tick 5s
  ok
  > timed-out w1 s2 a
lock 5s s3 b
  granted 1.4294967295
`,
		},
		{
			name:   "release session at the end of the token space hands every lock over",
			limits: defaultLimits,
			script: `
set-count left=4
  ok
lock 0s s1 a
  granted 1.4294967292
lock 0s s1 b
  granted 1.4294967293
lock 0s s2 a wait=1 until=60s
  queued
lock 0s s3 b wait=2 until=60s
  queued
lock 0s s4 c
  error: locktable: token space of this epoch exhausted
release 1s s1
  released 2
  > granted w2 s3 b 1.4294967294
  > granted w1 s2 a 1.4294967295
tokens-left
  0
`,
		},
		{
			name:    "recorded changes",
			limits:  defaultLimits,
			changes: true,
			script: `
lock 0s s1 a
  granted 1.1
  > held a s1 1.1
lock 0s s1 a
  granted 1.1 reentrant
lock 0s s2 a wait=1 until=60s
  queued
  > wanted a by s2
lock 0s s1 b
  granted 1.2
  > held b s1 1.2
unlock 1s s1 a
  unlocked
  > freed a s1 1.1
  > held a s2 1.3
  > granted w1 s2 a 1.3
unlock 1s s2 a
  unlocked
  > freed a s2 1.3
release 2s s1
  released 1
  > freed b s1 1.2
`,
		},
		{
			name:   "shared holders together, an exclusive one alone",
			limits: defaultLimits,
			script: `
rlock 0s s1 a
  granted 1.1
rlock 0s s2 a
  granted 1.2
# Each shared grant has its own token, and sees its own in info.
token s1 a
  1.1
token s2 a
  1.2
info 1s s3 a
  held theirs 1.2 for=1s waiters=0 lock shared holders=2
info 1s s1 a
  held mine 1.1 for=1s waiters=0 lock shared holders=2
counts
  locks=2 waiters=0 sessions=0
lock 1s s3 a
  unavailable
held-by s1
  1
# Re-entrant: the same grant again.
rlock 2s s1 a
  granted 1.1 reentrant
unlock 3s s1 a
  unlocked
unlock 3s s2 a
  unlocked
lock 3s s3 a
  granted 1.3
info 3s s1 a
  held theirs 1.3 for=0s waiters=0
rlock 3s s1 a
  unavailable
# An exclusive holder's shared request is covered by its grant.
rlock 4s s3 a
  granted 1.3 reentrant
unlock 4s s3 a
  unlocked
info 4s s1 a
  free
`,
		},
		{
			name:   "one FIFO queue: a waiting writer holds back later readers",
			limits: defaultLimits,
			script: `
rlock 0s s1 a
  granted 1.1
lock 0s s2 a wait=1 until=60s
  queued
# The name admits readers, but a writer waits: this reader queues.
rlock 0s s3 a
  unavailable
rlock 0s s3 a wait=2 until=60s
  queued
rlock 0s s4 a wait=3 until=60s
  queued
lock 0s s5 a wait=4 until=60s
  queued
rlock 0s s6 a wait=5 until=60s
  queued
unlock 1s s1 a
  unlocked
  > granted w1 s2 a 1.2
# The writer's release admits both readers at the head together, and
# stops at the next writer.
unlock 2s s2 a
  unlocked
  > granted w2 s3 a 1.3
  > granted w3 s4 a 1.4
unlock 3s s3 a
  unlocked
unlock 3s s4 a
  unlocked
  > granted w4 s5 a 1.5
unlock 4s s5 a
  unlocked
  > granted w5 s6 a 1.6
`,
		},
		{
			name:   "a writer leaving the head lets the readers behind it in",
			limits: defaultLimits,
			script: `
rlock 0s s1 a
  granted 1.1
lock 0s s2 a wait=1 until=10s
  queued
rlock 0s s3 a wait=2 until=60s
  queued
rlock 0s s4 a wait=3 until=60s
  queued
# Cancelled: the readers behind it join the reader that holds.
cancel 1 at=1s
  true
  > granted w2 s3 a 1.2
  > granted w3 s4 a 1.3
lock 1s s2 a wait=4 until=10s
  queued
rlock 1s s5 a wait=5 until=60s
  queued
# Timed out: the same.
tick 10s
  ok
  > timed-out w4 s2 a
  > granted w5 s5 a 1.4
lock 10s s2 a wait=6 until=20s
  queued
rlock 10s s6 a wait=7 until=60s
  queued
# Its session released: the same.
release 11s s2
  released 0
  > timed-out w6 s2 a
  > granted w7 s6 a 1.5
counts
  locks=5 waiters=0 sessions=0
`,
		},
		{
			name:   "a writer cancelled while the owner may not grant: its queue is served by the next tick",
			limits: defaultLimits,
			script: `
rlock 0s s1 a
  granted 1.1
lock 0s s2 a wait=1 until=60s
  queued
rlock 0s s3 a wait=2 until=60s
  queued
cancel-later 1
  true
cancel-later 1
  false
next
  at once
tick 1s
  ok
  > granted w2 s3 a 1.2
next
  none
`,
		},
		{
			name:   "a table given up: its waiters withdrawn, nothing served",
			limits: defaultLimits,
			script: `
rlock 0s s1 a
  granted 1.1
lock 0s s2 a wait=1 until=60s
  queued
rlock 0s s3 a wait=2 until=60s
  queued
# (Behind first: the invariants hold between the calls. A node giving
# the table up withdraws every waiter, in any order.)
withdraw 2
  true
withdraw 1
  true
next
  none
tick 1s
  ok
counts
  locks=1 waiters=0 sessions=0
`,
		},
		{
			name:    "elections: a campaign publishes its value, proclaim changes it, the next leader's replaces it",
			limits:  defaultLimits,
			changes: true,
			script: `
leader lead
  no leader
campaign 0s s1 lead host-a
  granted 1.1
  > held lead s1 1.1
leader lead
  1.1 host-a
campaign 0s s2 lead host-b wait=1 until=60s
  queued
  > wanted lead by s2
# Only the leader proclaims; a proclaim of the same value changes nothing.
proclaim s2 lead host-b
  not_yours
proclaim s1 lead host-a2
  granted 1.1
  > held lead s1 1.1
proclaim s1 lead host-a2
  granted 1.1
leader lead
  1.1 host-a2
info 1s s2 lead
  held theirs 1.1 for=1s waiters=1
# Resigning hands leadership, and the waiter's value, to the next.
unlock 2s s1 lead
  unlocked
  > freed lead s1 1.1
  > held lead s2 1.2
  > granted w1 s2 lead 1.2
leader lead
  1.2 host-b
# A plain lock leads with no value; readers lead nothing.
unlock 3s s2 lead
  unlocked
  > freed lead s2 1.2
lock 3s s3 lead
  granted 1.3
  > held lead s3 1.3
leader lead
  1.3
unlock 3s s3 lead
  unlocked
  > freed lead s3 1.3
rlock 4s s1 lead
  granted 1.4
  > held lead s1 1.4
leader lead
  no leader
proclaim s1 lead x
  not_yours
`,
		},
		{
			name:   "no upgrade",
			limits: defaultLimits,
			script: `
rlock 0s s1 a
  granted 1.1
lock 0s s1 a
  no_upgrade
lock 0s s1 a wait=1 until=10s
  no_upgrade
# A session that waits to read and then to write gets the read; its
# wait to write would wait for itself, and is refused.
lock 0s s2 b
  granted 1.2
rlock 0s s1 b wait=2 until=10s
  queued
lock 0s s1 b wait=3 until=10s
  queued
unlock 1s s2 b
  unlocked
  > granted w2 s1 b 1.3
  > timed-out w3 s1 b
`,
		},
		{
			name:   "semaphore",
			limits: locktable.Limits{MaxWaiters: 2, DefaultTimeout: 30 * time.Second},
			script: `
acquire 0s s1 sem 2
  granted 1.1
acquire 0s s2 sem 2
  granted 1.2
acquire 0s s3 sem 2
  unavailable
acquire 0s s3 sem 3
  limit_mismatch limit=2
lock 0s s3 sem
  kind_mismatch semaphore
rlock 0s s3 sem
  kind_mismatch semaphore
acquire 0s s1 sem 2
  granted 1.1 reentrant
info 1s s3 sem
  held theirs 1.2 for=1s waiters=0 semaphore shared holders=2 limit=2
acquire 1s s3 sem 2 wait=1 until=60s
  queued
acquire 1s s4 sem 2 wait=2 until=60s
  queued
acquire 1s s5 sem 2 wait=3 until=60s
  too_many_waiters
unlock 2s s2 sem
  unlocked
  > granted w1 s3 sem 1.3
unlock 2s s3 sem
  unlocked
  > granted w2 s4 sem 1.4
unlock 3s s1 sem
  unlocked
unlock 3s s4 sem
  unlocked
# Forgotten once nobody holds or awaits it: the next request sets the
# limit, or the kind.
info 3s s1 sem
  free
lock 4s s1 sem
  granted 1.5
acquire 4s s2 sem 5
  kind_mismatch lock
unlock 4s s1 sem
  unlocked
acquire 5s s2 sem 5
  granted 1.6
`,
		},
		{
			name:    "recorded changes of shared grants",
			limits:  defaultLimits,
			changes: true,
			script: `
rlock 0s s1 a
  granted 1.1
  > held a s1 1.1
lock 0s s2 a wait=1 until=60s
  queued
  > wanted a by s2
unlock 1s s1 a
  unlocked
  > freed a s1 1.1
  > held a s2 1.2
  > granted w1 s2 a 1.2
acquire 1s s1 b 2
  granted 1.3
  > held b s1 1.3
acquire 1s s2 b 2
  granted 1.4
  > held b s2 1.4
release 2s s2
  released 2
  > freed b s2 1.4
  > freed a s2 1.2
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runScript(t, locktable.New(1, tt.limits, tt.changes), tt.script)
		})
	}
}

func TestNewTable(t *testing.T) {
	tb := locktable.New(7, defaultLimits, false)
	if tb.Epoch() != 7 || tb.TokensLeft() != 1<<32-1 {
		t.Errorf("epoch %d, tokens left %d", tb.Epoch(), tb.TokensLeft())
	}
	if c := tb.Counts(); c != (locktable.Counts{}) {
		t.Errorf("counts of a new table: %+v", c)
	}
	if _, ok := tb.NextDeadline(); ok {
		t.Error("a new table has a deadline")
	}
	if fx := tb.Tick(0); len(fx) != 0 {
		t.Errorf("tick of a new table: %v", fx)
	}
	res, _, err := tb.Lock(0, "s", []byte("a"), 0, 0)
	if err != nil || res.Token != 7<<32|1 {
		t.Errorf("first grant %+v, %v; want token 7.1", res, err)
	}
}

func TestStatusString(t *testing.T) {
	want := map[locktable.Status]string{
		locktable.Granted: "granted", locktable.Queued: "queued", locktable.Unavailable: "unavailable",
		locktable.TooManyWaiters: "too_many_waiters", locktable.Unlocked: "unlocked",
		locktable.NotYours: "not_yours", locktable.NotLocked: "not_locked",
		locktable.KindMismatch: "kind_mismatch", locktable.LimitMismatch: "limit_mismatch", locktable.NoUpgrade: "no_upgrade",
		locktable.Status(0): "", locktable.Status(200): "status?",
		locktable.NoUpgrade + 1: "status?", // the first past the names
	}
	for s, w := range want {
		if s.String() != w {
			t.Errorf("Status(%d).String() = %q, want %q", s, s.String(), w)
		}
	}
}

// TestLockNameIsCopied: the table keeps its own copy of a name, because
// the caller's name aliases a read buffer that is about to be reused.
func TestLockNameIsCopied(t *testing.T) {
	tb := locktable.New(1, defaultLimits, true)
	buf := []byte("alpha")
	_, fx, _ := tb.Lock(0, "s1", buf, 0, 0)
	if len(fx) != 1 || fx[0].Name != "alpha" {
		t.Fatalf("effects %v", fx)
	}
	copy(buf, "omega")
	if _, st := tb.Token("s1", []byte("alpha")); st != locktable.Granted {
		t.Errorf("lock alpha lost after the caller's buffer changed: %v", st)
	}
	if _, st := tb.Token("s1", []byte("omega")); st != locktable.NotLocked {
		t.Errorf("lock omega appeared: %v", st)
	}
}

// TestTokensIncrease: every grant and hand-over carries a token above
// every earlier one, per name and overall.
func TestTokensIncrease(t *testing.T) {
	tb := locktable.New(1, defaultLimits, false)
	var last uint64
	check := func(v uint64) {
		t.Helper()
		if v <= last {
			t.Fatalf("token %s after %s", tok(v), tok(last))
		}
		last = v
	}
	w := locktable.WaiterID(0)
	for round := range 200 {
		name := []byte{'a' + byte(round%3)}
		res, _, err := tb.Lock(0, "s0", name, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if res.Status == locktable.Granted && !res.Reentrant {
			check(res.Token)
		}
		for s := range 3 {
			w++
			tb.Lock(0, string(rune('1'+s)), name, w, 1e9)
		}
		if round%7 == 0 {
			if err := tb.SetEpoch(tb.Epoch() + 1); err != nil {
				t.Fatal(err)
			}
		}
		// Unlock through the whole queue.
		for holder := "s0"; ; {
			_, fx := tb.Unlock(0, holder, name)
			if len(fx) == 0 {
				break
			}
			check(fx[0].Token)
			holder = fx[0].Session
		}
	}
}

// TestSetEpochBeyond32Bits: tokens are epoch<<32 | count, so an epoch of
// 2^32 or more no longer fits, and its tokens wrap below the earlier ones.
// SetEpoch promises that every later token is above every earlier one.
func TestSetEpochBeyond32Bits(t *testing.T) {
	for _, e := range []uint64{1 << 32, 1<<32 + 5, 1 << 40} {
		tb := locktable.New(1<<32-1, defaultLimits, false)
		before, _, _ := tb.Lock(0, "s1", []byte("a"), 0, 0)
		if err := tb.SetEpoch(e); err != nil {
			continue // refusing the epoch is a fine answer
		}
		after, _, err := tb.Lock(0, "s1", []byte("b"), 0, 0)
		if err == nil && after.Token <= before.Token {
			t.Errorf("SetEpoch(%#x) accepted; token %#x after %#x", e, after.Token, before.Token)
		}
	}
}

// TestDetachHugeTimeout: a timeout so long that now+timeout overflows must
// not make the session expire at once.
func TestDetachHugeTimeout(t *testing.T) {
	tb := locktable.New(1, defaultLimits, false)
	a, _, err := tb.Attach(origin, "s1", "h1")
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.SetTimeout("s1", time.Duration(1<<63-1)); err != nil {
		t.Fatal(err)
	}
	if fx := tb.Detach(origin, "s1", a.Epoch); len(fx) != 0 {
		t.Fatalf("detach: %v", fx)
	}
	if fx := tb.Tick(origin + 1); len(fx) != 0 {
		t.Errorf("a session with a timeout of ~292 years expired a nanosecond after detach: %v", fx)
	}
}

func TestErrors(t *testing.T) {
	tb := locktable.New(1, defaultLimits, false)
	tb.Attach(0, "s", "h")
	_, _, err := tb.Attach(0, "s", "h")
	if !errors.Is(err, locktable.ErrAttached) {
		t.Errorf("second attach: %v", err)
	}
	if err := tb.SetEpoch(1); !errors.Is(err, locktable.ErrStaleEpoch) {
		t.Errorf("SetEpoch(1): %v", err)
	}
	if err := tb.SetTimeout("x", 0); !errors.Is(err, locktable.ErrNoSession) {
		t.Errorf("SetTimeout(x): %v", err)
	}
	tb.SetCount(1<<32 - 1)
	if _, _, err := tb.Lock(0, "s", []byte("a"), 0, 0); !errors.Is(err, locktable.ErrExhausted) {
		t.Errorf("Lock at the end of the epoch: %v", err)
	}
	for _, e := range []error{locktable.ErrAttached, locktable.ErrStaleEpoch, locktable.ErrNoSession, locktable.ErrExhausted} {
		if msg := e.Error(); len(msg) < 11 || msg[:11] != "locktable: " {
			t.Errorf("error %q lacks the package prefix", msg)
		}
	}
}

// TestSessionCopy: Session returns a copy; changing it changes nothing.
func TestSessionCopy(t *testing.T) {
	tb := locktable.New(1, defaultLimits, false)
	tb.Attach(0, "s", "h")
	s, ok := tb.Session("s")
	if !ok || s.ID != "s" || !s.Attached || s.Epoch != 1 || s.Home != "h" || s.Timeout != 30*time.Second {
		t.Fatalf("Session = %+v, %v", s, ok)
	}
	s.Attached, s.Epoch, s.Home = false, 9, "x"
	if s2, _ := tb.Session("s"); !s2.Attached || s2.Epoch != 1 || s2.Home != "h" {
		t.Errorf("changing the copy changed the record: %+v", s2)
	}
}

// Drop takes back one grant that no client heard of: only that session's,
// only under that token, and only while the session has not been told of
// it since (a re-entrant lock, token or info claims it). A waiter gets it.
func TestDrop(t *testing.T) {
	tests := []struct {
		name    string
		claim   func(tb *locktable.Table)
		session string
		token   func(granted uint64) uint64
		want    locktable.Status
	}{
		{"unclaimed", func(*locktable.Table) {}, "a", same, locktable.Unlocked},
		{"another session", func(*locktable.Table) {}, "b", same, locktable.NotYours},
		{"another token", func(*locktable.Table) {}, "a", func(g uint64) uint64 { return g + 1 }, locktable.NotYours},
		{"claimed by a re-entrant lock", func(tb *locktable.Table) { tb.Lock(0, "a", []byte("x"), 0, 0) }, "a", same, locktable.NotYours},
		{"claimed by token", func(tb *locktable.Table) { tb.Token("a", []byte("x")) }, "a", same, locktable.NotYours},
		{"claimed by info", func(tb *locktable.Table) { tb.Info(0, "a", []byte("x")) }, "a", same, locktable.NotYours},
		{"listed for a resume", func(tb *locktable.Table) { tb.ClaimHeld("a", 0, 1) }, "a", same, locktable.NotYours},
		{"listed, not claimed", func(tb *locktable.Table) { tb.HeldNames("a") }, "a", same, locktable.Unlocked},
		{"looked at by another session", func(tb *locktable.Table) {
			tb.Token("b", []byte("x"))
			tb.Info(0, "b", []byte("x"))
		}, "a", same, locktable.Unlocked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := locktable.New(1, defaultLimits, true)
			res, _, err := tb.Lock(0, "a", []byte("x"), 0, 0)
			if err != nil || res.Status != locktable.Granted {
				t.Fatal(res, err)
			}
			if r, _, _ := tb.Lock(0, "c", []byte("x"), 1, 100); r.Status != locktable.Queued {
				t.Fatalf("waiter: %v", r.Status)
			}
			tt.claim(tb)
			got, fx := tb.Drop(0, tt.session, []byte("x"), tt.token(res.Token))
			if got.Status != tt.want {
				t.Fatalf("Drop: %v, want %v", got.Status, tt.want)
			}
			_, holder := tb.Token("c", []byte("x"))
			if handed := holder == locktable.Granted; handed != (tt.want == locktable.Unlocked) {
				t.Fatalf("waiter granted: %v, effects %v", handed, fx)
			}
		})
	}
}

func same(g uint64) uint64 { return g }

// A claim belongs to one grant: a lock handed to a waiter starts
// unclaimed, whatever its previous holder was told.
func TestDropAfterHandOver(t *testing.T) {
	tb := locktable.New(1, defaultLimits, true)
	tb.Lock(0, "a", []byte("x"), 0, 0)
	tb.Lock(0, "b", []byte("x"), 1, 100)
	tb.Token("a", []byte("x")) // a's grant is claimed
	tb.Unlock(0, "a", []byte("x"))
	// Another session looks: b's grant and its token, no claim.
	granted := tb.Info(0, "c", []byte("x")).Token
	if got, _ := tb.Drop(0, "b", []byte("x"), granted); got.Status != locktable.Unlocked {
		t.Fatalf("Drop of b's unclaimed grant after a hand-over: %v", got.Status)
	}
}

// Drop keeps a grant that a client of the session may know of through
// another request, and one whose history this table does not know.
func TestDropKeepsWhatAClientMayKnow(t *testing.T) {
	x := []byte("x")
	tests := []struct {
		name string
		// setup leaves session "a" holding x; it returns the grant's token.
		setup func(tb *locktable.Table) uint64
		want  locktable.Status
	}{
		{"one wait granted", func(tb *locktable.Table) uint64 {
			tb.Lock(0, "c", x, 0, 0)
			tb.Lock(0, "a", x, 1, 100)
			_, fx := tb.Unlock(0, "c", x)
			return grantedTo(t, fx, 1)
		}, locktable.Unlocked},
		{"two waits of the session granted together", func(tb *locktable.Table) uint64 {
			// An old connection's wait and a resumed one's: the second
			// reply tells the client, so the first one's Drop must not
			// take the lock from under it.
			tb.Lock(0, "c", x, 0, 0)
			tb.Lock(0, "a", x, 1, 100)
			tb.Lock(0, "a", x, 2, 100)
			_, fx := tb.Unlock(0, "c", x)
			if tok := grantedTo(t, fx, 2); tok != grantedTo(t, fx, 1) {
				t.Fatalf("the session's two waits got different tokens")
			}
			return grantedTo(t, fx, 1)
		}, locktable.NotYours},
		{"copied from another table", func(tb *locktable.Table) uint64 {
			tok := uint64(1)<<32 | 7
			tb.Apply(0, locktable.Change{Kind: locktable.ChangeHeld, Name: "x", Session: "a", Token: tok})
			return tok
		}, locktable.Granted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := locktable.New(1, defaultLimits, true)
			tok := tt.setup(tb)
			got, _ := tb.Drop(0, "a", x, tok)
			if got.Status != tt.want {
				t.Fatalf("Drop: %v, want %v", got.Status, tt.want)
			}
			_, held := tb.Token("a", x)
			if kept := held == locktable.Granted; kept != (tt.want != locktable.Unlocked) {
				t.Fatalf("still held after Drop %v: %v", got.Status, kept)
			}
		})
	}
}

// grantedTo returns the token of waiter w's grant among effects fx.
func grantedTo(t *testing.T, fx []locktable.Effect, w locktable.WaiterID) uint64 {
	t.Helper()
	for _, e := range fx {
		if e.Kind == locktable.WaiterGranted && e.Waiter == w {
			return e.Token
		}
	}
	t.Fatalf("waiter %d not granted: %v", w, fx)
	return 0
}

// FirstSessionEpoch raises the epochs of later attaches, never lowers
// them, and a copy of the table keeps them.
func TestFirstSessionEpoch(t *testing.T) {
	tb := locktable.New(1, defaultLimits, true)
	tb.FirstSessionEpoch(100)
	a, _, _ := tb.Attach(0, "s1", "h")
	tb.FirstSessionEpoch(50)
	b, _, _ := tb.Attach(0, "s2", "h")
	if a.Epoch != 101 || b.Epoch != 102 {
		t.Fatalf("epochs %d and %d; want 101 and 102", a.Epoch, b.Epoch)
	}
	cp, err := locktable.Restore(0, tb.Snapshot(0), defaultLimits, true)
	if err != nil {
		t.Fatal(err)
	}
	if c, _, _ := cp.Attach(0, "s3", "h"); c.Epoch != 103 {
		t.Fatalf("the copy attached at epoch %d; want 103", c.Epoch)
	}
}

// ReleaseSessionUpTo leaves the locks and waits of a later incarnation of
// the session: those granted to its requests, those it claimed with a
// re-entrant lock or that a resume listed to it, those handed over to its
// waits. A replica's copy, and
// a snapshot's, keep each lock's epoch.
func TestReleaseSessionUpTo(t *testing.T) {
	tb := locktable.New(1, defaultLimits, true)
	lock := func(session string, epoch uint64, name string, w locktable.WaiterID) locktable.Status {
		t.Helper()
		res, _, err := tb.LockAt(0, session, epoch, []byte(name), w, 100)
		if err != nil {
			t.Fatal(err)
		}
		return res.Status
	}
	lock("s", 3, "claimed", 0) // the old incarnation's, claimed by the new one
	if _, fx, _ := tb.LockAt(0, "s", 7, []byte("claimed"), 0, 0); len(fx) != 1 || fx[0].Kind != locktable.LockHeld {
		t.Fatalf("a re-entrant lock at a later epoch reported %v; want LockHeld for the replica", fx)
	}
	lock("s", 7, "new", 0)
	lock("s", 3, "listed", 0) // the old incarnation's, listed to the new one's client
	if names, fx := tb.ClaimHeld("s", 0, 7); len(names) != 3 || len(fx) != 1 || fx[0].Name != "listed" {
		t.Fatalf("ClaimHeld: %v, effects %v; want 3 names and LockHeld for listed", names, fx)
	}
	lock("s", 3, "old", 0) // the old incarnation's only
	lock("o", 1, "handed", 0)
	if lock("s", 7, "handed", 1) != locktable.Queued || lock("o", 1, "waited", 0) != locktable.Granted || lock("s", 3, "waited", 2) != locktable.Queued {
		t.Fatal("setup: waits not queued")
	}
	tb.Unlock(0, "o", []byte("handed")) // to s's wait at epoch 7

	cp := locktable.New(0, defaultLimits, false)
	for _, n := range []string{"old", "claimed", "new", "listed", "handed"} {
		for _, c := range tb.NameChanges(0, n) {
			cp.Apply(0, c)
		}
	}
	restored, err := locktable.Restore(0, tb.Snapshot(0), defaultLimits, true)
	if err != nil {
		t.Fatal(err)
	}
	for name, table := range map[string]*locktable.Table{"owner": tb, "replica": cp, "restored": restored} {
		n, _ := table.ReleaseSessionUpTo(0, "s", 5)
		if n != 1 {
			t.Errorf("%s: released %d locks; want 1 (old)", name, n)
		}
		for _, x := range []string{"claimed", "new", "listed", "handed"} {
			if _, st := table.Token("s", []byte(x)); st != locktable.Granted {
				t.Errorf("%s: %s taken from the later incarnation", name, x)
			}
		}
		if _, st := table.Token("s", []byte("old")); st == locktable.Granted {
			t.Errorf("%s: the old incarnation's lock was kept", name)
		}
	}
	// The old incarnation's wait went with it; waits are not copied.
	if c := tb.Counts(); c.Waiters != 0 {
		t.Errorf("%d waiters left; want the old incarnation's wait dropped", c.Waiters)
	}
}

// Born is the attach that created a session: a resume keeps it, a new
// session under the same id after an expiry gets a new one. Holders gives
// the oldest epoch of a session's locks and waits, which the mesh's sweep
// compares with Born to find an ended session's leftovers.
func TestSessionBorn(t *testing.T) {
	tb := locktable.New(1, defaultLimits, true)
	first, _, _ := tb.Attach(0, "s", "h")
	tb.Detach(0, "s", first.Epoch)
	resumed, _, _ := tb.Attach(1, "s", "h")
	if rec, _ := tb.Session("s"); !resumed.Resumed || rec.Born != first.Epoch || rec.Epoch != resumed.Epoch {
		t.Fatalf("after a resume: %+v; want born %d", rec, first.Epoch)
	}
	if _, _, err := tb.LockAt(1, "s", resumed.Epoch, []byte("a"), 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.LockAt(1, "s", first.Epoch, []byte("b"), 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.LockAt(1, "o", 9, []byte("c"), 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tb.LockAt(1, "s", first.Epoch-1+100, []byte("c"), 1, 100); err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, h := range tb.Holders() {
		got[h.Session] = h.Oldest
	}
	if want := map[string]uint64{"s": first.Epoch, "o": 9}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Holders: %v; want %v", got, want)
	}
	tb.Detach(2, "s", resumed.Epoch)
	later := locktable.Time(2 + int64(defaultLimits.DefaultTimeout) + 1)
	again, _, _ := tb.Attach(later, "s", "h")
	if rec, _ := tb.Session("s"); again.Resumed || rec.Born != again.Epoch || again.Epoch <= resumed.Epoch {
		t.Fatalf("a new session under the id: %+v (attach %+v); want born %d", rec, again, again.Epoch)
	}
}

// Locks and waits at random attach epochs, bounded releases, listings
// and hand-overs keep the table's indexes whole, including each holder's
// lower bound of its epochs, by which a bounded release below it returns
// without a walk: checked against a walk of every lock and wait.
func TestBoundedReleasesAtRandomEpochs(t *testing.T) {
	for seed := range uint64(30) {
		rng := rand.New(rand.NewPCG(seed, 11))
		tb := locktable.New(1, locktable.Limits{MaxWaiters: 8, DefaultTimeout: time.Minute}, true)
		now := locktable.Time(0)
		w := locktable.WaiterID(0)
		sessions, names := []string{"a", "b", "c"}, []string{"x", "y", "z", "v"}
		for step := range 400 {
			now += int64(rng.IntN(3)) * int64(time.Second)
			s := sessions[rng.IntN(len(sessions))]
			n := []byte(names[rng.IntN(len(names))])
			epoch := uint64(1 + rng.IntN(10))
			switch rng.IntN(6) {
			case 0, 1:
				w++
				tb.LockAt(now, s, epoch, n, w, now+int64(rng.IntN(5))*int64(time.Second))
			case 2:
				tb.Unlock(now, s, n)
			case 3:
				upTo := uint64(rng.IntN(11))
				before := tb.HeldBelow(s, 0, upTo+1)
				released, _ := tb.ReleaseSessionUpTo(now, s, upTo)
				if released != before {
					t.Fatalf("seed %d step %d: released %d of %s's locks up to %d; %d were at or below it", seed, step, released, s, upTo, before)
				}
			case 4:
				tb.ClaimHeld(s, uint64(rng.IntN(5)), epoch)
			case 5:
				tb.Tick(now)
			}
			if err := tb.CheckInvariants(); err != nil {
				t.Fatalf("seed %d step %d: %v", seed, step, err)
			}
		}
	}
}

// A bounded release raises the session's floor above its bound, so that
// the next release bounded at or below it returns without a walk (the
// mesh sends one before every request of a resumed session). The floor
// never passes a lock that is left.
func TestABoundedReleaseRaisesTheFloor(t *testing.T) {
	tb := locktable.New(1, defaultLimits, false)
	tb.LockAt(0, "s", 3, []byte("a"), 0, 0)
	tb.LockAt(0, "s", 9, []byte("b"), 0, 0)
	if f, _ := tb.Floor("s"); f != 3 {
		t.Fatalf("floor %d, want the oldest lock's epoch 3", f)
	}
	if n, _ := tb.ReleaseSessionUpTo(0, "s", 5); n != 1 {
		t.Fatalf("released %d, want a (epoch 3)", n)
	}
	if f, _ := tb.Floor("s"); f != 6 {
		t.Fatalf("after a release up to 5 the floor is %d, want 6", f)
	}
	tb.ReleaseSessionUpTo(0, "s", math.MaxUint64) // the bound has no successor
	if _, ok := tb.Floor("s"); ok {
		t.Fatal("a release of everything left the session's record")
	}
}

// The highest epoch tokens can carry is accepted; one above it is not.
func TestSetEpochBounds(t *testing.T) {
	tb := locktable.New(1, defaultLimits, false)
	if err := tb.SetEpoch(locktable.MaxEpoch + 1); !errors.Is(err, locktable.ErrEpochRange) {
		t.Fatalf("SetEpoch(MaxEpoch+1) = %v, want ErrEpochRange", err)
	}
	if err := tb.SetEpoch(locktable.MaxEpoch); err != nil {
		t.Fatalf("SetEpoch(MaxEpoch) = %v", err)
	}
	r, _, err := tb.Lock(0, "s", []byte("x"), 0, 0)
	if err != nil || r.Token != locktable.MaxEpoch<<32|1 {
		t.Fatalf("grant at the last epoch: %+v, %v", r, err)
	}
	if err := tb.SetEpoch(locktable.MaxEpoch); !errors.Is(err, locktable.ErrStaleEpoch) {
		t.Fatalf("SetEpoch of the current epoch = %v, want ErrStaleEpoch", err)
	}
}

// What falls due at one instant is reported in a fixed order, waiters by
// id and sessions by id, whatever order they were made in: two tables fed
// the same calls report the same effects, and replicas of a table agree.
func TestTickOrdersTies(t *testing.T) {
	tb := locktable.New(1, locktable.Limits{MaxWaiters: 8, DefaultTimeout: time.Second}, false)
	tb.Lock(0, "holder", []byte("x"), 0, 0)
	for _, w := range []locktable.WaiterID{5, 2, 9, 1} {
		if r, _, _ := tb.Lock(0, fmt.Sprint("w", w), []byte("x"), w, 10); r.Status != locktable.Queued {
			t.Fatalf("waiter %d: %v", w, r.Status)
		}
	}
	for _, s := range []string{"s3", "s1", "s2"} {
		a, _, _ := tb.Attach(0, s, "h")
		tb.Detach(int64(10-time.Second), s, a.Epoch) // all expire at 10
	}
	var got []string
	for _, e := range tb.Tick(10) {
		switch e.Kind {
		case locktable.WaiterTimedOut:
			got = append(got, fmt.Sprint("waiter ", e.Waiter))
		case locktable.SessionExpired:
			got = append(got, "session "+e.Session)
		}
	}
	want := "[waiter 1 waiter 2 waiter 5 waiter 9 session s1 session s2 session s3]"
	if fmt.Sprint(got) != want {
		t.Fatalf("tick reported %v, want %s", got, want)
	}
}

// The questions a mesh owner asks before it acts on a session's request:
// which of its locks a resume would raise (HeldBelow), whether a later
// attachment was told of a grant (HeldAfter), and whether a grant under
// the id belongs to an earlier session that expired (Leftover). Each
// bound is tested at the epoch itself, where an off-by-one would release
// a live session's lock or keep an ended one's.
func TestEpochQuestions(t *testing.T) {
	tb := locktable.New(1, defaultLimits, false)
	for _, l := range []struct {
		name  string
		epoch uint64
	}{{"a", 3}, {"b", 5}, {"c", 7}} {
		if r, _, _ := tb.LockAt(0, "s", l.epoch, []byte(l.name), 0, 0); r.Status != locktable.Granted {
			t.Fatalf("lock %s: %v", l.name, r.Status)
		}
	}
	for _, tc := range []struct {
		born, epoch uint64
		want        int
	}{
		{0, 0, 0}, {0, 3, 0}, {0, 4, 1}, {3, 5, 1}, {3, 6, 2}, {4, 6, 1}, {5, 8, 2}, {7, 8, 1}, {8, 100, 0},
	} {
		if n := tb.HeldBelow("s", tc.born, tc.epoch); n != tc.want {
			t.Errorf("HeldBelow(born %d, epoch %d) = %d, want %d", tc.born, tc.epoch, n, tc.want)
		}
	}
	if n := tb.HeldBelow("other", 0, 100); n != 0 {
		t.Errorf("HeldBelow of a session with nothing here = %d", n)
	}
	for _, tc := range []struct {
		session, name string
		epoch         uint64
		after         bool
		leftoverBorn  uint64
		leftover      bool
	}{
		{"s", "b", 4, true, 5, false},
		{"s", "b", 5, false, 6, true},
		{"s", "b", 6, false, 4, false},
		{"t", "b", 0, false, 9, false}, // another session's grant
		{"s", "z", 0, false, 9, false}, // not held
	} {
		if got := tb.HeldAfter(tc.session, []byte(tc.name), tc.epoch); got != tc.after {
			t.Errorf("HeldAfter(%s, %s, %d) = %v, want %v", tc.session, tc.name, tc.epoch, got, tc.after)
		}
		if got := tb.Leftover(tc.session, tc.leftoverBorn, []byte(tc.name)); got != tc.leftover {
			t.Errorf("Leftover(%s, born %d, %s) = %v, want %v", tc.session, tc.leftoverBorn, tc.name, got, tc.leftover)
		}
	}
	if !tb.Locked([]byte("a")) || tb.Locked([]byte("z")) {
		t.Error("Locked does not say which names are held")
	}
}

// The table refuses a request for a mode it does not know, a permit of
// no permits, or a limit on a lock, whatever its callers checked.
func TestAcquireRefusesBadWants(t *testing.T) {
	tb := locktable.New(1, defaultLimits, false)
	for _, w := range []locktable.Want{
		{Mode: locktable.Permit},
		{Mode: locktable.Shared, Limit: 2},
		{Mode: locktable.Exclusive, Limit: 1},
		{Mode: 7},
	} {
		if _, _, err := tb.Acquire(0, "s", 0, []byte("x"), w, 0, 0); !errors.Is(err, locktable.ErrBadWant) {
			t.Errorf("%+v: %v, want ErrBadWant", w, err)
		}
	}
	if c := tb.Counts(); c.Locks != 0 {
		t.Fatalf("a refused request left %d grants", c.Locks)
	}
}
