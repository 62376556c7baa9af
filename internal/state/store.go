package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/cloudcron/scheduler/internal/audit"
)

// Format is the format marker of the run state this package writes: in
// state.db's meta bucket, and in the marker left in place of a migrated
// state.json.
const Format = "scheduler-state/v2"

// File names inside the state directory.
const (
	FileName      = "state.db"        // the bbolt database
	LockName      = "state.lock"      // flock(2): one daemon per state.dir
	auditTailName = "audit-tail.json" // the last checkpoint's audit tail, for readers while the daemon runs
)

// Buckets and keys of state.db.
var (
	bucketMeta    = []byte("meta")
	bucketJobs    = []byte("jobs")
	bucketIntents = []byte("intents")
	keyFormat     = []byte("format")
	keyAudit      = []byte("audit")
	keyMigrated   = []byte("migrated")
)

// Sentinel errors, wrapped by the errors of Open and of the Store's methods.
var (
	// ErrCorrupt: the run state is damaged (not a database, unreadable
	// entries, a truncated or edited old state file).
	ErrCorrupt = errors.New("state file corrupt")
	// ErrForeign: the file is not a scheduler run state of a known format.
	ErrForeign = errors.New("not a scheduler state file")
	// ErrLocked: another process holds the state directory's lock.
	ErrLocked = errors.New("state directory locked")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("state store closed")
	// ErrNoJournal: a journaled write (Claim, Settle with records) on a
	// Store without Attach.
	ErrNoJournal = errors.New("state: no journal attached")
)

// freshHint tells the operator how to get past a bad state file, and what
// it costs.
const freshHint = "move the state directory's files aside (e.g. into a folder named bad) to start with fresh run state; " +
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
	// recorded (or that was audited missed); fires at or before it never
	// run again.
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
	// Finished are the targets whose outcome the run state holds although
	// the fire is not done: the etcd store records each target's outcome
	// as the claimer's audit log takes it, so a survivor knows it without
	// that log. The embedded store leaves it empty (its journal is the
	// audit log the daemon reads).
	Finished []string
}

// jobRec is a job's entry in the jobs bucket.
type jobRec struct {
	Since     time.Time `json:"since,omitzero"`
	LastDone  time.Time `json:"last_done,omitzero"`
	LastRunID string    `json:"last_run_id,omitempty"`
}

// intentRec is an entry of the intents bucket, keyed by run id.
type intentRec struct {
	Job string `json:"job"`
	Intent
}

// Journal is the durable log that carries the fire facts between two
// checkpoints of the run state: the audit log. Its records are written
// before the daemon acts on them, so the run state need not be made
// durable on the fire's path; see the package doc.
type Journal interface {
	// AppendBatch makes records durable, in order, in one step.
	AppendBatch([]audit.Record) error
	// Tail returns the seq and hash of the newest durable record.
	Tail() (seq uint64, hash string)
}

// Store is the run state of one state directory, kept in memory and in
// state.db (bbolt), keyed per job and per fire. Its methods are safe for
// concurrent use. See the package doc for when a change is durable.
type Store struct {
	dir, path string
	lock      *os.File
	db        *bolt.DB
	leftovers []string
	notes     []string

	// cut makes each journaled write (records appended, memory changed)
	// one step that a checkpoint never splits: writers hold it shared, a
	// checkpoint's snapshot holds it exclusively.
	cut     sync.RWMutex
	flushMu sync.Mutex // one checkpoint at a time, in order

	mu           sync.Mutex
	jobs         map[string]*jobRec
	intents      map[string]*intentRec            // by run id
	byJob        map[string]map[string]*intentRec // job -> run id -> intent
	pending      map[string]bool                  // run ids left by the previous process
	tail         auditTail                        // the journal tail the stored state covers
	dirtyJobs    map[string]bool
	dirtyIntents map[string]bool
	dirtyTail    bool
	closed       bool

	journal   Journal
	onError   func(error)
	onRecover func()
	interval  time.Duration
	kick      chan struct{}
	stop      chan struct{}
	stopped   chan struct{}
}

// Open opens the run state in dir, creating dir (mode 0700) and an empty
// state if missing, migrating an old state.json, and locks dir against
// other processes until Close. See FileError for the files it refuses.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state: create directory: %w", err)
	}
	lock, err := lockDir(filepath.Join(dir, LockName), dir)
	if err != nil {
		return nil, err
	}
	s := &Store{
		dir: dir, path: filepath.Join(dir, FileName), lock: lock,
		jobs: map[string]*jobRec{}, intents: map[string]*intentRec{}, byJob: map[string]map[string]*intentRec{},
		pending: map[string]bool{}, dirtyJobs: map[string]bool{}, dirtyIntents: map[string]bool{},
	}
	ok := false
	defer func() {
		if !ok {
			if s.db != nil {
				s.db.Close()
			}
			lock.Close()
		}
	}()
	if s.leftovers, err = removeLeftovers(dir); err != nil {
		return nil, err
	}
	v1Path := filepath.Join(dir, FileNameV1)
	old, v1Present, v1Migrated, err := loadV1(v1Path)
	if err != nil {
		return nil, err
	}
	_, statErr := os.Stat(s.path)
	existed := statErr == nil
	if !existed && v1Present && v1Migrated {
		return nil, &FileError{Path: s.path, Kind: ErrCorrupt,
			Problem: "missing, but " + v1Path + " says the run state moved into it: it was deleted or moved"}
	}
	if existed {
		if fi, err := os.Stat(s.path); err == nil && fi.Size() == 0 {
			return nil, &FileError{Path: s.path, Problem: "file is empty (truncated?)", Kind: ErrCorrupt}
		}
	} else if err := createDB(s.path); err != nil {
		return nil, err
	}
	s.db, err = bolt.Open(s.path, 0o600, &bolt.Options{
		Timeout:        time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Address space, not memory: pages count only once touched.
		// Mapped at this size from the start, the database grows
		// without a remap, which copies every node a commit holds
		// (10 000 new jobs: a third of their first commit).
		InitialMmapSize: initialMmapSize,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("state: %s is held by another process: %w", s.path, ErrLocked)
		}
		return nil, &FileError{Path: s.path, Problem: "not a readable run-state database: " + err.Error(), Kind: ErrCorrupt}
	}
	if err := s.checkFormat(); err != nil {
		return nil, err
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	if v1Present && !v1Migrated {
		if err := s.migrateV1(old, v1Path); err != nil {
			return nil, err
		}
	}
	for id := range s.intents {
		s.pending[id] = true
	}
	ok = true
	return s, nil
}

// createDB makes a new, empty database under a temporary name and renames
// it into place, so that a crash never leaves a half-made state.db that a
// later start could not tell from a damaged one.
func createDB(path string) error {
	tmp := path + ".tmp-new"
	os.Remove(tmp)
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("state: create %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		if err := meta.Put(keyFormat, []byte(Format)); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketJobs, bucketIntents} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state: create %s: %w", path, err)
	}
	return nil
}

// checkFormat checks the format marker and the buckets.
func (s *Store) checkFormat() error {
	var problem string
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			problem = "a bbolt database without the scheduler's format marker"
			return nil
		}
		if f := string(meta.Get(keyFormat)); f != Format {
			problem = fmt.Sprintf("format %q; this scheduler reads %q", f, Format)
			return nil
		}
		for _, b := range [][]byte{bucketJobs, bucketIntents} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: write %s: %w", s.path, err)
	}
	if problem != "" {
		return &FileError{Path: s.path, Problem: problem, Kind: ErrForeign}
	}
	return nil
}

// load reads the whole database into memory.
func (s *Store) load() error {
	corrupt := func(format string, args ...any) error {
		return &FileError{Path: s.path, Problem: fmt.Sprintf(format, args...), Kind: ErrCorrupt}
	}
	return s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta).Get(keyAudit); b != nil {
			if err := json.Unmarshal(b, &s.tail); err != nil {
				return corrupt("meta/audit: %v", err)
			}
		}
		if err := tx.Bucket(bucketJobs).ForEach(func(k, v []byte) error {
			r := &jobRec{}
			if err := json.Unmarshal(v, r); err != nil || len(k) == 0 {
				return corrupt("jobs/%q: unreadable entry (%v)", k, err)
			}
			s.jobs[string(k)] = r
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketIntents).ForEach(func(k, v []byte) error {
			r := &intentRec{}
			if err := json.Unmarshal(v, r); err != nil {
				return corrupt("intents/%q: unreadable entry (%v)", k, err)
			}
			if r.Job == "" || r.RunID != string(k) || r.Scheduled.IsZero() {
				return corrupt("intents/%q: entry without job, run id or scheduled time", k)
			}
			s.putIntentLocked(r)
			return nil
		})
	})
}

// migrateV1 moves an old state.json into the database: one transaction
// with every job and intent, then the old file is kept as state.json.v1
// and replaced by a marker that older binaries refuse.
func (s *Store) migrateV1(old *dataV1, v1Path string) error {
	var migratedAt []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		migratedAt = tx.Bucket(bucketMeta).Get(keyMigrated)
		return nil
	}); err != nil {
		return err
	}
	if migratedAt == nil {
		if len(s.jobs) > 0 || len(s.intents) > 0 {
			return &FileError{Path: v1Path, Kind: ErrForeign,
				Problem: "an old-format state file next to " + s.path + ", which already holds run state: " +
					"an older scheduler ran here after the upgrade; keep one of them"}
		}
		for name, js := range old.Jobs {
			s.jobs[name] = &jobRec{Since: js.Since, LastDone: js.LastDone, LastRunID: js.LastRunID}
			s.dirtyJobs[name] = true
			for _, in := range js.InFlight {
				in.Targets = slices.Clone(in.Targets)
				s.putIntentLocked(&intentRec{Job: name, Intent: in})
				s.dirtyIntents[in.RunID] = true
			}
		}
		s.tail, s.dirtyTail = old.Audit, true
		stamp := []byte(time.Now().UTC().Format(time.RFC3339))
		if err := s.flushWith(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyMigrated, stamp) }); err != nil {
			return err
		}
		s.notes = append(s.notes, fmt.Sprintf("migrated the run state of %d jobs from %s into %s; the old file is kept as %s",
			len(old.Jobs), v1Path, s.path, movedV1Name))
	}
	b, err := os.ReadFile(v1Path)
	if err != nil {
		return fmt.Errorf("state: migrate %s: %w", v1Path, err)
	}
	if err := writeFileSync(filepath.Join(s.dir, movedV1Name), b); err != nil {
		return fmt.Errorf("state: migrate %s: keep a copy: %w", v1Path, err)
	}
	if err := writeFileSync(v1Path, stubV1()); err != nil {
		return fmt.Errorf("state: migrate %s: leave the marker: %w", v1Path, err)
	}
	return nil
}

func (s *Store) putIntentLocked(r *intentRec) {
	if old := s.intents[r.RunID]; old != nil && old.Job != r.Job {
		s.dropIntentLocked(r.RunID)
	}
	s.intents[r.RunID] = r
	m := s.byJob[r.Job]
	if m == nil {
		m = map[string]*intentRec{}
		s.byJob[r.Job] = m
	}
	m[r.RunID] = r
}

func (s *Store) dropIntentLocked(runID string) {
	r := s.intents[runID]
	if r == nil {
		return
	}
	delete(s.intents, runID)
	if m := s.byJob[r.Job]; m != nil {
		delete(m, runID)
		if len(m) == 0 {
			delete(s.byJob, r.Job)
		}
	}
	s.dirtyIntents[runID] = true
}

func (s *Store) jobLocked(name string) *jobRec {
	r := s.jobs[name]
	if r == nil {
		r = &jobRec{}
		s.jobs[name] = r
	}
	return r
}

// doneLocked settles the fire runID of job scheduled at scheduled.
func (s *Store) doneLocked(job string, scheduled time.Time, runID string) {
	s.dropIntentLocked(runID)
	delete(s.pending, runID)
	r := s.jobLocked(job)
	if !scheduled.Before(r.LastDone) {
		r.LastDone, r.LastRunID = scheduled, runID
	}
	s.dirtyJobs[job] = true
}

// Path returns the database's path.
func (s *Store) Path() string { return s.path }

// Leftovers returns the temporary files Open removed: writes a crash
// interrupted before their rename.
func (s *Store) Leftovers() []string { return slices.Clone(s.leftovers) }

// Notes returns what Open did that the operator should know, such as a
// migration of an old state file, for the daemon to log.
func (s *Store) Notes() []string { return slices.Clone(s.notes) }

// Job returns a copy of the state of job; the zero JobState if unknown.
func (s *Store) Job(name string) JobState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.jobStateLocked(name)
}

func (s *Store) jobStateLocked(name string) JobState {
	var js JobState
	if r := s.jobs[name]; r != nil {
		js.Since, js.LastDone, js.LastRunID = r.Since, r.LastDone, r.LastRunID
	}
	for _, in := range s.byJob[name] {
		c := in.Intent
		c.Targets = slices.Clone(c.Targets)
		js.InFlight = append(js.InFlight, c)
	}
	slices.SortFunc(js.InFlight, func(a, b Intent) int {
		if c := a.Scheduled.Compare(b.Scheduled); c != 0 {
			return c
		}
		return strings.Compare(a.RunID, b.RunID)
	})
	return js
}

// Jobs returns the names of the jobs with state, sorted, so the daemon can
// Forget those no longer configured.
func (s *Store) Jobs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.jobs))
	for name := range s.jobs {
		names = append(names, name)
	}
	for name := range s.byJob {
		if s.jobs[name] == nil {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// change applies fn to the memory state and makes it durable: at once
// (one database transaction) without a journal or when sync is set, else
// with the next checkpoint.
func (s *Store) change(sync bool, fn func() (changed bool)) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	changed := fn()
	journaled := s.journal != nil
	s.mu.Unlock()
	if !changed {
		return nil
	}
	if journaled && !sync {
		s.schedule()
		return nil
	}
	return s.Checkpoint()
}

// Register records that job exists as of now, setting Since if it has none;
// a job already registered keeps its Since. It is durable when it returns.
func (s *Store) Register(job string, now time.Time) error {
	if job == "" || now.IsZero() {
		return errors.New("state: register: empty job name or zero time")
	}
	return s.Sync(nil, []string{job}, now)
}

// Sync registers every job of register (as Register does) and forgets every
// job of forget (as Forget does), in one durable write whatever their
// number: the daemon calls it once on start and once per reload.
func (s *Store) Sync(forget, register []string, now time.Time) error {
	if now.IsZero() && len(register) > 0 {
		return errors.New("state: sync: zero registration time")
	}
	return s.change(true, func() bool {
		changed := false
		for _, job := range register {
			if job == "" {
				continue
			}
			r := s.jobLocked(job)
			if r.Since.IsZero() {
				r.Since = now
				s.dirtyJobs[job] = true
				changed = true
			}
		}
		for _, job := range forget {
			if s.forgetLocked(job) {
				changed = true
			}
		}
		return changed
	})
}

// Begin records the intent of a fire of job and makes it durable in the
// database before it returns; an intent with the same RunID replaces the
// earlier one. The daemon uses Claim instead, which makes the intent
// durable in the journal together with the fire's audit records; Begin is
// for tools and tests that prepare a run state.
func (s *Store) Begin(job string, in Intent) error {
	if job == "" || in.RunID == "" || in.Scheduled.IsZero() {
		return fmt.Errorf("state: begin %q: need a job name, run id and scheduled time", in.RunID)
	}
	in.Targets = slices.Clone(in.Targets)
	return s.change(true, func() bool {
		s.putIntentLocked(&intentRec{Job: job, Intent: in})
		s.dirtyIntents[in.RunID] = true
		return true
	})
}

// Done records that the outcome of the fire of job scheduled at scheduled
// (run id runID) is recorded, whatever it was (success, failure, skipped,
// unknown after a crash, or missed): LastDone becomes the later of
// LastDone and scheduled, and the fire's intent, if any, is removed.
// Without a journal it is durable when Done returns; with one, the
// outcome's records in the journal already are, and the run state follows
// at the next checkpoint.
func (s *Store) Done(job string, scheduled time.Time, runID string) error {
	if job == "" || scheduled.IsZero() {
		return fmt.Errorf("state: done %q: need a job name and scheduled time", runID)
	}
	return s.change(false, func() bool {
		s.doneLocked(job, scheduled, runID)
		return true
	})
}

// Forget drops the state of a job removed from the configuration: Since,
// LastDone and LastRunID, so that a job later added again under the same
// name starts fresh (fires while it was absent are not caught up). Intents
// still in flight are kept until Done, so a crash during a removed job's
// last fire is still recovered.
func (s *Store) Forget(job string) error {
	return s.Sync([]string{job}, nil, time.Time{})
}

func (s *Store) forgetLocked(job string) bool {
	if s.jobs[job] == nil {
		return false
	}
	delete(s.jobs, job)
	s.dirtyJobs[job] = true
	return true
}

// SetAuditTail records the audit log's last sequence number and record
// hash, so a truncated log tail is detected on the next start. With a
// journal attached the checkpoints record the journal's tail themselves
// and this does nothing.
func (s *Store) SetAuditTail(seq uint64, hash string) error {
	return s.change(true, func() bool {
		if s.journal != nil || (s.tail.Seq == seq && s.tail.Hash == hash) {
			return false
		}
		s.tail, s.dirtyTail = auditTail{Seq: seq, Hash: hash}, true
		return true
	})
}

// AuditTail returns the audit log's sequence number and hash that the
// stored run state covers; 0 and "" if never set.
func (s *Store) AuditTail() (seq uint64, hash string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tail.Seq, s.tail.Hash
}

// Pending returns the intents that were in flight when the state was
// opened or attached (left by a crash or kill) and are not Done yet,
// oldest first. Intents begun by this process are not included.
func (s *Store) Pending() []PendingIntent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PendingIntent
	for id := range s.pending {
		in := s.intents[id]
		if in == nil {
			continue
		}
		c := in.Intent
		c.Targets = slices.Clone(c.Targets)
		out = append(out, PendingIntent{Job: in.Job, Intent: c})
	}
	slices.SortFunc(out, func(a, b PendingIntent) int {
		if c := a.Scheduled.Compare(b.Scheduled); c != 0 {
			return c
		}
		return strings.Compare(a.RunID, b.RunID)
	})
	return out
}

// Checkpoint writes every change not yet in the database in one
// transaction, with the journal's tail if one is attached. It costs the
// changed entries, not the size of the state.
func (s *Store) Checkpoint() error { return s.flushWith(nil) }

func (s *Store) flushWith(extra func(*bolt.Tx) error) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	// The snapshot: no journaled write is half done while it is taken, so
	// the state written covers exactly the journal up to its tail.
	s.cut.Lock()
	s.mu.Lock()
	if s.journal != nil {
		if seq, hash := s.journal.Tail(); seq != s.tail.Seq || hash != s.tail.Hash {
			s.tail, s.dirtyTail = auditTail{Seq: seq, Hash: hash}, true
		}
	}
	jobs := make(map[string][]byte, len(s.dirtyJobs))
	for name := range s.dirtyJobs {
		var v []byte
		if r := s.jobs[name]; r != nil {
			v, _ = json.Marshal(r)
		}
		jobs[name] = v
	}
	intents := make(map[string][]byte, len(s.dirtyIntents))
	for id := range s.dirtyIntents {
		var v []byte
		if r := s.intents[id]; r != nil {
			v, _ = json.Marshal(r)
		}
		intents[id] = v
	}
	var tail []byte
	if s.dirtyTail {
		tail, _ = json.Marshal(s.tail)
	}
	t := s.tail
	clear(s.dirtyJobs)
	clear(s.dirtyIntents)
	s.dirtyTail = false
	s.mu.Unlock()
	s.cut.Unlock()

	if len(jobs) == 0 && len(intents) == 0 && tail == nil && extra == nil {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if err := putAll(tx.Bucket(bucketJobs), jobs); err != nil {
			return err
		}
		if err := putAll(tx.Bucket(bucketIntents), intents); err != nil {
			return err
		}
		if tail != nil {
			if err := tx.Bucket(bucketMeta).Put(keyAudit, tail); err != nil {
				return err
			}
		}
		if extra != nil {
			return extra(tx)
		}
		return nil
	})
	if err != nil {
		s.mu.Lock()
		for k := range jobs {
			s.dirtyJobs[k] = true
		}
		for k := range intents {
			s.dirtyIntents[k] = true
		}
		if tail != nil {
			s.dirtyTail = true
		}
		s.mu.Unlock()
		return fmt.Errorf("state: write %s: %w", s.path, err)
	}
	if tail != nil {
		writeAuditTailHint(s.dir, t)
	}
	return nil
}

// initialMmapSize is the size bbolt maps the run state at: room for about
// 100 000 jobs.
const initialMmapSize = 64 << 20

func putAll(b *bolt.Bucket, kv map[string][]byte) error {
	// In key order: bbolt inserts in order into the page it last split,
	// where random order touches and splits pages all over the tree
	// (10 000 new jobs: 58 ms in map order).
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		v := kv[k]
		var err error
		if v == nil {
			err = b.Delete([]byte(k))
		} else {
			err = b.Put([]byte(k), v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeAuditTailHint leaves the checkpoint's audit tail where `scheduler
// audit verify` can read it while the daemon holds the database. It is a
// hint, not the record: written by rename, without fsync, and ignored on
// error.
func writeAuditTailHint(dir string, t auditTail) {
	b, _ := json.Marshal(t)
	f, err := os.CreateTemp(dir, auditTailName+".tmp-*")
	if err != nil {
		return
	}
	_, werr := f.Write(append(b, '\n'))
	cerr := f.Close()
	if werr != nil || cerr != nil || os.Rename(f.Name(), filepath.Join(dir, auditTailName)) != nil {
		os.Remove(f.Name())
	}
}

// Close writes what is not yet in the database, releases the directory
// lock and closes the database. Further changes fail with ErrClosed; reads
// still answer from memory.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	stop := s.stop
	s.mu.Unlock()
	if stop != nil {
		close(stop)
		<-s.stopped
	}
	err := s.Checkpoint()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if cerr := s.db.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("state: close %s: %w", s.path, cerr))
	}
	return errors.Join(err, s.lock.Close())
}

// ReadAuditTail reads the audit log's last sequence number and hash as the
// run state in dir recorded them, without taking its lock, so that
// `scheduler audit verify` can check for records cut from the end while the
// daemon runs. A missing state is seq 0.
func ReadAuditTail(dir string) (seq uint64, hash string, err error) {
	path := filepath.Join(dir, FileName)
	if _, serr := os.Stat(path); serr != nil {
		d, present, migrated, err := loadV1(filepath.Join(dir, FileNameV1))
		if err != nil || !present || migrated {
			return 0, "", err
		}
		return d.Audit.Seq, d.Audit.Hash, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if err == nil {
		defer db.Close()
		var t auditTail
		err = db.View(func(tx *bolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil || string(meta.Get(keyFormat)) != Format {
				return &FileError{Path: path, Problem: "no run state of format " + Format, Kind: ErrForeign}
			}
			if b := meta.Get(keyAudit); b != nil {
				return json.Unmarshal(b, &t)
			}
			return nil
		})
		return t.Seq, t.Hash, err
	}
	if !errors.Is(err, bolterrors.ErrTimeout) {
		return 0, "", fmt.Errorf("state: read %s: %w", path, err)
	}
	// The daemon holds the database: read the hint of its last checkpoint.
	b, herr := os.ReadFile(filepath.Join(dir, auditTailName))
	if herr != nil {
		return 0, "", fmt.Errorf("state: %s is in use and its audit tail hint is unreadable: %w", path, herr)
	}
	var t auditTail
	if err := json.Unmarshal(b, &t); err != nil {
		return 0, "", fmt.Errorf("state: %s: %w", filepath.Join(dir, auditTailName), err)
	}
	return t.Seq, t.Hash, nil
}
