package config

import (
	"maps"
	"slices"
)

// Equal reports whether a and b are the same settings, so that a
// reload-config finding b in a file leaves an app running on a alone.
// Field by field, typed, where reflect.DeepEqual told a nil list from an
// empty one and would compare whatever a field came to hold;
// TestAppEqualSeesEveryField fails when App gains a field this does not
// compare.
func (a App) Equal(b App) bool {
	return a.Name == b.Name &&
		a.Cred.UID == b.Cred.UID && a.Cred.GID == b.Cred.GID && slices.Equal(a.Cred.Groups, b.Cred.Groups) &&
		a.Cred.Username == b.Cred.Username && a.Cred.Home == b.Cred.Home &&
		a.Script == b.Script && a.Module == b.Module && a.Callable == b.Callable &&
		a.Directory == b.Directory && a.Python == b.Python && slices.Equal(a.PythonPath, b.PythonPath) &&
		slices.Equal(a.Domains, b.Domains) && a.URLPrefix == b.URLPrefix &&
		a.Processes == b.Processes && a.Threads == b.Threads && maps.Equal(a.Env, b.Env) &&
		a.StartupTimeout == b.StartupTimeout && a.GracefulTimeout == b.GracefulTimeout &&
		a.QueueTimeout == b.QueueTimeout && a.RequestTimeout == b.RequestTimeout &&
		a.IdleTimeout == b.IdleTimeout && a.QueueLimit == b.QueueLimit &&
		a.MemoryLimit == b.MemoryLimit && a.MaxRequests == b.MaxRequests && a.MaxBody == b.MaxBody &&
		a.Limits == b.Limits && // comparable: numbers only
		(a.Sandbox == nil) == (b.Sandbox == nil) && (a.Sandbox == nil || slices.Equal(a.Sandbox.Hide, b.Sandbox.Hide)) &&
		a.Unsandboxed == b.Unsandboxed && slices.Equal(a.Static, b.Static) &&
		a.HTTPSOnly == b.HTTPSOnly && a.HSTS == b.HSTS && a.ReloadTrigger == b.ReloadTrigger &&
		a.Umask == b.Umask && slices.Equal(a.Warmup, b.Warmup) && a.Disabled == b.Disabled &&
		a.File == b.File && a.AdminDeployed == b.AdminDeployed
}
