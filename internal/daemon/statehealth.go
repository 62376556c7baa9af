package daemon

import (
	"fmt"
	"sync"
	"time"
)

// runStateHealth follows the run state's background checkpoints (the
// embedded store's database writes): while they fail the daemon keeps
// running on the audit log, which holds every fire, and the status line
// says why the database is behind. A cluster's store reports nothing here.
type runStateHealth struct {
	mu    sync.Mutex
	since time.Time // the first failure of the current outage; zero: writing
	err   error     // the newest failure
	tries int       // failed checkpoints in the current outage
	// changed, if set, is called (in its own goroutine) when checkpoints
	// stop and start writing again: the daemon updates systemd's STATUS=.
	changed func()
}

// setChanged sets the callback of the outage's edges.
func (h *runStateHealth) setChanged(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.changed = f
}

// failed records a failed checkpoint and returns how many failed in a row.
func (h *runStateHealth) failed(err error) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.IsZero() {
		h.since = time.Now()
		if h.changed != nil {
			go h.changed()
		}
	}
	h.err = err
	h.tries++
	return h.tries
}

// recovered records a checkpoint that succeeded after failures and returns
// when the outage began and how many checkpoints failed.
func (h *runStateHealth) recovered() (since time.Time, tries int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	since, tries = h.since, h.tries
	h.since, h.err, h.tries = time.Time{}, nil, 0
	if h.changed != nil {
		go h.changed()
	}
	return since, tries
}

// problem is the status line's note while checkpoints fail; "" otherwise.
func (h *runStateHealth) problem() string {
	if h == nil {
		return ""
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.IsZero() {
		return ""
	}
	return fmt.Sprintf("RUN STATE NOT WRITABLE since %s (%d checkpoints failed; fires go on, the audit log holds them; retrying): %v",
		h.since.UTC().Format(time.RFC3339), h.tries, h.err)
}
