package executor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
)

type nopAuditor struct{}

func (nopAuditor) Append(audit.Record) error { return nil }

// Reads of one account share its concurrency limit: with a limit of 2, no
// more than 2 reads are ever in flight, and every read runs.
func TestReadSharesTheAccountsSlots(t *testing.T) {
	e := New(Options{Log: zerolog.Nop(), Audit: nopAuditor{}, Concurrency: func(string) int { return 2 }})
	var inFlight, most, done atomic.Int32
	release := make(chan struct{})
	entered := make(chan struct{}, 6)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			_, err := e.Read(context.Background(), "acct", func(ctx context.Context) (string, error) {
				n := inFlight.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				entered <- struct{}{}
				<-release
				inFlight.Add(-1)
				done.Add(1)
				return "RUNNING", nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	<-entered // two reads hold the slots; the other four queue
	<-entered
	close(release)
	wg.Wait()
	if most.Load() > 2 || done.Load() != 6 {
		t.Fatalf("reads in flight at most %d, done %d; want ≤ 2 and 6", most.Load(), done.Load())
	}
}

func TestReadGivesUpWithItsContext(t *testing.T) {
	e := New(Options{Log: zerolog.Nop(), Audit: nopAuditor{}, Concurrency: func(string) int { return 1 }})
	hold := make(chan struct{})
	started := make(chan struct{})
	go e.Read(context.Background(), "acct", func(context.Context) (string, error) {
		close(started)
		<-hold
		return "", nil
	})
	<-started
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.Read(ctx, "acct", func(context.Context) (string, error) { return "x", nil })
	close(hold)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Read with a cancelled context while the slot is taken = %v; want context.Canceled", err)
	}
}
