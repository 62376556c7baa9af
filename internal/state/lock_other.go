//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package state

import (
	"errors"
	"os"
)

// lockDir is not implemented without flock(2).
func lockDir(path, dir string) (*os.File, error) {
	return nil, errors.New("state: locking " + path + " needs flock(2), which this platform lacks")
}
