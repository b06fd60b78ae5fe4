// Package systemd owns pyhostd's side of systemd's service protocol:
// sd_notify messages (READY, RELOADING, STOPPING, STATUS) and the
// watchdog keep-alive. Outside systemd (no NOTIFY_SOCKET) every call is a
// cheap no-op, so the daemon calls it unconditionally. The unit file that
// starts pyhostd in system mode lives beside this code.
package systemd

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notifier sends state changes to systemd. The zero value is not usable;
// use New.
type Notifier struct {
	// unset removes NOTIFY_SOCKET after the first message, as sd_notify
	// recommends for daemons whose children must not inherit it. pyhost's
	// children get a clean environment anyway, so it is false.
	unset bool
}

// New returns a Notifier for this process.
func New() *Notifier { return &Notifier{} }

func (n *Notifier) send(state string) error {
	if _, err := daemon.SdNotify(n.unset, state); err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	return nil
}

// Ready says start-up is complete, with a status line.
func (n *Notifier) Ready(status string) error {
	return n.send(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Reloading says a configuration reload began; call Ready when it ends.
// The monotonic timestamp is required by Type=notify-reload units.
func (n *Notifier) Reloading() error {
	return n.send(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, monotonicUsec()))
}

// Stopping says shutdown began.
func (n *Notifier) Stopping() error { return n.send(daemon.SdNotifyStopping) }

// Status updates the free-form status line `systemctl status` shows.
func (n *Notifier) Status(status string) error { return n.send("STATUS=" + status) }

// WatchdogEnabled says whether the unit asks for watchdog pings.
func (n *Notifier) WatchdogEnabled() bool {
	interval, err := daemon.SdWatchdogEnabled(false)
	return err == nil && interval > 0
}

// Watchdog pings systemd's watchdog at half its interval until ctx ends,
// if the unit enables one (WatchdogSec=). alive is asked before each ping;
// a daemon that is stuck stops pinging and systemd restarts it.
func (n *Notifier) Watchdog(ctx context.Context, alive func() bool) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if alive == nil || alive() {
				n.send(daemon.SdNotifyWatchdog)
			}
		}
	}
}
