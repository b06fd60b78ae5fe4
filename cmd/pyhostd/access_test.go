package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// A path that must be a regular file (an app's script, its python) or a
// directory is said to be what it is when it is not: a FIFO named as the
// script passed every check, and the worker hung reading it until
// startup_timeout.
func TestAccessKind(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "wsgi.py")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "app.py")
	if err := os.WriteFile(file, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "python")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const isFile, isDir = privdrop.RegularFile, privdrop.Directory
	cases := []struct {
		path string
		bits uint32
		want string // "" for no problem
	}{
		{fifo, privdrop.Read | isFile, fifo + " is a FIFO, not a regular file"},
		{sock, privdrop.Read | isFile, sock + " is a socket, not a regular file"},
		{"/dev/null", privdrop.Read | isFile, "/dev/null is a character device, not a regular file"},
		{dir, privdrop.Read | isFile, dir + " is a directory, not a regular file"},
		{file, privdrop.Read | isDir, file + " is a regular file, not a directory"},
		{fifo, privdrop.Read | isDir, fifo + " is a FIFO, not a directory"},
		{file, privdrop.Read | isFile, ""},
		{link, privdrop.Execute | isFile, ""}, // a symlink to a regular file
		{dir, privdrop.Read | privdrop.Execute | isDir, ""},
		{fifo, privdrop.Read, ""}, // no kind asked: access alone
	}
	for _, c := range cases {
		err := checkSet([]privdrop.PathBits{{Path: c.path, Bits: c.bits}})
		if c.want == "" && err != nil || c.want != "" && (err == nil || err.Error() != c.want) {
			t.Errorf("%s bits %d: %v, want %q", c.path, c.bits, err, c.want)
		}
	}
}
