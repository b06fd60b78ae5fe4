package main

import (
	"bufio"
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
// rights, that no other user could change it. With --batch it reads
// many such sets on stdin and answers each (privdrop.CheckManyAsUser).
func accessCommand(stderr io.Writer) *cobra.Command {
	var batch bool
	cmd := &cobra.Command{
		Use:    privdrop.AccessCommand + " BITS:PATH...",
		Hidden: true,
		Args: func(_ *cobra.Command, args []string) error {
			if batch != (len(args) == 0) {
				return errors.New("BITS:PATH arguments, or " + privdrop.AccessBatchFlag + " alone")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if batch {
				return accessBatch(cmd.InOrStdin(), cmd.OutOrStdout())
			}
			set := make([]privdrop.PathBits, 0, len(args))
			for _, a := range args {
				bits, path, ok := strings.Cut(a, ":")
				mode, err := strconv.Atoi(bits)
				if !ok || err != nil || mode < 0 {
					return fmt.Errorf("bad argument %q", a)
				}
				set = append(set, privdrop.PathBits{Path: path, Bits: uint32(mode)})
			}
			return checkSet(set)
		},
	}
	// Sets on stdin, one answer each on stdout (privdrop.CheckManyAsUser).
	cmd.Flags().BoolVar(&batch, strings.TrimPrefix(privdrop.AccessBatchFlag, "--"), false, "read sets of paths on stdin")
	return cmd
}

// accessBatch answers each set read from in on out, in order: a set's
// failure is its own answer, never the batch's.
func accessBatch(in io.Reader, out io.Writer) error {
	sets, err := privdrop.ReadAccessBatch(in)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	for _, set := range sets {
		msg := ""
		if err := checkSet(set); err != nil {
			msg = err.Error()
		}
		if err := privdrop.WriteAccessAnswer(w, msg); err != nil {
			return err
		}
	}
	return w.Flush()
}

// checkSet checks one app's paths with this process's rights, all of
// them: the error says every failure.
func checkSet(set []privdrop.PathBits) error {
	var failed []string
	reported := map[string]bool{} // what others could change, said once
	for _, pb := range set {
		want, path := pb.Bits, pb.Path
		// UserSite alone asks nothing of the kernel: a home that
		// does not exist has no user site to check.
		if rwx := want & (privdrop.Read | privdrop.Write | privdrop.Execute); rwx != 0 || want&privdrop.UserSite == 0 {
			if err := unix.Access(path, rwx); err != nil {
				failed = append(failed, fmt.Sprintf("cannot %s %s: %v", verb(want), path, err))
				continue
			}
		}
		if err := checkKind(want, path); err != nil {
			failed = append(failed, err.Error())
			continue
		}
		err := checkTrust(want, path)
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

// checkKind checks that path is what want's RegularFile or Directory
// asks (following symlinks, as the worker's open does), and says what it
// is when not: "is a FIFO, not a regular file".
func checkKind(want uint32, path string) error {
	if want&(privdrop.RegularFile|privdrop.Directory) == 0 {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("cannot use %s: %w", path, err)
	}
	mode := fi.Mode()
	switch {
	case want&privdrop.RegularFile != 0 && !mode.IsRegular():
		return fmt.Errorf("%s is %s, not a regular file", path, privdrop.FileType(mode))
	case want&privdrop.Directory != 0 && !mode.IsDir():
		return fmt.Errorf("%s is %s, not a directory", path, privdrop.FileType(mode))
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
