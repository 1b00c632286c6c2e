package metrics

import (
	"strings"
	"testing"
)

func TestNewRegistryHasTheRuntimeAndProcessCollectors(t *testing.T) {
	mfs, err := NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var goroutines, cpu bool
	for _, mf := range mfs {
		switch mf.GetName() {
		case "go_goroutines":
			goroutines = true
		case "process_cpu_seconds_total":
			cpu = true
		}
		if strings.HasPrefix(mf.GetName(), "elock_") {
			t.Errorf("a fresh registry holds %s", mf.GetName())
		}
	}
	if !goroutines || !cpu {
		t.Fatalf("go_goroutines %v, process_cpu_seconds_total %v; want both", goroutines, cpu)
	}
}
