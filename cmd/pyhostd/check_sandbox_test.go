package main

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestReportSandbox(t *testing.T) {
	var out strings.Builder
	reportSandbox(&out, func() error { return errors.New("operation not permitted") })
	got := out.String()
	// The test binary has no pyhost-sandbox beside it: the fallback, said.
	if !strings.Contains(got, "warning: sandbox: no usable pyhost-sandbox") || !strings.Contains(got, "pyhostd sandbox-exec") {
		t.Errorf("no fallback warning:\n%s", got)
	}
	refused := strings.Contains(got, "cannot make a mount namespace here (operation not permitted)")
	if root := os.Geteuid() == 0; refused != root {
		t.Errorf("root %v, but the probe's refusal reported %v:\n%s", root, refused, got)
	}

	out.Reset()
	reportSandbox(&out, func() error { return nil })
	if strings.Contains(out.String(), "mount namespace") {
		t.Errorf("a probe that worked is reported:\n%s", out.String())
	}
}

func TestProbeMountNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a mount namespace needs root")
	}
	if err := probeMountNamespace(); err != nil {
		t.Errorf("root on this host cannot make a mount namespace: %v", err)
	}
}
