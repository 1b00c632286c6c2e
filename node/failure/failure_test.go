package failure

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A failure is found through any wrapping, and decided on by its class
// and reason, never by its text.
func TestClassAndReasonSurviveWrapping(t *testing.T) {
	f := Retry(LockDelay, "partition 7 lost both copies; refusing grants until the lock-delay passes; retry")
	wrapped := fmt.Errorf("routing: %w", f)
	if !Is(wrapped, LockDelay) || Is(wrapped, Moved) {
		t.Errorf("Is on a wrapped failure: lock-delay %v, moved %v", Is(wrapped, LockDelay), Is(wrapped, Moved))
	}
	if ClassOf(wrapped) != Retryable || ClassOf(errors.New("x")) != 0 || ClassOf(nil) != 0 {
		t.Errorf("ClassOf: %v, %v", ClassOf(wrapped), ClassOf(errors.New("x")))
	}
	if got := Text(wrapped); got != f.Text {
		t.Errorf("Text = %q, want the failure's own", got)
	}
	if got := Text(errors.New("plain")); got != "plain" {
		t.Errorf("Text of a plain error = %q", got)
	}
	// The same words in another failure's text decide nothing.
	impostor := Retry(Moved, "lock-delay")
	if Is(impostor, LockDelay) {
		t.Error("a failure was matched by its text")
	}
	for _, c := range []struct {
		f     *Error
		class Class
	}{{Retry(Moved, ""), Retryable}, {Unknown(Unconfirmed, ""), Indeterminate}, {Refuse(Attached, ""), Definite}} {
		if c.f.Class != c.class {
			t.Errorf("%v: class %v, want %v", c.f.Reason, c.f.Class, c.class)
		}
	}
	for r := Unspecified; r <= Internal; r++ {
		if strings.HasPrefix(r.String(), "reason(") {
			t.Errorf("reason %d has no name", r)
		}
	}
}
