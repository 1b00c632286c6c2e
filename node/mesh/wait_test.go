package mesh

import "testing"

// A wait that a client gives up on between requests is withdrawn at once
// only if no request went unanswered: an unanswered one may have been
// granted, so the wait must ask (and give a grant back) before the
// session can be resumed elsewhere.
func TestCancelBetweenRequests(t *testing.T) {
	tests := []struct {
		name      string
		maybe     bool
		withdrawn bool
	}{
		{"every request answered", false, true},
		{"a request went unanswered", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &meshWait{maybe: tt.maybe}
			if got := w.Cancel(); got != tt.withdrawn {
				t.Fatalf("Cancel: %v, want %v", got, tt.withdrawn)
			}
			if !w.canceled || w.finished == !tt.withdrawn {
				t.Fatalf("canceled %v, finished %v", w.canceled, w.finished)
			}
		})
	}
}
