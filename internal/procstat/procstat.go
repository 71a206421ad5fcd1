// Package procstat reads this process's resource use from /proc (Linux), for
// benchmarks that report resident memory alongside Go's own heap figures.
package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"strconv"
)

// RSSMiB is the resident set size of this process in MiB (VmRSS).
func RSSMiB() (float64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := bytes.CutPrefix(s.Bytes(), []byte("VmRSS:")); ok {
			kb, err := strconv.Atoi(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))))
			if err != nil {
				return 0, err
			}
			return float64(kb) / 1024, nil
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("procstat: VmRSS not found in /proc/self/status")
}
