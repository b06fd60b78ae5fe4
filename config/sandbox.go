package config

import "fmt"

// Sandbox is an app's private view of the machine (tenant privacy, C5):
// its workers and fork server run in a mount namespace where other
// users' homes, Hide and other tenants' processes are not visible and
// /tmp is the app's own (package sandbox builds and applies it).
type Sandbox struct {
	// Hide are pyhost's own directories: state_dir, data_dir, log_dir
	// and admin_dir, as the admin file sets them.
	Hide []string
}

// daemonSandbox is the Sandbox of app in a system-mode daemon of
// admin's, nil when its file says sandbox = false (admitApp checked the
// admin allows it). Discover sets it on every app it admits; an app
// built otherwise (express mode) has none.
func daemonSandbox(admin Admin, app App) *Sandbox {
	if app.Unsandboxed {
		return nil
	}
	return &Sandbox{Hide: []string{admin.Daemon.StateDir, admin.Daemon.DataDir, admin.Daemon.LogDir, admin.Apps.AdminDir}}
}

// UnsandboxedAllowed is the pure decision "may app run without a
// sandbox (sandbox = false)?": when the admin wrote its file (admin_dir),
// or allowed its user with allow_unsandboxed = true. It is nil for an
// app that keeps its sandbox.
func UnsandboxedAllowed(admin Admin, app App) error {
	if !app.Unsandboxed || app.AdminDeployed || admin.Users[app.Cred.Username].AllowUnsandboxed {
		return nil
	}
	return fmt.Errorf("sandbox = false needs the admin's consent: allow_unsandboxed = true under [users.%s] in %s", app.Cred.Username, admin.Path)
}
