package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"sort"
	"time"
)

// record is the part of an audit line the benchmark reads. It decodes the
// documented JSON contract (README "Audit log") itself rather than through
// internal/audit, so that it keeps working while that package changes.
type record struct {
	Time      string `json:"time"`
	Event     string `json:"event"`
	Job       string `json:"job"`
	RunID     string `json:"run_id"`
	Scheduled string `json:"scheduled"`
	Target    string `json:"target"`
	Attempt   int    `json:"attempt"`
	Outcome   string `json:"outcome"`
	Error     string `json:"error"`
	Detail    string `json:"detail"`
}

func (r record) time() time.Time      { t, _ := time.Parse(time.RFC3339Nano, r.Time); return t }
func (r record) scheduled() time.Time { t, _ := time.Parse(time.RFC3339Nano, r.Scheduled); return t }

// final reports whether r settles its target: its last attempt, or an
// abandon.
func (r record) final() bool {
	return (r.Event == "attempt" && r.Outcome != "retry") || r.Event == "abandon"
}

// tail reads an audit log as it grows.
type tail struct {
	path string
	off  int64
	buf  []byte
}

// next returns the complete records appended since the last call.
func (t *tail) next() ([]record, error) {
	f, err := os.Open(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(t.off, io.SeekStart); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	t.off += int64(len(b))
	t.buf = append(t.buf, b...)
	var out []record
	for {
		i := bytes.IndexByte(t.buf, '\n')
		if i < 0 {
			break
		}
		var r record
		if err := json.Unmarshal(t.buf[:i], &r); err != nil {
			return out, err
		}
		out = append(out, r)
		t.buf = t.buf[i+1:]
	}
	t.buf = append([]byte(nil), t.buf...)
	return out, nil
}

// readAudit returns every record of an audit log.
func readAudit(path string) ([]record, error) {
	t := &tail{path: path}
	return t.next()
}

// waitFor polls an audit log every millisecond until pred has returned
// true for a record appended since the last call, or timeout. It returns
// when it saw the record and the record.
func (t *tail) waitFor(ctx context.Context, timeout time.Duration, pred func(record) bool) (time.Time, record, error) {
	deadline := time.Now().Add(timeout)
	for {
		recs, err := t.next()
		seen := time.Now()
		if err != nil {
			return seen, record{}, err
		}
		for _, r := range recs {
			if pred(r) {
				return seen, r, nil
			}
		}
		if seen.After(deadline) {
			return seen, record{}, errors.New("timed out waiting for the audit record")
		}
		if err := ctx.Err(); err != nil {
			return seen, record{}, err
		}
		time.Sleep(time.Millisecond)
	}
}

// percentile returns the nearest-rank p-th percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(sorted) {
		i = len(sorted) - 1
	}
	return sorted[i]
}

func sorted(v []float64) []float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s
}
