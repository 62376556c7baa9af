// Package audit writes and reads the audit log: JSON Lines, one Record per
// line (design.md "Audit log contract").
//
// # Durability
//
// Append returns only after the record's line has been written and the file
// fsynced, so the daemon acts only on durable records; it never drops a
// record. Concurrent Appends are safe and their lines never interleave. When
// several goroutines append at once their lines are group-committed: one
// write (one per 256 KiB of lines) and one fsync cover the whole batch, and
// each caller returns after the fsync that covers its record. The batch's
// leader encodes the records as it writes them.
//
// A failed write or fsync (a full disk) is returned to every caller whose
// record it covered, and to every later Append while the outage lasts: the
// daemon acts only on durable records, so it refuses to act. Meanwhile the
// Log retries in the background with exponential backoff
// (Options.RetryInitial, RetryMax) and resumes by itself: it cuts what the
// failed write left after the last durable record (its own unfinished
// lines), writes a repair record naming the outage, the error and the cut
// bytes, then the refused records, late (a refused intent as event
// audit_failed: that fire made no vendor call). Health reports the outage
// for readiness checks, metrics and the watchdog.
//
// # Hash chain
//
// Every line carries three more members after the contract fields: seq
// (1, 2, 3, … for the whole log, continuing across rotated files), prev and
// hash. The first record of a log also carries log_id, 32 random hex
// digits, and its prev is the log's genesis hash, hex SHA-256 of
// "scheduler-audit-genesis:" + log_id (see Genesis). Every other record's
// prev is the hash of the record before it.
//
// A record's hash is the hex SHA-256 of its exact line bytes without the
// hash member: the line as written ends in `,"hash":"<64 hex>"}`; remove
// `,"hash":"<64 hex>"` and hash what is left (no newline). Because prev is
// inside those bytes, each hash covers the whole log up to its record, and
// a verifier needs no JSON canonicalisation: it hashes the bytes on disk.
// Seq, prev and hash are assigned by the writer that holds the log's lock,
// in file order, so the chain is exactly the order of the lines.
//
// # Files and rotation
//
// The live file is the path given to Open. When a batch would make it larger
// than Options.MaxBytes, it is renamed to path.N, where N is one more than
// the highest number in use (path.1 is the oldest file, the live file the
// newest; nothing is ever renamed twice), and a new live file is created.
// The chain continues: the first record of the new file links to the last
// record of the old one. Files lists them in order; Verify checks them all.
//
// A log has one writer: OpenWith takes an exclusive flock(2) of path.lock
// without waiting and holds it until Close, so a second Log on the same
// file, in this process or another (a second daemon with its own
// state.dir, `scheduler trigger` beside a running daemon), is refused with
// a *BusyError naming the holder's pid. Before each batch the writer still
// checks whether the live file was moved away (logrotate) and follows it.
//
// # Recovery
//
// Open checks the live file and its link to the newest rotated file, and,
// with Options.ExpectSeq (the tail the run state recorded), that the log
// still holds that tail. Nothing on disk is cut, moved or rewritten until
// every check has passed: a refusal (*CorruptError naming the file, offset
// and seq) leaves every byte as it was. Only then is a torn last line that
// the run state does not count (a crash during a write) cut off: its bytes
// go first, fsynced, to a side file path.torn-OFFSET-TIME, and the cut is
// itself audited (event repair: offset, length, sha256, side file) and
// reported by Recovered. A torn line the run state counts is refused: it
// was durable once. Repair is the way out of a tail that does not match;
// it starts a new chain segment (see SegmentLink) and keeps every byte.
package audit

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("audit: log closed")

// DefaultMaxBytes is the live file size that triggers rotation when
// Options.MaxBytes is 0.
const DefaultMaxBytes = 64 << 20

// Options tunes OpenWith. The zero value is what Open uses.
type Options struct {
	// MaxBytes rotates the live file before a batch of lines would make it
	// larger than this. 0 means DefaultMaxBytes; a negative value never
	// rotates. A file exceeds it only when one batch alone is larger.
	MaxBytes int64
	// Keep is how many rotated files to keep; older ones are removed after
	// a rotation. 0 keeps all: the audit log is evidence, and Verify reports
	// a log whose first files are gone.
	Keep int
	// ExpectSeq and ExpectHash are the tail the run state recorded (see
	// Tail). Open fails when the log ends before ExpectSeq, and when the
	// record ExpectSeq is in the live file or is the tail and its hash is
	// not ExpectHash (if set). 0 checks nothing.
	ExpectSeq  uint64
	ExpectHash string

	// RetryInitial and RetryMax bound the backoff between attempts to
	// write again after a failed write or fsync (a full disk); 0 means
	// DefaultRetryInitial and DefaultRetryMax. See Health.
	RetryInitial, RetryMax time.Duration
	// Write, if set, writes the log's lines instead of (*os.File).Write:
	// tests inject faults (ENOSPC) with it instead of filling a disk.
	Write func(f *os.File, b []byte) (int, error)

	// Node, if set, names the writer in every record whose Node is empty:
	// the replica's name in a cluster.
	Node string
}

// Defaults of Options.RetryInitial and RetryMax.
const (
	DefaultRetryInitial = time.Second
	DefaultRetryMax     = time.Minute
)

// maxRefused bounds the records a failing log keeps to write late.
const maxRefused = 10000

// Log is an append-only, hash-chained audit log. Its methods are safe for
// concurrent use.
type Log struct {
	path     string
	now      func() time.Time
	sync     func(*os.File) error // (*os.File).Sync; replaced in tests
	write    func(*os.File, []byte) (int, error)
	retryMin time.Duration
	retryMax time.Duration
	maxBytes int64 // < 0: never rotate
	keep     int
	node     string   // Options.Node
	lock     *os.File // path.lock; nil when path is not a regular file

	mu       sync.Mutex
	cond     *sync.Cond // signalled when a flush ends
	f        *os.File
	fid      os.FileInfo // of f, as refresh last saw it; nil when f changed since
	pending  [][]Record  // batches of records waiting for the next flush, encoded by its leader
	spare    [][]Record  // the other slice, reused between flushes
	queued   uint64      // records handed to Append so far
	durable  uint64      // records covered by a successful fsync
	flushing bool        // a leader is writing outside mu
	closed   bool
	err      error // the write or fsync error of the current outage; nil when writing
	// The current outage: appends are refused until the retry loop has
	// written again. refusedUpto is the number of queued records whose
	// Append failed, so that a waiting caller of a failed batch is told.
	failSince   time.Time
	failures    int
	refused     [][]byte // bodies of refused records, written late on recovery
	dropped     int      // refused records beyond maxRefused, counted only
	refusedN    int      // records refused in this outage
	refusedUpto uint64
	writeErrors uint64        // failed writes and fsyncs since Open
	stop        chan struct{} // closed by Close: ends the retry loop
	retryDone   chan struct{} // closed when the retry loop has ended
	goodSize    int64         // live file size before the batch being written
	tailSeq     uint64
	tailHash    string
	recovered   string

	// Owned by the flushing leader (or by a holder of mu while no leader
	// runs): the chain tail and the live file size this process knows of.
	seq  uint64
	hash string
	size int64
	buf  []byte

	subs atomic.Pointer[[]func([]Record, error)] // see Subscribe
}

// Open opens the audit log at path with the default Options.
func Open(path string) (*Log, error) { return OpenWith(path, Options{}) }

// OpenWith opens the audit log at path for appending, creating the file
// (mode 0600) and its parent directory (mode 0700) if needed; an existing
// file keeps its mode. It checks the live file and resumes the chain from
// its tail: see the package doc for what it repairs and what it refuses.
// A path that is not a regular file (a device) is opened as is, without
// checks, locking or rotation.
func OpenWith(path string, opts Options) (*Log, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("audit: create directory: %w", err)
		}
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return nil, err
		}
	}
	l := &Log{path: path, now: time.Now, sync: (*os.File).Sync, write: opts.Write, maxBytes: opts.MaxBytes, keep: opts.Keep,
		retryMin: opts.RetryInitial, retryMax: opts.RetryMax, node: opts.Node}
	if l.write == nil {
		l.write = (*os.File).Write
	}
	if l.retryMin <= 0 {
		l.retryMin = DefaultRetryInitial
	}
	if l.retryMax <= 0 {
		l.retryMax = DefaultRetryMax
	}
	if l.maxBytes == 0 {
		l.maxBytes = DefaultMaxBytes
	}
	l.cond = sync.NewCond(&l.mu)
	fi, err := os.Stat(path)
	if err == nil && !fi.Mode().IsRegular() {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("audit: open: %w", err)
		}
		l.f, l.fid, l.maxBytes = f, nil, -1
		return l, nil
	}
	lock, err := lockLog(path)
	if err != nil {
		return nil, err
	}
	l.lock = lock
	if err := l.openLocked(opts); err != nil {
		if l.f != nil {
			l.f.Close()
		}
		lock.Close()
		return nil, err
	}
	l.tailSeq, l.tailHash = l.seq, l.hash
	return l, nil
}

// ErrBusy matches the error of OpenWith and Repair when another process
// (or another Log in this one) holds the log.
var ErrBusy = errors.New("audit: log in use by another writer")

// BusyError is the refusal to open a log another writer holds.
type BusyError struct {
	Path   string
	Holder string // what the holder wrote in the lock file: "pid N since T"
}

func (e *BusyError) Error() string {
	h := e.Holder
	if h == "" {
		h = "holder unknown"
	}
	return fmt.Sprintf("audit: %s is in use by another scheduler process (%s): an audit log has one writer; stop that process, or give this one its own audit.path", e.Path, h)
}

// Is reports whether target is ErrBusy.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// lockLog takes the exclusive lock of the log at path, path.lock, without
// waiting, and writes the holder's pid into it. The lock is held until the
// returned file is closed.
func lockLog(path string) (*os.File, error) {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open lock file: %w", err)
	}
	if err := flock(lock, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			b := make([]byte, 200)
			n, _ := lock.ReadAt(b, 0)
			return nil, &BusyError{Path: path, Holder: strings.TrimSpace(string(b[:n]))}
		}
		return nil, fmt.Errorf("audit: lock %s: %w", lock.Name(), err)
	}
	// Best effort: the pid only makes the refusal of a second writer
	// clearer.
	if err := lock.Truncate(0); err == nil {
		_, _ = fmt.Fprintf(lock, "pid %d since %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	}
	return lock, nil
}

// openLocked opens and checks the live file; the caller holds the lock.
// Nothing is changed on disk unless every check passed: only then is a
// torn last line cut off, its bytes kept in a side file and the cut
// audited.
func (l *Log) openLocked(opts Options) error {
	sc, err := l.scanLive(opts)
	if err != nil {
		return err
	}
	if sc.tail != nil {
		return sc.tail
	}
	l.size, l.seq, l.hash = sc.size, sc.c.seq, sc.c.hash
	if sc.tornOff < 0 {
		return nil
	}
	what, side, err := l.cutTorn(sc.tornOff, sc.tornLine)
	if err != nil {
		return err
	}
	detail := fmt.Sprintf("%s: a write was interrupted by a crash; the bytes are kept in %s", what, side)
	body, err := json.Marshal(Record{Time: l.now(), Event: EventRepair, Detail: detail})
	if err != nil {
		return fmt.Errorf("audit: encode record: %w", err)
	}
	if err := l.commit([][]byte{body}); err != nil {
		return err
	}
	l.recovered = fmt.Sprintf("audit: %s; the chain continues from seq %d with a repair record (seq %d)", detail, sc.c.seq, l.seq)
	return nil
}

// liveScan is what a read-only pass over the live file found.
type liveScan struct {
	c        checker
	size     int64
	tornOff  int64 // offset of an incomplete last line; -1 if none
	tornLine int
	tail     *CorruptError // the tail does not match the run state
}

// scanLive opens the live file into l.f and checks it, and its link to the
// newest rotated file, against opts, changing nothing. Damage in the chain
// is an error; a tail that does not match the run state is sc.tail.
func (l *Log) scanLive(opts Options) (liveScan, error) {
	sc := liveScan{tornOff: -1}
	f, err := openLive(l.path)
	if err != nil {
		return sc, err
	}
	l.f, l.fid = f, nil
	nums, err := rotatedNums(l.path)
	if err != nil {
		return sc, err
	}
	if len(nums) > 0 {
		prev := rotatedName(l.path, nums[len(nums)-1])
		b, off, ok, err := lastLine(prev)
		if err != nil {
			return sc, err
		}
		if !ok {
			return sc, &CorruptError{Kind: KindTorn, File: prev, Msg: "rotated file is empty or its last line is incomplete"}
		}
		cf, cerr := (&checker{}).check(rawLine{file: prev, off: off, b: b, complete: true})
		if cerr != nil {
			return sc, cerr
		}
		sc.c = checker{started: true, seq: cf.Seq, hash: cf.Hash}
	}
	c := &sc.c
	var suspect *CorruptError // a bad line, fatal unless it is the last
	for ln, err := range fileLines(l.path, f, 0) {
		if err != nil {
			return sc, err
		}
		if suspect != nil {
			return sc, suspect
		}
		if !ln.complete {
			sc.tornOff, sc.tornLine = ln.off, ln.no
			continue // the last line: ReadBytes stops only at EOF
		}
		cf, cerr := c.check(ln)
		if cerr != nil {
			if json.Valid(ln.b) {
				return sc, cerr
			}
			suspect, sc.tornOff, sc.tornLine = cerr, ln.off, ln.no
			continue
		}
		if opts.ExpectSeq != 0 && opts.ExpectHash != "" && cf.Seq == opts.ExpectSeq && cf.Hash != opts.ExpectHash && sc.tail == nil {
			sc.tail = &CorruptError{Tail: true, Kind: KindEdited, File: l.path, Offset: ln.off, Line: ln.no, Seq: cf.Seq,
				Msg: fmt.Sprintf("record seq %d has hash %.12s… but run state recorded %.12s…: the log was rewritten", cf.Seq, cf.Hash, opts.ExpectHash)}
		}
	}
	fi, err := f.Stat()
	if err != nil {
		return sc, fmt.Errorf("audit: stat %s: %w", l.path, err)
	}
	sc.size = fi.Size()
	switch {
	case opts.ExpectSeq > c.seq && sc.tornOff >= 0:
		sc.tail = &CorruptError{Tail: true, Kind: KindTorn, File: l.path, Offset: sc.tornOff, Line: sc.tornLine, Seq: c.seq + 1,
			Msg: fmt.Sprintf("the last line is incomplete (%d bytes) and the complete records end at seq %d, but run state recorded seq %d: records the daemon wrote were damaged or cut after they were written; nothing was changed",
				sc.size-sc.tornOff, c.seq, opts.ExpectSeq)}
	case opts.ExpectSeq > c.seq:
		sc.tail = &CorruptError{Tail: true, Kind: KindTruncated, File: l.path, Seq: c.seq,
			Msg: fmt.Sprintf("audit log ends at seq %d but run state recorded seq %d: records were deleted; nothing was changed", c.seq, opts.ExpectSeq)}
	case opts.ExpectSeq != 0 && opts.ExpectSeq == c.seq && opts.ExpectHash != "" && c.hash != opts.ExpectHash:
		sc.tail = &CorruptError{Tail: true, Kind: KindEdited, File: l.path, Seq: c.seq,
			Msg: fmt.Sprintf("last record seq %d has hash %.12s… but run state recorded %.12s…: the log was rewritten", c.seq, c.hash, opts.ExpectHash)}
	}
	return sc, nil
}

// cutTorn moves the bytes from off to the end of the live file (an
// incomplete last line) into a side file beside it, durably, then cuts
// them off. It returns what it removed and the side file's path.
func (l *Log) cutTorn(off int64, line int) (what, side string, err error) {
	n := l.size - off
	b := make([]byte, n)
	if _, err := l.f.ReadAt(b, off); err != nil {
		return "", "", fmt.Errorf("audit: read the incomplete last line of %s: %w", l.path, err)
	}
	sum := sha256.Sum256(b)
	side = fmt.Sprintf("%s.torn-%d-%s", l.path, off, l.now().UTC().Format("20060102T150405.000000000Z"))
	sf, err := os.OpenFile(side, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", "", fmt.Errorf("audit: keep the incomplete last line: %w", err)
	}
	_, err = sf.Write(b)
	if err == nil {
		err = l.sync(sf)
	}
	if cerr := sf.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncDir(filepath.Dir(side))
	}
	if err != nil {
		return "", "", fmt.Errorf("audit: keep the incomplete last line in %s: %w", side, err)
	}
	if err := l.f.Truncate(off); err != nil {
		return "", "", fmt.Errorf("audit: cut torn line off %s: %w", l.path, err)
	}
	if err := l.sync(l.f); err != nil {
		return "", "", fmt.Errorf("audit: fsync %s: %w", l.path, err)
	}
	l.size = off
	what = fmt.Sprintf("cut an incomplete last line off %s: offset %d (line %d), %d bytes, sha256 %s", l.path, off, line, n, hex.EncodeToString(sum[:]))
	return what, side, nil
}

// Repaired is what Repair did.
type Repaired struct {
	Record Record // the record that starts the new chain segment
	Side   string // the file holding an incomplete last line that was cut off, or ""
}

// ErrNothingToRepair is returned by Repair for a log whose tail matches.
var ErrNothingToRepair = errors.New("audit: nothing to repair")

// Repair is the way out of a tail that does not match the run state (a
// log cut or rewritten at its end), which OpenWith refuses. It keeps every
// byte: the complete lines stay where they are, an incomplete last line
// moves to a side file, and a new record, event repair, starts a new chain
// segment: it has a new log_id, a seq after both the log's and the run
// state's, and a prev that binds it to the record before it (SegmentLink),
// and its detail names the old segment's tail, what the run state
// expected, and reason. Verify accepts the segment and reports it. The
// caller stores the returned record's seq and hash as the run state's new
// tail. Damage before the tail (an edited or missing record in the
// middle) is not repaired.
func Repair(path string, opts Options, reason string) (Repaired, error) {
	lock, err := lockLog(path)
	if err != nil {
		return Repaired{}, err
	}
	defer lock.Close()
	l := &Log{path: path, now: time.Now, sync: (*os.File).Sync, maxBytes: -1, lock: lock}
	sc, err := l.scanLive(opts)
	if l.f != nil {
		defer l.f.Close()
	}
	if err != nil {
		return Repaired{}, fmt.Errorf("audit: repair: the log is damaged before its tail, which repair does not mend (see scheduler audit verify): %w", err)
	}
	if sc.tail == nil {
		return Repaired{}, fmt.Errorf("%w: %s: the tail matches the run state (seq %d); an incomplete last line the run state does not count is cut, and kept, by the daemon on start",
			ErrNothingToRepair, path, sc.c.seq)
	}
	l.size, l.seq, l.hash = sc.size, sc.c.seq, sc.c.hash
	var rp Repaired
	kept := ""
	if sc.tornOff >= 0 {
		what, side, err := l.cutTorn(sc.tornOff, sc.tornLine)
		if err != nil {
			return Repaired{}, err
		}
		rp.Side = side
		kept = fmt.Sprintf("; %s, kept in %s", what, side)
	}
	oldID := sc.c.logID
	if oldID == "" {
		oldID = "(named in an older file)"
	}
	logID := newLogID()
	seq := max(opts.ExpectSeq, l.seq) + 1
	detail := fmt.Sprintf("new chain segment %s after seq %d hash %s of log %s: %s; the run state recorded seq %d hash %s; every byte of the old segment is kept%s; reason: %s",
		logID, l.seq, l.hash, oldID, sc.tail.Msg, opts.ExpectSeq, opts.ExpectHash, kept, reason)
	body, err := json.Marshal(Record{Time: l.now(), Event: EventRepair, Detail: detail})
	if err != nil {
		return Repaired{}, fmt.Errorf("audit: encode record: %w", err)
	}
	line, _ := seal(nil, body, seq, SegmentLink(logID, l.seq, l.hash), logID)
	if _, err := l.f.Write(line); err != nil {
		return Repaired{}, fmt.Errorf("audit: write %s: %w", path, err)
	}
	if err := l.sync(l.f); err != nil {
		return Repaired{}, fmt.Errorf("audit: fsync %s: %w", path, err)
	}
	if err := json.Unmarshal(line, &rp.Record); err != nil {
		return Repaired{}, fmt.Errorf("audit: read back the repair record: %w", err)
	}
	return rp, nil
}

// openLive opens (or creates, fsyncing its directory) the live file.
func openLive(path string) (*os.File, error) {
	_, err := os.Lstat(path)
	created := errors.Is(err, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	if created {
		if err := syncDir(filepath.Dir(path)); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: fsync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("audit: fsync directory %s: %w", dir, err)
	}
	return nil
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

// Path returns the path the log was opened with.
func (l *Log) Path() string { return l.path }

// Recovered returns what Open repaired, for the daemon to log: a message
// naming the torn last line it cut off, or "" when it repaired nothing.
func (l *Log) Recovered() string { return l.recovered }

// Err returns the write or fsync error of the current outage, during
// which the log refuses appends and retries in the background, or nil
// while it takes records. See Health.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Tail returns the seq and hash of the newest durable record this Log
// wrote or found on Open; 0 and "" for an empty log. The run state stores
// them so that Open (Options.ExpectSeq) can catch a truncated log.
func (l *Log) Tail() (seq uint64, hash string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tailSeq, l.tailHash
}

// Append writes r as one line and returns after the line is on disk
// (written and fsynced). A zero r.Time is set to the current time; r's
// chain fields are ignored and assigned by the log. An error means the
// record may not be durable; after a write or fsync error every later
// Append fails with the same error.
func (l *Log) Append(r Record) error {
	return l.AppendBatch([]Record{r})
}

// AppendBatch writes rs as consecutive lines, in order, and returns after
// all of them are on disk. The lines go out
// in one group commit (with whatever other callers queued meanwhile): one
// write per 256 KiB and one fsync, so a caller that has several facts to record at
// once (a fire's intent on every target, missed fires with the catch-up
// fire that supersedes them) pays for one durable step. No other caller's
// line comes between them. An empty rs writes nothing.
func (l *Log) AppendBatch(rs []Record) error {
	subs := l.subs.Load()
	if subs == nil || len(rs) == 0 {
		return l.appendBatch(rs, nil)
	}
	out := make([]Record, len(rs))
	err := l.appendBatch(rs, out)
	for _, fn := range *subs {
		fn(out, err)
	}
	return err
}

// Subscribe makes fn receive every later batch of records (one Append or
// AppendBatch) once it is durable, with err nil, or once writing it failed,
// with the error Append returned (the records may not be on disk). The
// records have their Time filled in; their chain fields are zero. fn runs
// in the appending goroutine, after the log's lock is released, before
// Append returns: it must return at once (queue the work; see
// internal/observe.Hub) and must not append. Subscribe is safe to call at
// any time; subscribers are never removed.
func (l *Log) Subscribe(fn func(recs []Record, err error)) {
	for {
		old := l.subs.Load()
		var next []func([]Record, error)
		if old != nil {
			next = append(next, *old...)
		}
		next = append(next, fn)
		if l.subs.CompareAndSwap(old, &next) {
			return
		}
	}
}

// appendBatch is AppendBatch; out, if not nil, receives the records as
// written (Time filled in).
func (l *Log) appendBatch(rs []Record, out []Record) error {
	// The records wait in their own slice (out, which the subscribers get,
	// where there is one) and the flush's leader encodes them as it seals
	// them: a fire's intent on 10 000 targets needs no buffer of its
	// encoded lines.
	recs := out
	if recs == nil {
		recs = make([]Record, len(rs))
	}
	for i := range rs {
		r := &recs[i]
		*r = rs[i]
		if r.Time.IsZero() {
			r.Time = l.now()
		}
		if r.Node == "" {
			r.Node = l.node
		}
		r.LogID, r.Seq, r.Prev, r.Hash = "", 0, "", ""
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		l.refuseRecords(recs)
		return l.err
	}
	if len(recs) == 0 {
		return nil
	}
	l.pending = append(l.pending, recs)
	l.queued += uint64(len(recs))
	mine := l.queued
	for {
		if mine <= l.refusedUpto && l.err != nil {
			return l.err
		}
		if l.durable >= mine {
			return nil
		}
		if l.err != nil {
			return l.err
		}
		if l.flushing {
			l.cond.Wait()
			continue
		}
		l.flushLocked()
	}
}

// flushLocked makes the caller the leader: it writes and fsyncs every
// pending line outside mu, while followers keep queueing for the next
// batch. mu is held on entry and on return.
func (l *Log) flushLocked() {
	batches, upto := l.pending, l.queued
	l.pending, l.spare = l.spare[:0], nil
	l.flushing = true
	l.mu.Unlock()

	err := l.commitRecords(batches)

	l.mu.Lock()
	l.flushing = false
	if err != nil {
		// Every record queued so far is refused: the batch that failed and
		// those waiting for the next one. Their callers get err.
		for _, b := range batches {
			l.refuseRecords(b)
		}
		for _, b := range l.pending {
			l.refuseRecords(b)
		}
		clear(l.pending)
		l.pending = l.pending[:0]
		l.refusedUpto, l.durable = l.queued, l.queued
	}
	clear(batches)
	l.spare = batches[:0]
	if err != nil {
		l.writeErrors++
		if l.err == nil {
			l.failSince, l.failures = l.now(), 1
			l.startRetry()
		}
		l.err = err
	} else {
		l.durable = upto
		l.tailSeq, l.tailHash = l.seq, l.hash
	}
	l.cond.Broadcast()
}

// commit chains, writes and fsyncs one batch of record bodies under the
// file lock. Only the leader calls it.
func (l *Log) commit(bodies [][]byte) error {
	upper := 0
	for _, b := range bodies {
		upper += len(b)
	}
	return l.commitFunc(len(bodies), upper, func(i int) []byte { return bodies[i] })
}

// commitRecords is commit of the records of batches, each encoded as it is
// sealed.
func (l *Log) commitRecords(batches [][]Record) error {
	n, upper := 0, 0
	for _, b := range batches {
		n += len(b)
		for i := range b {
			upper += b[i].maxSize()
		}
	}
	var scratch []byte
	bi, ri := 0, 0 // the next record: batches[bi][ri]
	return l.commitFunc(n, upper, func(i int) []byte {
		if i == 0 {
			bi, ri = 0, 0
		}
		for ri >= len(batches[bi]) {
			bi, ri = bi+1, 0
		}
		scratch = batches[bi][ri].appendJSON(scratch[:0])
		ri++
		return scratch
	})
}

// commitFunc chains, writes and fsyncs n records under the file lock;
// body(i) returns the body of record i (valid until the next call), for i
// from 0 to n-1, in order, once or twice: a second pass measures the batch
// when upper, a bound of the bodies' total length, does not show that it
// fits before rotation. Only the leader calls it.
func (l *Log) commitFunc(n, upper int, body func(i int) []byte) error {
	if l.lock != nil {
		if err := l.refresh(); err != nil {
			return err
		}
	}
	seq, hash := l.seq, l.hash
	if l.lock != nil && l.maxBytes > 0 && l.size > 0 &&
		l.size+int64(upper+n*sealedMax+len(hash)) > l.maxBytes && l.size+sealedSize(n, body, seq, len(hash)) > l.maxBytes {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	l.goodSize = l.size
	// The batch is sealed and written a chunk at a time, so that a big
	// batch (a fire's intent on 10 000 targets) does not need a buffer of
	// its whole size; one fsync covers all of it.
	buf := l.buf[:0]
	var h [64]byte // the hash of the record sealed last
	prev := []byte(hash)
	for i := range n {
		seq++
		logID := ""
		if seq == 1 {
			logID = newLogID()
			prev = []byte(Genesis(logID))
		}
		buf = sealInto(buf, body(i), seq, prev, logID, &h)
		prev = h[:]
		if len(buf) < writeChunk && i < n-1 {
			continue
		}
		w, err := l.write(l.f, buf)
		l.size += int64(w)
		if err != nil {
			return fmt.Errorf("audit: write %s: %w", l.path, err)
		}
		buf = buf[:0]
	}
	if cap(buf) <= 2*writeChunk {
		l.buf = buf
	} else {
		l.buf = nil
	}
	if err := l.sync(l.f); err != nil {
		return fmt.Errorf("audit: fsync %s: %w", l.path, err)
	}
	if n > 0 {
		hash = string(h[:])
	}
	l.seq, l.hash = seq, hash
	return nil
}

// writeChunk is about how many bytes of sealed lines commit writes at
// once.
const writeChunk = 256 << 10

// sealedMax bounds what seal adds to a body: log_id, seq, prev and hash.
const sealedMax = 256

// sealedSize returns how many bytes seal makes of the n bodies body
// returns, the first after the record seq whose hash has prevLen bytes.
func sealedSize(n int, body func(i int) []byte, seq uint64, prevLen int) int64 {
	const fixed = len(`,"seq":`) + len(`,"prev":""`) + hashSuffixLen + 1 - 1 // the body's '}' is rewritten
	var size int64
	for i := range n {
		seq++
		size += int64(len(body(i)) + fixed + digits(seq) + prevLen)
		if seq == 1 {
			size += int64(len(`,"log_id":""`) + 32 - prevLen + 64) // log_id; prev is the genesis hash
		}
		prevLen = 64
	}
	return size
}

// digits returns the number of decimal digits of n.
func digits(n uint64) int {
	d := 1
	for ; n >= 10; n /= 10 {
		d++
	}
	return d
}

// refresh catches up with lines other processes appended since this Log
// last wrote, and follows the live file when it was moved away (rotated by
// another process, or by logrotate). The caller holds the file lock.
func (l *Log) refresh() error {
	// The common case in one stat(2): the path still names the file
	// being written, whose size is then the one to catch up to.
	if l.fid != nil {
		pi, err := os.Stat(l.path)
		if err == nil && os.SameFile(l.fid, pi) {
			return l.catchUp(l.f, l.size, pi.Size())
		}
	}
	fi, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("audit: stat %s: %w", l.path, err)
	}
	if err := l.catchUp(l.f, l.size, fi.Size()); err != nil {
		return err
	}
	pi, err := os.Stat(l.path)
	if err == nil && os.SameFile(fi, pi) {
		l.fid = fi
		return nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit: stat %s: %w", l.path, err)
	}
	nf, err := openLive(l.path)
	if err != nil {
		return err
	}
	nfi, err := nf.Stat()
	if err == nil {
		l.size = 0
		err = l.catchUp(nf, 0, nfi.Size())
	}
	if err != nil {
		nf.Close()
		return err
	}
	old := l.f
	l.f, l.fid = nf, nfi
	old.Close()
	return nil
}

// catchUp reads the chain tail from bytes from..end of f, appended by
// another writer, and moves l.size to end.
func (l *Log) catchUp(f *os.File, from, end int64) error {
	if end == from {
		return nil
	}
	if end < from {
		return fmt.Errorf("audit: %s shrank from %d to %d bytes while open: records were removed", l.path, from, end)
	}
	b, off, ok, err := lastLineAt(f, l.path, from, end)
	if err != nil {
		return err
	}
	if !ok {
		return &CorruptError{Kind: KindTorn, File: l.path, Offset: from,
			Msg: "another writer left an incomplete line; restart to recover it"}
	}
	var cf chainFields
	if err := json.Unmarshal(b, &cf); err != nil || cf.Seq == 0 || cf.Hash == "" {
		return &CorruptError{Kind: KindMalformed, File: l.path, Offset: off, Msg: "line appended by another writer has no hash chain"}
	}
	l.seq, l.hash, l.size = cf.Seq, cf.Hash, end
	return nil
}

// rotate renames the live file to the next path.N and starts a new one.
// The caller holds the file lock and is the leader.
func (l *Log) rotate() error {
	nums, err := rotatedNums(l.path)
	if err != nil {
		return err
	}
	next := 1
	if len(nums) > 0 {
		next = nums[len(nums)-1] + 1
	}
	dst := rotatedName(l.path, next)
	if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit: rotate: %s already exists", dst)
	}
	if err := os.Rename(l.path, dst); err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	dir := filepath.Dir(l.path)
	if err := syncDir(dir); err != nil {
		return err
	}
	nf, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	if err := syncDir(dir); err != nil {
		nf.Close()
		return err
	}
	old := l.f
	l.f, l.fid, l.size = nf, nil, 0
	old.Close()
	if l.keep > 0 && len(nums)+1 > l.keep {
		// Best effort: a file that could not be removed is kept, which
		// loses nothing.
		for _, n := range nums[:len(nums)+1-l.keep] {
			_ = os.Remove(rotatedName(l.path, n))
		}
		_ = syncDir(dir)
	}
	return nil
}

// drainLocked returns when every queued line is durable or the log has
// failed. mu is held on entry and on return.
func (l *Log) drainLocked() {
	for l.err == nil && (l.flushing || l.durable < l.queued) {
		if l.flushing {
			l.cond.Wait()
			continue
		}
		l.flushLocked()
	}
}

// Reopen flushes the lines already queued, then continues in the file now
// at path, for use after logrotate moved the file away. Appends notice a
// moved file on their own; Reopen makes it happen now. The chain continues
// in the new file. It does not clear a sticky error.
func (l *Log) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.drainLocked()
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrClosed
	}
	if l.lock == nil {
		f, err := os.OpenFile(l.path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("audit: reopen: %w", err)
		}
		old := l.f
		l.f, l.fid = f, nil
		return old.Close()
	}
	if err := l.refresh(); err != nil {
		return fmt.Errorf("audit: reopen: %w", err)
	}
	return nil
}

// Close flushes the lines of Appends in progress, then closes the file.
// Appends after Close return ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.drainLocked()
	if l.stop != nil {
		close(l.stop)
		done := l.retryDone
		l.mu.Unlock()
		<-done
		l.mu.Lock()
	}
	if l.lock != nil {
		l.lock.Close()
	}
	if err := l.f.Close(); err != nil && l.err == nil {
		return fmt.Errorf("audit: close %s: %w", l.path, err)
	}
	return nil
}

// ReadAll reads every record of the log at path, in order. On a malformed
// line it returns the records before it and an error naming the line.
func ReadAll(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	var out []Record
	for r, err := range Records(f) {
		if err != nil {
			return out, fmt.Errorf("audit: %s: %w", path, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Records iterates over the records of a log read from rd. A malformed line
// yields an error naming its line number; iteration may continue past it.
// A read error ends the iteration after yielding it. Blank lines are
// skipped.
func Records(rd io.Reader) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		sc := bufio.NewScanner(rd)
		sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
		n := 0
		for sc.Scan() {
			n++
			b := sc.Bytes()
			if len(b) == 0 {
				continue
			}
			var r Record
			if err := json.Unmarshal(b, &r); err != nil {
				if !yield(Record{}, fmt.Errorf("line %d: %w", n, err)) {
					return
				}
				continue
			}
			if !yield(r, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(Record{}, fmt.Errorf("after line %d: %w", n, err))
		}
	}
}

// Health is the state of a Log's writes, for readiness checks, metrics and
// the service manager's status line.
type Health struct {
	OK          bool      // the last write or fsync succeeded
	Since       time.Time // when the current outage began; zero when OK
	Err         string    // the error of the current outage
	Failures    int       // failed attempts in the current outage
	Refused     int       // records refused in the current outage
	WriteErrors uint64    // failed writes and fsyncs since Open (audit_write_errors_total)
}

// Health reports whether the log is writing. It never blocks on a write.
func (l *Log) Health() Health {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := Health{OK: l.err == nil, WriteErrors: l.writeErrors}
	if l.err != nil {
		h.Since, h.Err, h.Failures, h.Refused = l.failSince, l.err.Error(), l.failures, l.refusedN
	}
	return h
}

// refuseRecords is refuse of records not encoded yet. mu is held.
func (l *Log) refuseRecords(recs []Record) {
	bodies := make([][]byte, len(recs))
	for i := range recs {
		bodies[i] = recs[i].appendJSON(nil)
	}
	l.refuse(bodies)
}

// refuse keeps the bodies of records refused during an outage, to write
// them late once the log writes again. mu is held.
func (l *Log) refuse(bodies [][]byte) {
	l.refusedN += len(bodies)
	for _, b := range bodies {
		if len(l.refused) >= maxRefused {
			l.dropped++
			continue
		}
		l.refused = append(l.refused, b)
	}
}

// startRetry starts the retry loop of an outage. mu is held.
func (l *Log) startRetry() {
	if l.closed || l.stop != nil {
		return
	}
	l.stop, l.retryDone = make(chan struct{}), make(chan struct{})
	go l.retryLoop(l.stop, l.retryDone)
}

// retryLoop tries to write again, with exponential backoff, until it has
// or the log is closed.
func (l *Log) retryLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = l.retryMin, l.retryMax, 0
	b.Reset()
	t := time.NewTimer(b.NextBackOff())
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if l.tryResume() {
			return
		}
		t.Reset(b.NextBackOff())
	}
}

// tryResume makes one attempt to end the outage; it reports whether the
// outage is over (or the log closed).
func (l *Log) tryResume() bool {
	// The records written late reach the subscribers (metrics,
	// notifications: audit_failed) once the log's lock is released.
	var late []Record
	defer func() {
		if subs := l.subs.Load(); subs != nil && len(late) > 0 {
			for _, fn := range *subs {
				fn(late, nil)
			}
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if l.closed {
			return true
		}
		// While l.err is set, appends are refused and no leader runs:
		// this goroutine owns the file.
		refused, dropped, cause, since, failures := l.refused, l.dropped, l.err, l.failSince, l.failures
		l.flushing = true
		l.mu.Unlock()
		recs, err := l.resume(refused, dropped, cause, since, failures)
		l.mu.Lock()
		l.flushing = false
		l.cond.Broadcast()
		if err != nil {
			l.err = err
			l.failures++
			l.writeErrors++
			return false
		}
		late = append(late, recs...)
		l.tailSeq, l.tailHash = l.seq, l.hash
		l.refused = l.refused[len(refused):]
		l.dropped -= dropped
		if len(l.refused) > 0 || l.dropped > 0 {
			continue // refused while this attempt wrote: write them too
		}
		l.refused, l.err, l.failSince, l.failures, l.refusedN = nil, nil, time.Time{}, 0, 0
		l.stop = nil
		return true
	}
}

// resume writes after an outage: it cuts what the failed write left after
// the last durable record (our own unfinished lines), then writes a repair
// record that names the outage and the cut, and the refused records, late.
// An intent refused (a run record) is written as event audit_failed: the
// fire was refused and no vendor call was made.
func (l *Log) resume(refused [][]byte, dropped int, cause error, since time.Time, failures int) ([]Record, error) {
	cut := ""
	if l.lock != nil {
		fi, err := l.f.Stat()
		if err != nil {
			return nil, fmt.Errorf("audit: stat %s: %w", l.path, err)
		}
		if n := fi.Size() - l.goodSize; n > 0 {
			b := make([]byte, n)
			if _, err := l.f.ReadAt(b, l.goodSize); err != nil {
				return nil, fmt.Errorf("audit: read the unfinished write of %s: %w", l.path, err)
			}
			sum := sha256.Sum256(b)
			if err := l.f.Truncate(l.goodSize); err != nil {
				return nil, fmt.Errorf("audit: cut the unfinished write off %s: %w", l.path, err)
			}
			if err := l.sync(l.f); err != nil {
				return nil, fmt.Errorf("audit: fsync %s: %w", l.path, err)
			}
			cut = fmt.Sprintf("; the failed write had left %d bytes (sha256 %s) after offset %d, lines of records refused here and written again below: they were cut",
				n, hex.EncodeToString(sum[:]), l.goodSize)
		}
		l.size = l.goodSize
	}
	now := l.now()
	note := ""
	if dropped > 0 {
		note = fmt.Sprintf(" (%d more were refused and not kept)", dropped)
	}
	head := Record{Time: now, Event: EventRepair, Error: cause.Error(),
		Detail: fmt.Sprintf("the audit log could not be written from %s to %s (%d failed attempts); %d records refused meanwhile follow, written late%s%s",
			since.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), failures, len(refused), note, cut)}
	hb, err := json.Marshal(head)
	if err != nil {
		return nil, fmt.Errorf("audit: encode record: %w", err)
	}
	bodies := make([][]byte, 0, len(refused)+1)
	bodies = append(bodies, hb)
	recs := make([]Record, 0, len(refused)+1)
	recs = append(recs, head)
	for _, b := range refused {
		var r Record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("audit: decode a refused record: %w", err)
		}
		if r.Event == EventRun {
			r.Event, r.Outcome = EventAuditFailed, OutcomeFailure
			r.Detail = fmt.Sprintf("fire refused: its intent could not be written to the audit log (%v), so no vendor call was made; the intent read: %s", cause, r.Detail)
		} else {
			r.Detail = strings.TrimPrefix(r.Detail+"; ", "; ") + fmt.Sprintf("written late: the audit log refused it at %s (%v)", r.Time.UTC().Format(time.RFC3339Nano), cause)
		}
		r.Error = strings.TrimSpace(r.Error)
		nb, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("audit: encode record: %w", err)
		}
		bodies = append(bodies, nb)
		recs = append(recs, r)
	}
	if err := l.commit(bodies); err != nil {
		return nil, err
	}
	return recs, nil
}
