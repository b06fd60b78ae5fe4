package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/pyhost/pyhost/privdrop"
)

// accessCommand runs as an app's user (privdrop.CheckAsUser) and asks the
// kernel, with that user's rights, whether each BITS:PATH is usable; with
// privdrop.Trusted or Interpreter in BITS, it also checks, with the same
// rights, that no other user could change it.
func accessCommand(stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:    privdrop.AccessCommand + " BITS:PATH...",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var failed []string
			reported := map[string]bool{} // what others could change, said once
			for _, a := range args {
				bits, path, ok := strings.Cut(a, ":")
				mode, err := strconv.Atoi(bits)
				if !ok || err != nil || mode < 0 {
					return fmt.Errorf("bad argument %q", a)
				}
				want := uint32(mode)
				// UserSite alone asks nothing of the kernel: a home that
				// does not exist has no user site to check.
				if rwx := want & (privdrop.Read | privdrop.Write | privdrop.Execute); rwx != 0 || want&privdrop.UserSite == 0 {
					if err := unix.Access(path, rwx); err != nil {
						failed = append(failed, fmt.Sprintf("cannot %s %s: %v", verb(want), path, err))
						continue
					}
				}
				err = checkTrust(want, path)
				// A directory above several paths (the app's directory,
				// above its script) is reported for the first only.
				var ue *privdrop.UntrustedError
				if errors.As(err, &ue) {
					if reported[ue.Bad] {
						continue
					}
					reported[ue.Bad] = true
				}
				if err != nil {
					failed = append(failed, err.Error())
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("%s", strings.Join(failed, "; "))
			}
			return nil
		},
	}
}

// checkTrust checks path as the trust bits of want ask (none: nothing),
// with this process's rights: the app's owner's.
func checkTrust(want uint32, path string) error {
	uid := uint32(os.Getuid())
	if want&privdrop.UserSite != 0 {
		if err := privdrop.CheckUserSite(privdrop.Lstat, filepath.Glob, uid, path); err != nil {
			return err
		}
	}
	switch {
	case want&privdrop.Interpreter != 0:
		return privdrop.CheckInterpreter(privdrop.Lstat, filepath.Glob, uid, path)
	case want&privdrop.Trusted != 0:
		return privdrop.CheckTrusted(privdrop.Lstat, uid, path)
	}
	return nil
}

func verb(mode uint32) string {
	switch {
	case mode&privdrop.Execute != 0 && mode&privdrop.Read != 0:
		return "open"
	case mode&privdrop.Execute != 0:
		return "run"
	case mode&privdrop.Read != 0:
		return "read"
	}
	return "use"
}
