//go:build unix

// Package cputime reports a benchmark's CPU time per operation beside
// its wall time. On a shared machine of two cores the wall time of the
// same benchmark moves by a factor of two with what else runs; the
// process's CPU time (every thread, the garbage collector's included)
// moves far less, and it is what capacity is made of.
package cputime

import (
	"syscall"
	"testing"
	"time"
)

// Start begins counting; call the function it returns after the
// benchmark's loop. It reports cpu-ns/op: the process's user and system
// time over b.N.
func Start(b *testing.B) (stop func()) {
	start := used()
	return func() { b.ReportMetric(float64(used()-start)/float64(b.N), "cpu-ns/op") }
}

func used() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
