package supervisor

import (
	"context"
	"sync/atomic"

	"github.com/pyhost/pyhost/config"
)

// The App is the one owner of its app's settings (issue 13, step 4):
// the master asks it (Config) rather than keeping a copy of its own, and
// hands it a disabled file's settings (Disable) rather than holding them
// for pyctl start.

// settings is what Config reports: the serving generation's settings
// (the core's cfg, replaced when a reload swaps generations), or those a
// Disable handed to the stopped app since.
type settings struct {
	// shown is the settings in force, stored by Run's goroutine (and by
	// NewApp before it) whenever they change; read by anyone.
	shown atomic.Pointer[config.App]

	// Owned by Run's goroutine.
	parked    *config.App // from Disable; nil: none, the core's are in force
	parkedGen int         // the serving generation when parked
	shownGen  int         // the generation shown was taken from
	shownPark *config.App // the parked settings shown; nil: the core's
}

// Config returns the settings in force: those of the serving generation
// of workers, or, for an app stopped by Disable, the settings handed to
// it, which pyctl start rolls onto. A reload under way changes nothing
// here until its new workers are all ready and take over; an aborted one
// never does. It does not wait for the app's goroutine.
func (a *App) Config() config.App { return *a.settings.shown.Load() }

// Disable takes cfg (an app file with enabled = false, D5) as the app's
// settings in force and stops every worker, waiting until they are gone.
// Nothing starts it again but a Reload: pyctl start rolls it onto
// Config(); a reload that commits replaces cfg. A reload under way
// refuses it (ErrReloadRunning, as Stop) and nothing changes.
func (a *App) Disable(ctx context.Context, cfg config.App) error {
	return a.ask(ctx, func(r chan<- error) event {
		// The core's halt refuses exactly when a reload is under way: the
		// settings are taken only with the stop.
		if a.core.reload == nil {
			a.settings.parked, a.settings.parkedGen = &cfg, a.core.gen
		}
		return evOwnerStop{r}
	})
}

// publishSettings stores the settings in force once they changed; on
// Run's goroutine (or in NewApp). A reload that swapped generations since
// Disable drops the parked settings: its own are in force now.
func (a *App) publishSettings() {
	s := &a.settings
	if s.parked != nil && a.core.gen != s.parkedGen {
		s.parked = nil
	}
	if s.shown.Load() != nil && s.shownGen == a.core.gen && s.shownPark == s.parked {
		return
	}
	cfg := a.core.cfg
	if s.parked != nil {
		cfg = *s.parked
	}
	s.shownGen, s.shownPark = a.core.gen, s.parked
	s.shown.Store(&cfg)
}
