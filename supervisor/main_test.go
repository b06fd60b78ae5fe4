package supervisor

import (
	"os"
	"testing"
)

// No test passes over an illegal state move: it panics.
func TestMain(m *testing.M) {
	panicOnIllegal = true
	os.Exit(m.Run())
}
