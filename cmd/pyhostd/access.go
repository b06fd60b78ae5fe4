package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/pyhost/pyhost/privdrop"
)

// accessCommand runs as an app's user (privdrop.CheckAsUser) and asks the
// kernel, with that user's rights, whether each BITS:PATH is usable.
func accessCommand(stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:    privdrop.AccessCommand + " BITS:PATH...",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			var failed []string
			for _, a := range args {
				bits, path, ok := strings.Cut(a, ":")
				mode, err := strconv.Atoi(bits)
				if !ok || err != nil {
					return fmt.Errorf("bad argument %q", a)
				}
				if err := unix.Access(path, uint32(mode)); err != nil {
					failed = append(failed, fmt.Sprintf("cannot %s %s: %v", verb(uint32(mode)), path, err))
				}
			}
			if len(failed) > 0 {
				return fmt.Errorf("%s", strings.Join(failed, "; "))
			}
			return nil
		},
	}
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
