package audit

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// genesisPrefix is hashed with a log's id to give the prev of its first
// record.
const genesisPrefix = "scheduler-audit-genesis:"

// hashKey starts the last member of every line.
const hashKey = `,"hash":"`

// hashSuffixLen is the length of `,"hash":"<64 hex>"}`.
const hashSuffixLen = len(hashKey) + 64 + 2

// Genesis returns the prev of the first record of the log whose log_id is
// logID: hex SHA-256 of "scheduler-audit-genesis:" + logID.
func Genesis(logID string) string {
	sum := sha256.Sum256([]byte(genesisPrefix + logID))
	return hex.EncodeToString(sum[:])
}

// segmentPrefix is hashed with a new segment's log_id and the seq and hash
// of the record before it to give the prev of a segment's first record.
const segmentPrefix = "scheduler-audit-segment:"

// SegmentLink returns the prev of a record that starts a new chain segment
// (see Repair) with log_id logID, after the record seq with hash hash: hex
// SHA-256 of "scheduler-audit-segment:" + logID + ":" + seq + ":" + hash.
func SegmentLink(logID string, seq uint64, hash string) string {
	sum := sha256.Sum256([]byte(segmentPrefix + logID + ":" + strconv.FormatUint(seq, 10) + ":" + hash))
	return hex.EncodeToString(sum[:])
}

func newLogID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// seal adds the chain members to body, a record's JSON object written
// without them, and returns the line (with its newline) and its hash.
//
// The unsealed line is body with `,"log_id":"ID"` (first record only),
// `,"seq":N,"prev":"HEX"` inserted before the closing brace; its hash is the
// hex SHA-256 of those exact bytes. The written line is the unsealed line
// with `,"hash":"HEX"` inserted before the closing brace.
func seal(dst, body []byte, seq uint64, prev, logID string) ([]byte, string) {
	var h [64]byte
	dst = sealInto(dst, body, seq, []byte(prev), logID, &h)
	return dst, string(h[:])
}

// sealInto is seal writing the line's hash into h, without allocating:
// the audit log seals every record with it. prev may be h itself.
func sealInto(dst, body []byte, seq uint64, prev []byte, logID string, h *[64]byte) []byte {
	start := len(dst)
	dst = append(dst, body[:len(body)-1]...)
	if logID != "" {
		dst = append(dst, `,"log_id":"`...)
		dst = append(dst, logID...)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"prev":"`...)
	dst = append(dst, prev...)
	dst = append(dst, `"}`...)
	sum := sha256.Sum256(dst[start:])
	hex.Encode(h[:], sum[:])
	dst = dst[:len(dst)-1]
	dst = append(dst, hashKey...)
	dst = append(dst, h[:]...)
	dst = append(dst, "\"}\n"...)
	return dst
}

// unseal undoes seal on line (without its newline): it returns the hash
// written at the end of the line and the hash the rest of the line has.
func unseal(line []byte) (written, computed string, ok bool) {
	if len(line) < hashSuffixLen+2 {
		return "", "", false
	}
	i := len(line) - hashSuffixLen
	suffix := line[i:]
	if !bytes.HasPrefix(suffix, []byte(hashKey)) || !bytes.HasSuffix(suffix, []byte(`"}`)) {
		return "", "", false
	}
	written = string(suffix[len(hashKey) : len(hashKey)+64])
	if _, err := hex.DecodeString(written); err != nil || strings.ToLower(written) != written {
		return "", "", false
	}
	h := sha256.New()
	h.Write(line[:i])
	h.Write([]byte{'}'})
	return written, hex.EncodeToString(h.Sum(nil)), true
}

// CorruptError describes the first damaged, edited, missing or misplaced
// record found in an audit log. Open returns it for damage it refuses to
// start on; Verify returns it for the first problem of the chain.
type CorruptError struct {
	Kind   string // one of the Kind constants
	File   string // the file holding the problem
	Offset int64  // byte offset of the line in File
	Line   int    // line number in File, from 1
	Seq    uint64 // the seq of the record concerned, when known
	Msg    string // what is wrong, for people
	// Tail: the log's end does not match the tail the run state recorded
	// (Options.ExpectSeq); Repair is the way out.
	Tail bool
}

// Kinds of CorruptError.
const (
	KindMalformed   = "malformed"   // not a JSON record with a hash chain
	KindTorn        = "torn"        // the last line is incomplete (a crash mid-write)
	KindEdited      = "edited"      // the record's hash does not match its bytes
	KindDeleted     = "deleted"     // a seq is missing
	KindReordered   = "reordered"   // a seq comes out of order
	KindBrokenLink  = "broken-link" // prev is not the hash of the record before
	KindMissingFile = "missing-file"
	KindTruncated   = "truncated" // the log ends before the seq the run state recorded
)

func (e *CorruptError) Error() string {
	switch {
	case e.Line > 0:
		return fmt.Sprintf("audit: %s: offset %d (line %d): %s", e.File, e.Offset, e.Line, e.Msg)
	case e.Offset > 0:
		return fmt.Sprintf("audit: %s: offset %d: %s", e.File, e.Offset, e.Msg)
	}
	return fmt.Sprintf("audit: %s: %s", e.File, e.Msg)
}

// ErrCorrupt matches every *CorruptError with errors.Is.
var ErrCorrupt = errors.New("audit: log corrupt")

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// chainFields are the members a chain check reads from a line.
type chainFields struct {
	LogID string `json:"log_id"`
	Seq   uint64 `json:"seq"`
	Prev  string `json:"prev"`
	Hash  string `json:"hash"`
}

// rawLine is one line of a log file.
type rawLine struct {
	file     string
	off      int64
	no       int
	b        []byte // without the newline
	complete bool   // ended with a newline
}

// fileLines yields the lines of rd, named file, starting at byte offset off.
func fileLines(file string, rd io.Reader, off int64) iter.Seq2[rawLine, error] {
	return func(yield func(rawLine, error) bool) {
		br := bufio.NewReaderSize(rd, 256<<10)
		no := 0
		for {
			b, err := br.ReadBytes('\n')
			if len(b) > 0 {
				no++
				complete := b[len(b)-1] == '\n'
				ln := rawLine{file: file, off: off, no: no, b: bytes.TrimSuffix(b, []byte{'\n'}), complete: complete}
				off += int64(len(b))
				if !yield(ln, nil) {
					return
				}
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(rawLine{}, fmt.Errorf("audit: read %s: %w", file, err))
				return
			}
		}
	}
}

// checker follows a chain line by line.
type checker struct {
	seq     uint64 // last seq seen; 0 before the first record
	hash    string // last hash seen
	started bool   // a record was seen (or the tail was given)
	records uint64
	first   uint64 // seq of the first record seen
	logID   string // log_id of the current segment, when seen

	segments []uint64 // seqs of records that start a new chain segment
}

// check reads one complete line. It returns the record's chain fields, or
// the problem. It does not advance on a problem.
func (c *checker) check(ln rawLine) (chainFields, *CorruptError) {
	fail := func(kind string, seq uint64, format string, args ...any) (chainFields, *CorruptError) {
		return chainFields{}, &CorruptError{Kind: kind, File: ln.file, Offset: ln.off, Line: ln.no, Seq: seq, Msg: fmt.Sprintf(format, args...)}
	}
	var r Record
	if err := json.Unmarshal(ln.b, &r); err != nil {
		return fail(KindMalformed, 0, "not a JSON record: %v", err)
	}
	cf := chainFields{LogID: r.LogID, Seq: r.Seq, Prev: r.Prev, Hash: r.Hash}
	written, computed, ok := unseal(ln.b)
	if !ok || r.Seq == 0 {
		return fail(KindMalformed, r.Seq, "record has no seq and hash chain (not written by this scheduler?)")
	}
	if written != r.Hash {
		return fail(KindMalformed, r.Seq, "record has two hash members")
	}
	if computed != written {
		return fail(KindEdited, r.Seq, "record seq %d was edited: its hash %.12s… does not match its content (%.12s…)", r.Seq, written, computed)
	}
	switch {
	case c.started && r.LogID != "":
		// A new chain segment (Repair): it names the record before it.
		if r.Seq <= c.seq || r.Prev != SegmentLink(r.LogID, c.seq, c.hash) {
			return fail(KindBrokenLink, r.Seq, "record seq %d starts a new chain segment (log_id %s) but does not name the record before it, seq %d (a record was inserted or replaced)", r.Seq, r.LogID, c.seq)
		}
		c.segments = append(c.segments, r.Seq)
	case !c.started:
		if r.Seq == 1 {
			if r.LogID == "" {
				return fail(KindBrokenLink, 1, "first record has no log_id")
			}
			if g := Genesis(r.LogID); r.Prev != g {
				return fail(KindBrokenLink, 1, "first record's prev is not the genesis hash of log %s", r.LogID)
			}
		}
	case r.Seq == c.seq+1:
		if r.Prev != c.hash {
			return fail(KindBrokenLink, r.Seq, "record seq %d does not link to seq %d: prev %.12s… is not its hash %.12s… (a record was replaced)", r.Seq, c.seq, r.Prev, c.hash)
		}
	case r.Seq > c.seq+1:
		return fail(KindDeleted, r.Seq, "records deleted: seq %d is followed by seq %d", c.seq, r.Seq)
	case r.Seq == c.seq:
		return fail(KindReordered, r.Seq, "record seq %d appears twice", r.Seq)
	default:
		return fail(KindReordered, r.Seq, "records out of order: seq %d comes after seq %d", r.Seq, c.seq)
	}
	if r.LogID != "" {
		c.logID = r.LogID
	}
	if c.records == 0 {
		c.first = r.Seq
	}
	c.started, c.seq, c.hash = true, r.Seq, r.Hash
	c.records++
	return cf, nil
}

// Files returns the files of the log at path, oldest first: the rotated
// files path.1, path.2, … in numeric order, then path itself if it exists.
func Files(path string) ([]string, error) {
	nums, err := rotatedNums(path)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(nums)+1)
	for _, n := range nums {
		out = append(out, rotatedName(path, n))
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}

func rotatedName(path string, n int) string { return path + "." + strconv.Itoa(n) }

// rotatedNums lists the numbers of path's rotated files, ascending.
func rotatedNums(path string) ([]int, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("audit: list rotated files: %w", err)
	}
	var nums []int
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), base+".")
		if !ok || rest == "" || rest[0] == '0' || !e.Type().IsRegular() {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n <= 0 {
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums, nil
}

// lastLine returns the last line of the file at path (without its
// newline) and its offset. ok is false when the file is empty or does not
// end with a newline.
func lastLine(path string) (b []byte, off int64, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, false, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, false, fmt.Errorf("audit: %w", err)
	}
	return lastLineAt(f, path, 0, fi.Size())
}

// lastLineAt is lastLine for the bytes from..end of r.
func lastLineAt(r io.ReaderAt, name string, from, end int64) (b []byte, off int64, ok bool, err error) {
	var tail []byte // the bytes from pos to end
	const chunk = 64 << 10
	for pos := end; ; {
		if len(tail) > 0 && tail[len(tail)-1] != '\n' {
			return nil, 0, false, nil
		}
		if i := bytes.LastIndexByte(tail[:max(len(tail)-1, 0)], '\n'); i >= 0 {
			return tail[i+1 : len(tail)-1], pos + int64(i) + 1, true, nil
		}
		if pos == from {
			if len(tail) == 0 {
				return nil, 0, false, nil
			}
			return tail[:len(tail)-1], from, true, nil
		}
		n := min(int64(chunk), pos-from)
		pos -= n
		buf := make([]byte, n, int(n)+len(tail))
		if _, err := r.ReadAt(buf, pos); err != nil {
			return nil, 0, false, fmt.Errorf("audit: read %s: %w", name, err)
		}
		tail = append(buf, tail...)
	}
}
