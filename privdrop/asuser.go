package privdrop

import (
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"

	"github.com/pyhost/pyhost/daemons/child"
)

// AccessCommand is the hidden pyhostd subcommand CheckAsUser runs.
const AccessCommand = "__access"

// CheckAsUser verifies that cred can use each path with the wanted bits
// (Read, Execute…), by running `self __access` as cred and letting the
// kernel decide with that user's own rights: ACLs, mounts and all, never
// root's (docs/design.md, "Paths are checked as their owner"). With
// Trusted (or Interpreter) it also verifies, with the same rights, that
// no one but cred and root could change the path (CheckTrusted,
// CheckInterpreter): the checks then never reveal to cred whether a path
// cred cannot see exists. self is the pyhostd binary
// ("/proc/self/exe").
func CheckAsUser(sp *Spawner, self string, cred Credential, want map[string]uint32) error {
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
	cmd := exec.Command(self, args...)
	cmd.Env = CleanEnv(cred, nil)
	cmd.Dir = "/"
	cmd.SysProcAttr = SysProcAttr(cred)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	p, err := child.Start(sp, cmd)
	if err != nil {
		return fmt.Errorf("check paths as %s: %w", cred.Username, err)
	}
	if err := p.Wait(); err != nil {
		// The child reports as "pyhostd: ..."; it speaks for the user here.
		msg := strings.TrimPrefix(strings.TrimSpace(out.String()), "pyhostd: ")
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("as user %s: %s", cred.Username, msg)
	}
	return nil
}
