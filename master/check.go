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
	if c.UID != 0 {
		if err := m.catalog.Allowed(c.UID); err != nil {
			return err
		}
	}
	cred, err := privdrop.Lookup(fmt.Sprint(c.UID))
	if err != nil {
		return err
	}
	var running []config.App
	for _, app := range m.set.all() {
		running = append(running, m.set.config(app.Key()))
	}
	err = m.catalog.CheckFile(cred, path, running, m.set.claims())
	if errors.Is(err, ErrNoPolicy) {
		return err
	}
	if err != nil {
		return &control.ReloadError{App: filepath.Base(path), Reason: "the daemon would refuse this file", Detail: err.Error()}
	}
	return nil
}
