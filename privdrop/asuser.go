package privdrop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pyhost/pyhost/child"
)

// AccessCommand is the hidden pyhostd subcommand CheckAsUser runs.
const AccessCommand = "__access"

// AccessBatchFlag makes AccessCommand read many sets of paths on stdin
// (EncodeAccessBatch) and answer each (ReadAccessAnswers): what
// CheckManyAsUser runs.
const AccessBatchFlag = "--batch"

// CheckAsUser verifies that cred can use each path with the wanted bits
// (Read, Execute…), by running `self __access` as cred and letting the
// kernel decide with that user's own rights: ACLs, mounts and all, never
// root's (docs/design.md, "Paths are checked as their owner"). With
// Trusted (or Interpreter) it also verifies, with the same rights, that
// no one but cred and root could change the path (CheckTrusted,
// CheckInterpreter), and with RegularFile or Directory what kind of file
// it is: the checks then never reveal to cred whether a path cred cannot
// see exists. self is the pyhostd binary ("/proc/self/exe"). It waits
// for as long as the helper takes: CheckAsUserContext bounds it.
func CheckAsUser(sp *Spawner, self string, cred Credential, want map[string]uint32) error {
	return CheckAsUserContext(context.Background(), sp, self, cred, want)
}

// CheckAsUserContext is CheckAsUser until ctx is done: then the helper,
// which may be stuck on a path of a hung mount, is killed (its process
// group) and reaped, and the error wraps ctx's (errors.Is(err,
// context.DeadlineExceeded) after a timeout).
func CheckAsUserContext(ctx context.Context, sp *Spawner, self string, cred Credential, want map[string]uint32) error {
	if len(want) == 0 {
		return nil
	}
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	args := []string{AccessCommand}
	for _, p := range paths {
		args = append(args, strconv.Itoa(int(want[p]))+":"+p)
	}
	cmd := helperCommand(self, cred, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	p, err := child.Start(sp, cmd)
	if err != nil {
		return fmt.Errorf("check paths as %s: %w", cred.Username, err)
	}
	if err := waitHelper(ctx, p); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("as user %s: the path check was stopped: %w", cred.Username, err)
		}
		// The child reports as "pyhostd: ..."; it speaks for the user here.
		msg := strings.TrimPrefix(strings.TrimSpace(out.String()), "pyhostd: ")
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("as user %s: %s", cred.Username, msg)
	}
	return nil
}

// helperCommand is `self args...` as cred, in its own process group
// (SysProcAttr), which waitHelper kills.
func helperCommand(self string, cred Credential, args ...string) *exec.Cmd {
	cmd := exec.Command(self, args...)
	cmd.Env = CleanEnv(cred, nil)
	cmd.Dir = "/"
	cmd.SysProcAttr = SysProcAttr(cred)
	// Output is copied through pipes that an escaped grandchild could
	// hold open: the reaper must not wait on them for ever.
	cmd.WaitDelay = reapGrace
	return cmd
}

// reapGrace is how long waitHelper waits for a killed helper to be
// reaped. A process in an uninterruptible sleep (a hard NFS mount
// without TASK_KILLABLE) dies only when its syscall returns: the caller
// is not held past this for it; child's reaper waits on alone.
const reapGrace = 2 * time.Second

// waitHelper waits for p to end, or for ctx: then it kills p's process
// group and waits until p is reaped (within reapGrace) and returns ctx's
// error.
func waitHelper(ctx context.Context, p *child.Process) error {
	select {
	case <-p.Exited():
		return p.Wait()
	case <-ctx.Done():
	}
	p.Kill()
	t := time.NewTimer(reapGrace)
	defer t.Stop()
	select {
	case <-p.Exited():
	case <-t.C:
	}
	return context.Cause(ctx)
}

// maxAnswers bounds what the parent reads of a batch helper's output: it
// runs as the user, who could make it say anything, at any length.
const maxAnswers = 16 << 20

// CheckManyAsUser is CheckAsUser for many sets of paths of one user in
// one helper process (a boot of 1,000 apps of one user used to start
// 1,000): errs[i] is what CheckAsUser(sp, self, cred, wants[i]) says,
// each set answered on its own (a failure names only its set's paths, a
// directory above several is said once per set), with the user's rights
// as before. When the helper fails as a whole (it cannot start, dies, or
// answers out of turn), every set is checked again in a helper of its
// own: one set that breaks the batch costs the others nothing but time.
// It waits for as long as the helper takes: CheckManyAsUserContext
// bounds it.
func CheckManyAsUser(sp *Spawner, self string, cred Credential, wants []map[string]uint32) []error {
	return CheckManyAsUserContext(context.Background(), sp, self, cred, wants)
}

// CheckManyAsUserContext is CheckManyAsUser until ctx is done: then the
// helper is killed (its process group) and reaped, no set is asked
// again, and every set that was asked something gets an error wrapping
// ctx's.
func CheckManyAsUserContext(ctx context.Context, sp *Spawner, self string, cred Credential, wants []map[string]uint32) []error {
	errs := make([]error, len(wants))
	var idx []int // the sets that ask something, in order
	var sets []map[string]uint32
	for i, w := range wants {
		if len(w) == 0 {
			continue
		}
		// A NUL cannot be in a path (nor in an argument, so CheckAsUser
		// fails there too); it would break the batch's framing.
		if p, bad := nulPath(w); bad {
			errs[i] = fmt.Errorf("as user %s: %q: a path cannot contain a NUL byte", cred.Username, p)
			continue
		}
		idx = append(idx, i)
		sets = append(sets, w)
	}
	switch len(sets) {
	case 0:
		return errs
	case 1:
		errs[idx[0]] = CheckAsUserContext(ctx, sp, self, cred, sets[0])
		return errs
	}
	answers, err := runBatch(ctx, sp, self, cred, sets)
	if err != nil {
		for _, i := range idx {
			if ctx.Err() != nil {
				// Asking again would hang on the same path.
				errs[i] = fmt.Errorf("as user %s: the path check was stopped: %w", cred.Username, context.Cause(ctx))
				continue
			}
			errs[i] = CheckAsUserContext(ctx, sp, self, cred, wants[i])
		}
		return errs
	}
	for k, i := range idx {
		if answers[k] != "" {
			errs[i] = fmt.Errorf("as user %s: %s", cred.Username, answers[k])
		}
	}
	return errs
}

func nulPath(want map[string]uint32) (string, bool) {
	for p := range want {
		if strings.IndexByte(p, 0) >= 0 {
			return p, true
		}
	}
	return "", false
}

// runBatch runs `self __access --batch` as cred on sets and returns its
// answer to each ("" when all is well), or an error when it gave none
// that can be trusted to line up with sets.
func runBatch(ctx context.Context, sp *Spawner, self string, cred Credential, sets []map[string]uint32) ([]string, error) {
	cmd := helperCommand(self, cred, AccessCommand, AccessBatchFlag)
	cmd.Stdin = bytes.NewReader(EncodeAccessBatch(sets))
	out := &capped{max: maxAnswers}
	var stderr capped
	stderr.max = 64 << 10
	cmd.Stdout = out
	cmd.Stderr = &stderr
	p, err := child.Start(sp, cmd)
	if err != nil {
		return nil, err
	}
	if err := waitHelper(ctx, p); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.b.String()))
	}
	if out.over {
		return nil, errors.New("answer too long")
	}
	return ReadAccessAnswers(&out.b, len(sets))
}

// capped keeps the first max bytes written to it and notes the rest.
type capped struct {
	b    bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); len(p) > room {
		c.over = true
		c.b.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.b.Write(p)
}

// The batch helper's framing. Paths have no NUL byte (the kernel's
// rule; CheckManyAsUser refuses the others before), nor have the
// messages about them, so NUL ends each field: a set is BITS NUL PATH
// NUL for each path, sorted, then one NUL (an empty BITS); the answer to
// a set is its message ("" when all is well) then NUL.

// EncodeAccessBatch frames sets for the batch helper.
func EncodeAccessBatch(sets []map[string]uint32) []byte {
	var b bytes.Buffer
	for _, want := range sets {
		paths := make([]string, 0, len(want))
		for p := range want {
			paths = append(paths, p)
		}
		sort.Strings(paths)
		for _, p := range paths {
			b.WriteString(strconv.FormatUint(uint64(want[p]), 10))
			b.WriteByte(0)
			b.WriteString(p)
			b.WriteByte(0)
		}
		b.WriteByte(0)
	}
	return b.Bytes()
}

// PathBits is one path of a set and the bits it is checked for.
type PathBits struct {
	Path string
	Bits uint32
}

// ReadAccessBatch reads what EncodeAccessBatch wrote: the helper's side.
func ReadAccessBatch(r io.Reader) ([][]PathBits, error) {
	br := bufio.NewReader(r)
	var sets [][]PathBits
	var cur []PathBits
	for {
		bits, err := br.ReadString(0)
		if err == io.EOF && bits == "" && cur == nil {
			return sets, nil
		}
		if err != nil {
			return nil, fmt.Errorf("batch: truncated input")
		}
		bits = bits[:len(bits)-1]
		if bits == "" {
			sets = append(sets, cur)
			cur = nil
			continue
		}
		n, err := strconv.ParseUint(bits, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("batch: bad bits %q", bits)
		}
		path, err := br.ReadString(0)
		if err != nil {
			return nil, fmt.Errorf("batch: truncated input")
		}
		cur = append(cur, PathBits{Path: path[:len(path)-1], Bits: uint32(n)})
	}
}

// WriteAccessAnswer writes the answer to one set: the helper's side.
func WriteAccessAnswer(w io.Writer, msg string) error {
	_, err := io.WriteString(w, strings.ReplaceAll(msg, "\x00", "")+"\x00")
	return err
}

// ReadAccessAnswers reads exactly n answers and nothing after them.
func ReadAccessAnswers(r io.Reader, n int) ([]string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	fields := strings.Split(string(data), "\x00")
	if len(fields) != n+1 || fields[n] != "" {
		return nil, fmt.Errorf("batch: %d answers for %d sets", len(fields)-1, n)
	}
	return fields[:n], nil
}
