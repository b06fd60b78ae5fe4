// Package proxy owns the HTTP front: the listeners it inherits from the
// master, virtual-host and URL-prefix routing, the connection pools to
// each worker, the choice of worker for a request, queueing when every
// thread is busy, forwarding over the wire protocol, and the error pages.
//
// It runs in its own unprivileged process (pyhostd's internal "proxy"
// command) and learns everything it knows about apps from the master
// through package proxymsg. It never imports the supervisor.
package proxy
