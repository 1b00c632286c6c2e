package replication

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine of a Data or a link is joined by its Close: none may
// outlive the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
