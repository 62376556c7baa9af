package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Format is the format marker of the state file this package reads and
// writes.
const Format = "scheduler-state/v1"

// File names inside the state directory.
const (
	FileName     = "state.json"
	LockName     = "state.lock"
	tempPrefix   = FileName + ".tmp-"
	checksumAlgo = "sha256:"
)

// Sentinel errors, wrapped by the errors of Open and of the Store's methods.
var (
	// ErrCorrupt: the state file is damaged (not JSON, truncated, checksum
	// mismatch, invalid content).
	ErrCorrupt = errors.New("state file corrupt")
	// ErrForeign: the file is not a scheduler state file of this format.
	ErrForeign = errors.New("not a scheduler state file")
	// ErrLocked: another process holds the state directory's lock.
	ErrLocked = errors.New("state directory locked")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("state store closed")
)

// freshHint tells the operator how to get past a bad state file, and what
// it costs.
const freshHint = "move it aside (e.g. rename it to state.json.bad) to start with fresh run state; " +
	"fires already done may then repeat, fires interrupted by a crash are not recovered " +
	"and missed fires are not caught up"

// FileError is the error of Open for a state file it refuses to use.
type FileError struct {
	Path    string // the state file
	Problem string // what is wrong with it
	Kind    error  // ErrCorrupt or ErrForeign
}

// Error names the file, the problem and what to do.
func (e *FileError) Error() string {
	return "state: " + e.Path + ": " + e.Problem + "; " + freshHint
}

// Unwrap returns Kind, for errors.Is.
func (e *FileError) Unwrap() error { return e.Kind }

// Intent is a fire whose intent was recorded before its vendor calls and
// whose outcome is not recorded yet.
type Intent struct {
	RunID      string    `json:"run_id"` // executor.RunID(job, Scheduled)
	Scheduled  time.Time `json:"scheduled"`
	Action     string    `json:"action"`
	Account    string    `json:"account"`
	Targets    []string  `json:"targets"`
	Idempotent bool      `json:"idempotent"` // re-issuing is safe (start, stop)
	Started    time.Time `json:"started,omitzero"`
}

// JobState is the run state of one job.
type JobState struct {
	// Since is when the job was first registered: the reference for missed
	// fires of a job that never fired.
	Since time.Time `json:"since,omitzero"`
	// LastDone is the scheduled time of the newest fire whose outcome was
	// recorded; fires at or before it never run again.
	LastDone time.Time `json:"last_done,omitzero"`
	// LastRunID is the run id of the fire at LastDone.
	LastRunID string `json:"last_run_id,omitempty"`
	// InFlight are the fires begun and not done, oldest first.
	InFlight []Intent `json:"in_flight,omitempty"`
}

// PendingIntent is an intent of a job, as returned by Pending.
type PendingIntent struct {
	Job string
	Intent
}

// auditTail is the audit log's last record as known to the run state.
type auditTail struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// data is the checksummed content of the state file.
type data struct {
	Audit auditTail            `json:"audit"`
	Jobs  map[string]*JobState `json:"jobs"`
}

// envelope is the state file.
type envelope struct {
	Format   string          `json:"format"`
	Checksum string          `json:"checksum"`
	State    json.RawMessage `json:"state"`
}

// Store is the run state of one state directory. Its methods are safe for
// concurrent use; each change is durable when it returns.
type Store struct {
	dir, path string
	lock      *os.File
	leftovers []string

	mu      sync.Mutex
	d       *data // never mutated in place: changes copy, save, then swap
	pending map[string]bool
	closed  bool
}

// Open opens the run state in dir, creating dir (mode 0700) and an empty
// state if missing, and locks dir against other processes until Close.
// See FileError for the state files it refuses.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: create directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, LockName), dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, path: filepath.Join(dir, FileName), lock: lock}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	if s.leftovers, err = removeLeftovers(dir); err != nil {
		return nil, err
	}
	if s.d, err = load(s.path); err != nil {
		return nil, err
	}
	s.pending = map[string]bool{}
	for _, js := range s.d.Jobs {
		for _, in := range js.InFlight {
			s.pending[in.RunID] = true
		}
	}
	ok = true
	return s, nil
}

// removeLeftovers deletes temporary files a crash left between writing
// and renaming; it runs under the lock, so none is being written.
func removeLeftovers(dir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, tempPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("state: remove leftover temporary file: %w", err)
		}
	}
	return matches, nil
}

// load reads the state file; a missing file is an empty state.
func load(path string) (*data, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &data{Jobs: map[string]*JobState{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state: read %s: %w", path, err)
	}
	corrupt := func(format string, args ...any) error {
		return &FileError{Path: path, Problem: fmt.Sprintf(format, args...), Kind: ErrCorrupt}
	}
	foreign := func(format string, args ...any) error {
		return &FileError{Path: path, Problem: fmt.Sprintf(format, args...), Kind: ErrForeign}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, corrupt("file is empty (%d bytes)", len(b))
	}
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) { // truncation is a SyntaxError too
			return nil, corrupt("not valid JSON (truncated or damaged): %v", err)
		}
		return nil, foreign("not a scheduler state file (%v)", err)
	}
	switch {
	case env.Format == "":
		return nil, foreign("no format marker; a scheduler state file starts with \"format\": %q", Format)
	case env.Format != Format:
		return nil, foreign("format %q; this scheduler reads %q", env.Format, Format)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, env.State); err != nil || len(env.State) == 0 {
		return nil, corrupt("no state content")
	}
	if want := checksum(compact.Bytes()); env.Checksum != want {
		return nil, corrupt("checksum mismatch (file says %q, content hashes to %q): edited or damaged", env.Checksum, want)
	}
	d := &data{}
	dec := json.NewDecoder(bytes.NewReader(compact.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(d); err != nil {
		return nil, corrupt("invalid content: %v", err)
	}
	if d.Jobs == nil {
		d.Jobs = map[string]*JobState{}
	}
	for name, js := range d.Jobs {
		if name == "" || js == nil {
			return nil, corrupt("invalid content: empty job entry")
		}
		for _, in := range js.InFlight {
			if in.RunID == "" || in.Scheduled.IsZero() {
				return nil, corrupt("invalid content: job %q has an in-flight entry without run_id or scheduled", name)
			}
		}
	}
	return d, nil
}

func checksum(b []byte) string {
	sum := sha256.Sum256(b)
	return checksumAlgo + hex.EncodeToString(sum[:])
}

// save writes d crash-safely: temp file, fsync, rename, fsync directory.
func (s *Store) save(d *data) error {
	body, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("state: encode: %w", err)
	}
	out, err := json.MarshalIndent(envelope{Format: Format, Checksum: checksum(body), State: body}, "", "  ")
	if err != nil {
		return fmt.Errorf("state: encode: %w", err)
	}
	out = append(out, '\n')
	f, err := os.CreateTemp(s.dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("state: write %s: %w", s.path, err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("state: write %s: %w", s.path, err)
	}
	if _, err := f.Write(out); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if testHookBeforeRename != nil {
		if err := testHookBeforeRename(tmp); err != nil {
			return fmt.Errorf("state: write %s: %w", s.path, err)
		}
	}
	if err := os.Rename(tmp, s.path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state: write %s: %w", s.path, err)
	}
	if err := syncDir(s.dir); err != nil {
		return fmt.Errorf("state: write %s: sync directory: %w", s.path, err)
	}
	return nil
}

// testHookBeforeRename, when set by a test, runs after the temporary file
// is complete and before the rename; an error aborts the save there, as a
// crash would (the temporary file stays).
var testHookBeforeRename func(tmp string) error

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// clone returns a deep copy of d.
func (d *data) clone() *data {
	c := &data{Audit: d.Audit, Jobs: make(map[string]*JobState, len(d.Jobs))}
	for name, js := range d.Jobs {
		c.Jobs[name] = js.clone()
	}
	return c
}

func (js *JobState) clone() *JobState {
	c := *js
	c.InFlight = make([]Intent, len(js.InFlight))
	for i, in := range js.InFlight {
		in.Targets = slices.Clone(in.Targets)
		c.InFlight[i] = in
	}
	if len(c.InFlight) == 0 {
		c.InFlight = nil
	}
	return &c
}

// update applies change to a copy of the state and, if change reports a
// difference, saves it and makes it current.
func (s *Store) update(change func(d *data) (changed bool, err error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	d := s.d.clone()
	changed, err := change(d)
	if err != nil || !changed {
		return err
	}
	if err := s.save(d); err != nil {
		return err
	}
	s.d = d
	return nil
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// Leftovers returns the temporary files Open removed: writes a crash
// interrupted before their rename, so the state file holds the version
// before them.
func (s *Store) Leftovers() []string { return slices.Clone(s.leftovers) }

// Job returns a copy of the state of job; the zero JobState if unknown.
func (s *Store) Job(name string) JobState {
	s.mu.Lock()
	defer s.mu.Unlock()
	js := s.d.Jobs[name]
	if js == nil {
		return JobState{}
	}
	return *js.clone()
}

// Jobs returns the names of the jobs with state, sorted, so the daemon can
// Forget those no longer configured.
func (s *Store) Jobs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.d.Jobs))
	for name := range s.d.Jobs {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Register records that job exists as of now, setting Since if it has none;
// a job already registered keeps its Since.
func (s *Store) Register(job string, now time.Time) error {
	if job == "" || now.IsZero() {
		return errors.New("state: register: empty job name or zero time")
	}
	return s.update(func(d *data) (bool, error) {
		js := d.job(job)
		if !js.Since.IsZero() {
			return false, nil
		}
		js.Since = now
		return true, nil
	})
}

func (d *data) job(name string) *JobState {
	js := d.Jobs[name]
	if js == nil {
		js = &JobState{}
		d.Jobs[name] = js
	}
	return js
}

// Begin records the intent of a fire of job before its first vendor call;
// it is durable when Begin returns. An intent with the same RunID replaces
// the earlier one (a re-issue after a crash).
func (s *Store) Begin(job string, in Intent) error {
	if job == "" || in.RunID == "" || in.Scheduled.IsZero() {
		return fmt.Errorf("state: begin %q: need a job name, run id and scheduled time", in.RunID)
	}
	in.Targets = slices.Clone(in.Targets)
	return s.update(func(d *data) (bool, error) {
		js := d.job(job)
		js.InFlight = slices.DeleteFunc(js.InFlight, func(x Intent) bool { return x.RunID == in.RunID })
		js.InFlight = append(js.InFlight, in)
		slices.SortStableFunc(js.InFlight, func(a, b Intent) int { return a.Scheduled.Compare(b.Scheduled) })
		return true, nil
	})
}

// Done records that the outcome of the fire of job scheduled at scheduled
// (run id runID) is recorded, whatever it was (success, failure, skipped,
// unknown after a crash, or missed): LastDone becomes the later of
// LastDone and scheduled, and the fire's intent, if any, is removed. It is
// durable when Done returns.
func (s *Store) Done(job string, scheduled time.Time, runID string) error {
	if job == "" || scheduled.IsZero() {
		return fmt.Errorf("state: done %q: need a job name and scheduled time", runID)
	}
	err := s.update(func(d *data) (bool, error) {
		js := d.job(job)
		js.InFlight = slices.DeleteFunc(js.InFlight, func(x Intent) bool { return x.RunID == runID })
		if len(js.InFlight) == 0 {
			js.InFlight = nil
		}
		if !scheduled.Before(js.LastDone) {
			js.LastDone, js.LastRunID = scheduled, runID
		}
		return true, nil
	})
	if err == nil {
		s.mu.Lock()
		delete(s.pending, runID)
		s.mu.Unlock()
	}
	return err
}

// Forget drops the state of a job removed from the configuration: Since,
// LastDone and LastRunID, so that a job later added again under the same
// name starts fresh (fires while it was absent are not caught up). Intents
// still in flight are kept until Done, so a crash during a removed job's
// last fire is still recovered; the entry disappears once none is left.
func (s *Store) Forget(job string) error {
	return s.update(func(d *data) (bool, error) {
		js := d.Jobs[job]
		if js == nil {
			return false, nil
		}
		if len(js.InFlight) == 0 {
			delete(d.Jobs, job)
			return true, nil
		}
		if js.Since.IsZero() && js.LastDone.IsZero() && js.LastRunID == "" {
			return false, nil
		}
		js.Since, js.LastDone, js.LastRunID = time.Time{}, time.Time{}, ""
		return true, nil
	})
}

// SetAuditTail records the audit log's last sequence number and record
// hash, so a truncated log tail is detected on the next start. It writes
// the whole state file: call it per group commit, not per record, if the
// rate matters.
func (s *Store) SetAuditTail(seq uint64, hash string) error {
	return s.update(func(d *data) (bool, error) {
		if d.Audit.Seq == seq && d.Audit.Hash == hash {
			return false, nil
		}
		d.Audit = auditTail{Seq: seq, Hash: hash}
		return true, nil
	})
}

// AuditTail returns the sequence number and hash last given to
// SetAuditTail; 0 and "" if never set.
func (s *Store) AuditTail() (seq uint64, hash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d.Audit.Seq, s.d.Audit.Hash
}

// Pending returns the intents that were in flight when the state was
// opened (left by a crash or kill) and are not Done yet, oldest first.
// Intents begun by this process are not included.
func (s *Store) Pending() []PendingIntent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PendingIntent
	for name, js := range s.d.Jobs {
		for _, in := range js.InFlight {
			if s.pending[in.RunID] {
				in.Targets = slices.Clone(in.Targets)
				out = append(out, PendingIntent{Job: name, Intent: in})
			}
		}
	}
	slices.SortFunc(out, func(a, b PendingIntent) int {
		if c := a.Scheduled.Compare(b.Scheduled); c != 0 {
			return c
		}
		return strings.Compare(a.RunID, b.RunID)
	})
	return out
}

// Close releases the directory lock. Further changes fail with ErrClosed;
// reads still answer from the last state.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.lock.Close()
}

// ReadAuditTail reads the audit log's last sequence number and hash from
// the run state in dir without taking its lock, so that `scheduler audit
// verify` can check for records cut from the end while the daemon runs
// (the file is only ever replaced whole, by rename). A missing state is
// seq 0.
func ReadAuditTail(dir string) (seq uint64, hash string, err error) {
	d, err := load(filepath.Join(dir, FileName))
	if err != nil {
		return 0, "", err
	}
	return d.Audit.Seq, d.Audit.Hash, nil
}
