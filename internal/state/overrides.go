package state

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketOverrides holds the windows' time-boxed overrides, keyed by
// window and target ("" for the whole window), apart from the fire state:
// an override is set by hand, rarely, and must survive a restart at once,
// so each change is its own durable bbolt transaction rather than a
// journaled, checkpointed one. A database without the bucket (written by
// an older binary) has no overrides.
var bucketOverrides = []byte("overrides")

// Override is a window override as the run state keeps it.
type Override struct {
	Window string    `json:"window"`
	Target string    `json:"target,omitempty"` // "": every target of the window
	State  string    `json:"state"`            // on | off
	From   time.Time `json:"from"`             // when it was set
	Until  time.Time `json:"until"`            // when it ends by itself
}

func overrideKey(window, target string) []byte { return []byte(window + "\x00" + target) }

// Overrides returns the stored overrides, ended ones included (the
// reconciler audits and clears those), sorted by window and target.
func (s *Store) Overrides() ([]Override, error) {
	var out []Override
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOverrides)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var o Override
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("override %q: %w", k, err)
			}
			out = append(out, o)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("state: read overrides: %w", err)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Window != out[b].Window {
			return out[a].Window < out[b].Window
		}
		return out[a].Target < out[b].Target
	})
	return out, nil
}

// SetOverride stores o durably, replacing an override of the same window
// and target.
func (s *Store) SetOverride(o Override) error {
	v, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("state: store override: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketOverrides)
		if err != nil {
			return err
		}
		return b.Put(overrideKey(o.Window, o.Target), v)
	})
	if err != nil {
		return fmt.Errorf("state: store override: %w", err)
	}
	return nil
}

// ClearOverride removes the override of window and target durably and
// reports whether there was one.
func (s *Store) ClearOverride(window, target string) (bool, error) {
	found := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOverrides)
		if b == nil {
			return nil
		}
		k := overrideKey(window, target)
		if b.Get(k) == nil {
			return nil
		}
		found = true
		return b.Delete(k)
	})
	if err != nil {
		return false, fmt.Errorf("state: clear override: %w", err)
	}
	return found, nil
}
