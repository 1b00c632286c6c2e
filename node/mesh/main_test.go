package mesh

import (
	"testing"

	"go.uber.org/goleak"
)

// Every role's goroutines have an owner that joins them: none may outlive
// the tests.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
