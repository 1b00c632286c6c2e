// Package hazard holds the multi-process tests of the mesh's known
// hazards (see DESIGN.md): a killed owner, a double failure, a waiter
// across a takeover, a lost home, a stale rejoin, and joins and leaves
// under traffic. Each runs real elockd processes, records every client
// operation, and checks the history with porcupine and the fenced
// resource. There is no non-test code here.
package hazard
