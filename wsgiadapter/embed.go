package wsgiadapter

import (
	_ "embed"
)

// WorkerScript is the Python worker (pyhost_worker.py). Package workerproc
// writes it to a file the app's user can read and runs it with the app's
// interpreter.
//
//go:embed pyhost_worker.py
var WorkerScript []byte
