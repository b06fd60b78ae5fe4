package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pyhost/pyhost/privdrop"
)

// The batch helper answers each set on its own: a missing path fails
// its set alone, and every failure of a set is said.
func TestAccessBatchAnswersPerSet(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	sets := []map[string]uint32{
		{good: privdrop.Read},
		{good: privdrop.Read, missing: privdrop.Read},
		{dir: privdrop.Read | privdrop.Execute},
		{missing: privdrop.Execute, missing + "2": privdrop.Read},
	}
	var out bytes.Buffer
	if err := accessBatch(bytes.NewReader(privdrop.EncodeAccessBatch(sets)), &out); err != nil {
		t.Fatal(err)
	}
	answers, err := privdrop.ReadAccessAnswers(&out, len(sets))
	if err != nil {
		t.Fatal(err)
	}
	if answers[0] != "" || answers[2] != "" {
		t.Errorf("good sets answered %q, %q", answers[0], answers[2])
	}
	if !strings.Contains(answers[1], "cannot read "+missing) || strings.Contains(answers[1], good) {
		t.Errorf("set 2 answered %q, want its missing path alone", answers[1])
	}
	if !strings.Contains(answers[3], "cannot run "+missing) || !strings.Contains(answers[3], "cannot read "+missing+"2") {
		t.Errorf("set 4 answered %q, want both of its paths", answers[3])
	}
}

// A batch that is cut short is refused as a whole: CheckManyAsUser then
// asks about each set alone.
func TestAccessBatchTruncated(t *testing.T) {
	in := privdrop.EncodeAccessBatch([]map[string]uint32{{"/": privdrop.Read}})
	var out bytes.Buffer
	if err := accessBatch(bytes.NewReader(in[:len(in)-1]), &out); err == nil {
		t.Errorf("a truncated batch answered %q", out.String())
	}
}
