// Package iofault makes the I/O of a file this process holds open fail,
// for tests of disk-full and I/O-error paths in code that opens the file
// itself (bbolt, for the run state): it finds the process's descriptors of
// the file in /proc/self/fd and points them at /dev/full (every write fails
// with ENOSPC) or /dev/null (writes vanish, fsync fails), then back at the
// file. The code under test keeps its descriptor numbers and sees real
// errors from real system calls. Linux only; nothing outside tests uses it.
package iofault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Kind is the failure Break injects.
type Kind int

const (
	// DiskFull: writes fail with ENOSPC, as on a full disk.
	DiskFull Kind = iota
	// SyncFails: writes seem to succeed but their data is lost, and fsync
	// fails (EINVAL): what a write-back I/O error looks like to the
	// process, whose dirty pages were dropped.
	SyncFails
)

func (k Kind) String() string {
	switch k {
	case DiskFull:
		return "disk full"
	case SyncFails:
		return "fsync fails"
	}
	return "kind " + strconv.Itoa(int(k))
}

// Break makes the I/O on every descriptor this process holds of path fail
// as k says, until restore is called; restore points the descriptors back
// at the file (the same open file description, so locks held on it stay).
// It fails if path is not open in this process.
func Break(path string, k Kind) (restore func() error, err error) {
	want, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if w, err := filepath.EvalSymlinks(want); err == nil {
		want = w
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, fmt.Errorf("iofault: %w", err)
	}
	var fds []int
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == want {
			fds = append(fds, fd)
		}
	}
	if len(fds) == 0 {
		return nil, fmt.Errorf("iofault: %s is not open in this process", want)
	}
	dev := "/dev/full"
	if k == SyncFails {
		dev = "/dev/null"
	}
	d, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("iofault: %w", err)
	}
	defer d.Close()
	saved := map[int]int{}
	restore = func() error {
		var errs []error
		for fd, s := range saved {
			if err := syscall.Dup3(s, fd, syscall.O_CLOEXEC); err != nil {
				errs = append(errs, fmt.Errorf("iofault: restore descriptor %d: %w", fd, err))
			}
			syscall.Close(s)
			delete(saved, fd)
		}
		return errors.Join(errs...)
	}
	for _, fd := range fds {
		s, err := syscall.Dup(fd)
		if err == nil {
			syscall.CloseOnExec(s)
			err = syscall.Dup3(int(d.Fd()), fd, syscall.O_CLOEXEC)
			saved[fd] = s
		}
		if err != nil {
			return nil, errors.Join(fmt.Errorf("iofault: descriptor %d of %s: %w", fd, want, err), restore())
		}
	}
	return restore, nil
}
