package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/pyhost/pyhost/master"
	"github.com/pyhost/pyhost/proxy"
	"github.com/pyhost/pyhost/proxymsg"
)

// proxyCommand is the proxy child the master starts; it is not for people.
func proxyCommand(stderr io.Writer) *cobra.Command {
	var listeners int
	cmd := &cobra.Command{
		Use:    master.ProxyCommand,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
			defer stop()
			// Ctrl-C in a terminal reaches the whole foreground group; the
			// master decides when the proxy stops.
			signal.Ignore(syscall.SIGINT)
			// A SIGUSR1 or SIGHUP sent to the whole service (systemctl
			// kill's default) is the master's business, not a reason to
			// drop every connection.
			signal.Ignore(syscall.SIGUSR1, syscall.SIGHUP)
			// Started as /proc/self/exe, ps would name it "exe": name it
			// as the daemon it is (ps -C pyhostd, pgrep pyhostd).
			os.WriteFile("/proc/self/comm", []byte("pyhostd"), 0)
			lns := make([]net.Listener, 0, listeners)
			for i := 0; i < listeners; i++ {
				f := os.NewFile(uintptr(master.ProxyFirstListenerFD+i), "listener")
				ln, err := net.FileListener(f)
				f.Close()
				if err != nil {
					return fmt.Errorf("inherited listener %d: %w", i, err)
				}
				lns = append(lns, ln)
			}
			// A CPU profile of the proxy, for the benchmarks (docs/benchmarks.md).
			if path := os.Getenv("PYHOST_PROXY_CPUPROFILE"); path != "" {
				f, err := os.Create(path)
				if err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			ch := proxymsg.NewConn(os.NewFile(master.ProxyChannelFD, "channel"))
			return proxy.Run(ctx, ch, lns, newLogger("pyhostd.proxy", stderr))
		},
	}
	cmd.Flags().IntVar(&listeners, "listeners", 0, "number of inherited listeners")
	return cmd
}
