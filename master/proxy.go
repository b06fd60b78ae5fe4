package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pyhost/pyhost/child"
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/privdrop"
	"github.com/pyhost/pyhost/proxy"
	"github.com/pyhost/pyhost/proxymsg"
	"github.com/pyhost/pyhost/supervisor"
)

// ProxyCommand is the hidden pyhostd subcommand the proxy child runs.
const ProxyCommand = "__proxy"

// ProxyChannelFD and ProxyFirstListenerFD are the descriptors the proxy
// child inherits: the channel, then the listeners in order, then the
// files socket for later listener changes (Setup.FilesFD names it).
const (
	ProxyChannelFD       = 3
	ProxyFirstListenerFD = 4
)

// superviseProxy keeps one proxy child running until ctx is cancelled,
// then asks it to finish its requests and waits for it.
func (m *Master) superviseProxy(ctx context.Context) {
	tracker := supervisor.NewRestartTracker(supervisor.DefaultRestartPolicy, nil)
	for {
		started := time.Now()
		err := m.runProxyOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		d := tracker.Died(time.Now(), time.Since(started))
		m.log.Error("proxy exited; restarting it", "error", err, "restart_in", d.Delay.Round(time.Millisecond))
		t := time.NewTimer(d.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

func (m *Master) runProxyOnce(ctx context.Context) error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("channel socketpair: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "channel")
	theirs := os.NewFile(uintptr(fds[1]), "channel-proxy")
	defer mine.Close()

	// The listeners travel on a socket of their own, so they can change
	// while this proxy runs (listeners.go).
	filesCh, theirFiles, err := proxymsg.NewFilesPair()
	if err != nil {
		theirs.Close()
		return err
	}
	defer filesCh.Close()
	var (
		proc    *child.Process
		addrs   []string
		kinds   []bool
		metrics []bool
		filesFD int
	)
	detach, err := m.lns.startProxy(filesCh, func(lns []*os.File, lnAddrs []string, lnTLS, lnMetrics []bool) error {
		addrs, kinds, metrics = lnAddrs, lnTLS, lnMetrics
		files := append([]*os.File{theirs}, lns...)
		files = append(files, theirFiles)
		filesFD = ProxyChannelFD + len(files) - 1
		cmd := exec.Command(m.self, ProxyCommand, "--listeners", strconv.Itoa(len(lns)))
		cmd.Args[0] = "pyhostd" // ps shows "pyhostd __proxy", not "/proc/self/exe __proxy"
		cmd.Env = proxyEnv(m.cfg.ProxyCred, os.Getenv)
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
		cmd.ExtraFiles = files
		cmd.Dir = "/"
		cmd.SysProcAttr = privdrop.SysProcAttr(m.cfg.ProxyCred)
		var err error
		proc, err = child.Start(m.proxyStarter(), cmd) // master/cgroup.go
		return err
	})
	theirs.Close()
	theirFiles.Close()
	if err != nil {
		return fmt.Errorf("start proxy: %w", err)
	}
	defer detach()
	m.log.Debug("proxy started", "pid", proc.PID(), "user", m.cfg.ProxyCred.Username)

	ch := proxymsg.NewConn(mine)
	grace := m.cfg.ShutdownTimeout
	setup := proxymsg.Setup{Listeners: addrs, ListenerTLS: kinds, FilesFD: filesFD, ShutdownTimeout: grace, Procs: m.cfg.ProxyProcs, AccessLog: m.cfg.AccessLog, TrustedProxies: prefixStrings(m.cfg.TrustedProxies)}
	setLimits(&setup, m.cfg.ProxyLimits)
	setup.ListenerMetrics, setup.Version = metrics, m.cfg.Version
	setup.ACME = m.acmeSettings()
	// The certificates as they are now, and every later set: taken and
	// the channel registered under one lock, so no reload falls between.
	m.proxyMu.Lock()
	setup.Certs = m.certs
	setup.ProxyProtocol = prefixStrings(m.ppPeers)
	setup.AccessLogPerApp = m.cfg.AccessLogPerApp // master/accesslogs.go
	err = ch.Send(proxymsg.Message{Setup: &setup})
	if err == nil {
		m.proxyCh = ch
	}
	m.proxyMu.Unlock()
	if err != nil {
		proc.Kill()
		<-proc.Exited()
		return err
	}
	m.sendTable()
	m.kickFigures()
	defer func() {
		m.proxyMu.Lock()
		m.proxyCh = nil
		m.proxyMu.Unlock()
	}()
	go func() {
		for {
			msg, err := ch.Receive()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
					m.log.Debug("proxy channel closed", "error", err)
				}
				return
			}
			if msg.Event != nil {
				m.onProxyEvent(*msg.Event)
			}
			if msg.MetricsAnswer != nil {
				m.onMetricsAnswer(*msg.MetricsAnswer)
			}
		}
	}()

	select {
	case <-proc.Exited():
		err := proc.Wait()
		if err == nil {
			err = errors.New("exited with status 0")
		}
		return fmt.Errorf("proxy %d: %w", proc.PID(), err)
	case <-ctx.Done():
	}
	// The proxy stops accepting, finishes in-flight requests within grace,
	// and exits; a proxy that hangs past that is killed (its group).
	proc.Stop(grace + 5*time.Second)
	<-proc.Exited()
	if proc.KillSent() {
		m.log.Warn("proxy did not stop in time; killed it", "pid", proc.PID())
	}
	return nil
}

// setProxyProtocol makes peers the proxy_protocol peers, now and after
// a restart of the proxy; it reports whether they changed.
func (m *Master) setProxyProtocol(peers []netip.Prefix) bool {
	m.proxyMu.Lock()
	defer m.proxyMu.Unlock()
	if slices.Equal(peers, m.ppPeers) {
		return false
	}
	m.ppPeers = peers
	if m.proxyCh != nil {
		if err := m.proxyCh.Send(proxymsg.Message{ProxyProtocol: &proxymsg.ProxyProtocol{Allowed: prefixStrings(peers)}}); err != nil {
			m.log.Warn("cannot send proxy_protocol to the proxy; its successor gets it", "error", err)
		}
	}
	return true
}

// servedCerts are the certificates the proxy serves (or its next one
// will).
func (m *Master) servedCerts() []proxymsg.CertPair {
	m.proxyMu.Lock()
	defer m.proxyMu.Unlock()
	return m.certs
}

// setCerts makes pairs the certificates the proxy serves, now and after
// a restart of it. The proxy loads them before it reads its next
// message, so a table sent after them is applied after them.
func (m *Master) setCerts(pairs []proxymsg.CertPair) {
	m.proxyMu.Lock()
	defer m.proxyMu.Unlock()
	m.certs = pairs
	if m.proxyCh == nil {
		return // the next proxy's Setup carries them
	}
	if err := m.proxyCh.Send(proxymsg.Message{Certs: &proxymsg.Certs{Pairs: pairs}}); err != nil {
		m.log.Warn("cannot send the certificates to the proxy; its successor gets them", "error", err)
	}
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// setLimits puts the client limits into the proxy's Setup, where 0 is
// the proxy's default and a negative value is off (a config 0).
func setLimits(s *proxymsg.Setup, l config.ProxyLimits) {
	if l == (config.ProxyLimits{}) {
		l = config.DefaultProxyLimits
	}
	off := func(n int64) int64 {
		if n == 0 {
			return -1
		}
		return n
	}
	s.BufferRequestBody = off(l.BufferRequestBody)
	s.RequestSpoolLimit = off(l.RequestSpoolLimit)
	s.ClientBodyMinRate = off(l.ClientBodyMinRate)
	s.MaxConnectionsPerIP = int(off(int64(l.MaxConnectionsPerIP)))
	s.ClientBodyTimeout = l.ClientBodyTimeout
	s.SendTimeout = l.SendTimeout
	s.KeepaliveTimeout = l.KeepaliveTimeout
	s.MaxConnections = l.MaxConnections
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// proxyEnv is the proxy's environment: a clean one for its user, plus
// what the daemon's own environment says of logging, profiling and the
// Go runtime, plus the runtime setting that keeps the proxy's sysmon
// from sleeping (proxy/sysmon.go, docs/design.md). GODEBUG goes through
// so that an admin's setting reaches both Go processes; one that sets
// schedtrace itself (`schedtrace=0`) turns the proxy's setting off.
func proxyEnv(cred privdrop.Credential, getenv func(string) string) []string {
	env, _ := proxy.SysmonEnv(privdrop.CleanEnv(cred, map[string]string{
		"PYHOST_LOG_LEVEL":        getenv("PYHOST_LOG_LEVEL"),
		"PYHOST_LOG_FORMAT":       getenv("PYHOST_LOG_FORMAT"), // [daemon] log_format
		"PYHOST_PROXY_CPUPROFILE": getenv("PYHOST_PROXY_CPUPROFILE"),
		"GODEBUG":                 getenv("GODEBUG"),
	}))
	return env
}
