// Command attack is the Go side of pyhost's benchmark scripts: the load
// client of bench/run.sh's large-body tests and the hostile clients of
// bench/attack.sh. It talks to loopback addresses only, and every mode is
// bounded in time and in connections.
//
//	attack load   -url http://127.0.0.1:18181/big -c 16 -d 10s
//	attack attack -target 127.0.0.1:18181 -scenario slowloris -conns 2000 -out r.json
//	attack report -meta meta.json r1.json r2.json...
//
// load is a closed-loop keep-alive HTTP/1.1 client, like wrk -t1, that
// reads bodies with large reads: wrk's 8 KiB reads cap it near 1 GB/s
// with a whole CPU busy, below what the fastest stacks send. It prints
// the figures as lib/report.lua does (one PYHOST_BENCH_JSON line), so
// run.sh records it as it records wrk.
//
// attack opens many hostile connections of one kind (slow headers, slow
// bodies, slow uploads, downloads never read) from 127.0.0.2 and up, while
// a normal client on 127.0.0.1 measures its latency, and samples the
// memory and descriptors of the server's processes from /proc; it writes
// one JSON result. report renders such results as markdown.
//
// It owns no server: bench/attack.sh starts and stops the stacks.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "load":
		err = runLoad(os.Args[2:])
	case "attack":
		err = runAttack(os.Args[2:])
	case "report":
		err = runReport(os.Args[2:], os.Stdout)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "attack %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: attack load|attack|report [flags] (see -h of each)")
	os.Exit(2)
}

// loopbackHostPort checks that hostport names a loopback IP and a port:
// these tools never send anything off the machine.
func loopbackHostPort(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: %w", hostport, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback IP address (127.0.0.0/8 or ::1)", host)
	}
	if port == "" || port == "0" {
		return fmt.Errorf("%q: no port", hostport)
	}
	return nil
}
