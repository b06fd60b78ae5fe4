package master

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/control"
	"github.com/pyhost/pyhost/privdrop"
)

// Check implements control.Backend: the file at path, validated for the
// caller as the daemon would load it (pyctl check). Root, who has no
// apps, gets the answer for whoever the file would run as: the user an
// admin_dir file names, else the file's owner (config.CheckAppFile).
func (m *Master) Check(ctx context.Context, c control.Caller, path string) error {
	if m.cfg.CheckFile == nil {
		return errors.New("this daemon runs one app in express mode; pyctl check validates against a system daemon's policy (try: pyhostd serve FILE)")
	}
	if m.cfg.Listed != nil && c.UID != 0 && !m.cfg.Listed(c.UID) {
		return fmt.Errorf("%w: uid %d is not a user the admin allows to host apps (see [users] in pyhost.toml)", control.ErrAccessDenied, c.UID)
	}
	cred, err := privdrop.Lookup(fmt.Sprint(c.UID))
	if err != nil {
		return err
	}
	var running []config.App
	for _, app := range m.set.all() {
		running = append(running, m.set.config(app.Key()))
	}
	if err := m.cfg.CheckFile(cred, path, running, m.set.claims()); err != nil {
		return &control.ReloadError{App: filepath.Base(path), Reason: "the daemon would refuse this file", Detail: err.Error()}
	}
	return nil
}
