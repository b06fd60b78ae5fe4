package proxy

import (
	"context"
	"errors"
	"fmt"
	"github.com/pyhost/pyhost/accesslog"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/pyhost/pyhost/channel"
)

// Server limits that protect the front from slow or hostile clients.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 75 * time.Second
	maxHeaderBytes    = 64 << 10
	statsInterval     = time.Second
)

// Run is the proxy process: it takes its Setup from the master, serves
// the inherited listeners, applies every Table it receives and reports
// events up. It returns nil after a graceful stop (ctx cancelled), and an
// error when the master went away or a listener failed.
func Run(ctx context.Context, ch *channel.Conn, listeners []net.Listener, log hclog.Logger) error {
	first, err := ch.Receive()
	if err != nil {
		return fmt.Errorf("read setup from master: %w", err)
	}
	if first.Setup == nil {
		return errors.New("first message from master is not setup")
	}
	setup := *first.Setup
	if setup.Procs > 0 {
		runtime.GOMAXPROCS(setup.Procs)
	}

	events := make(chan channel.Event, 256)
	p := New(log, func(ev channel.Event) {
		select {
		case events <- ev:
		default:
			log.Error("event queue full; dropping event", "kind", ev.Kind, "app", ev.App, "worker", ev.WorkerID)
		}
	})

	var trusted []netip.Prefix
	for _, t := range setup.TrustedProxies {
		pfx, err := netip.ParsePrefix(t)
		if err != nil {
			return fmt.Errorf("trusted proxy %q: %w", t, err)
		}
		trusted = append(trusted, pfx)
	}
	p.SetTrustedProxies(trusted)
	if setup.AccessLog != "" {
		al, err := accesslog.Open(setup.AccessLog, func(err error) { log.Error("writing the access log", "error", err) })
		if err != nil {
			return err
		}
		defer al.Close()
		p.SetAccessLog(al)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	masterGone := make(chan error, 1)
	go func() {
		for {
			m, err := ch.Receive()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errors.New("master closed the channel")
				}
				masterGone <- err
				return
			}
			if m.Table != nil {
				p.Update(*m.Table)
			}
			if m.Reopen != nil && p.access != nil {
				if err := p.access.Reopen(); err != nil {
					log.Error("cannot reopen the access log", "error", err)
				}
			}
		}
	}()
	go func() {
		tick := time.NewTicker(statsInterval)
		defer tick.Stop()
		var last map[string]channel.WorkerStats
		for {
			select {
			case <-tick.C:
				st := p.Stats()
				if maps.Equal(st, last) {
					continue
				}
				last = st
				if err := ch.Send(channel.Message{Event: &channel.Event{Kind: channel.EventStats, Stats: st}}); err != nil {
					log.Error("send stats to master", "error", err)
				}
			case ev := <-events:
				if err := ch.Send(channel.Message{Event: &ev}); err != nil {
					log.Error("send event to master", "error", err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()

	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	serveErr := make(chan error, len(listeners))
	var wg sync.WaitGroup
	for _, ln := range listeners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
			}
		}()
	}
	log.Info("proxy serving", "listeners", setup.Listeners)

	var result error
	select {
	case <-ctx.Done():
	case err := <-masterGone:
		result = err
	case err := <-serveErr:
		result = err
	}
	grace := setup.ShutdownTimeout
	if grace <= 0 {
		grace = 15 * time.Second
	}
	sctx, scancel := context.WithTimeout(context.Background(), grace)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still in flight at the end of the grace period", "error", err)
		srv.Close()
	}
	p.CloseIdle()
	wg.Wait()
	return result
}
