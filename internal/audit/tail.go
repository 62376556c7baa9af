package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// tailChunk is how much Newest reads at a time, from the end of a file.
const tailChunk = 256 << 10

// TailRead says how much of the log Newest read.
type TailRead struct {
	Bytes   int64 // bytes read
	Files   int   // files opened, the live file included
	Records int   // records handed to fn
	Skipped int   // lines that were not records (a torn last line, a damaged line)
	Stopped bool  // fn asked to stop (not the budget, not the log's start)
}

// Newest calls fn with the records of the log at path, newest first: the
// live file from its end, then the rotated files, newest first (see
// Files). It stops when fn returns false, at the log's first record, or
// once it has read maxBytes bytes (the lines a read brings in are still
// given); so a large or long-rotated log costs what its tail costs. Lines
// that are not records (an incomplete last line, a damaged line) are
// skipped and counted: Newest is for views of the log, Verify checks it.
// A log that does not exist yet has no records.
func Newest(path string, maxBytes int64, fn func(Record) bool) (TailRead, error) {
	var tr TailRead
	files, err := Files(path)
	if err != nil {
		return tr, err
	}
	for _, name := range slices.Backward(files) {
		if tr.Bytes >= maxBytes {
			return tr, nil
		}
		more, err := newestInFile(name, maxBytes, &tr, fn)
		if err != nil {
			return tr, err
		}
		if !more {
			return tr, nil
		}
	}
	return tr, nil
}

// newestInFile is Newest for one file. It reports whether to go on to the
// file before it.
func newestInFile(name string, maxBytes int64, tr *TailRead, fn func(Record) bool) (bool, error) {
	if fi, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
		return true, nil // rotated or removed meanwhile
	} else if err != nil {
		return false, fmt.Errorf("audit: %w", err)
	} else if !fi.Mode().IsRegular() {
		return false, nil // a device or a pipe (audit.path: /dev/stdout) has no past to read
	}
	f, err := os.Open(name)
	if err != nil {
		return false, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("audit: %w", err)
	}
	tr.Files++
	pos := fi.Size()
	var carry []byte // the start of the file's bytes after pos: a line not yet complete backwards
	seenEnd, torn := false, false
	for pos > 0 {
		if tr.Bytes >= maxBytes {
			return false, nil
		}
		n := min(int64(tailChunk), pos)
		pos -= n
		buf := make([]byte, n, int(n)+len(carry))
		if _, err := f.ReadAt(buf, pos); err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("audit: read %s: %w", name, err)
		}
		tr.Bytes += n
		data := append(buf, carry...)
		if !seenEnd {
			// An incomplete last line (a write in progress, or torn): not
			// a record, however many chunks it spans.
			i := bytes.LastIndexByte(data, '\n')
			if i != len(data)-1 && !torn {
				torn = true
				tr.Skipped++
			}
			data, seenEnd = data[:i+1], i >= 0
		}
		// data ends with a newline (or is empty); hand out its lines from
		// the end, keeping the first one unless pos is the file's start.
		end := len(data)
		for end > 0 {
			i := bytes.LastIndexByte(data[:end-1], '\n')
			if i < 0 && pos > 0 {
				break
			}
			line := data[i+1 : end-1]
			end = i + 1
			if len(line) == 0 {
				continue
			}
			var r Record
			if err := json.Unmarshal(line, &r); err != nil {
				tr.Skipped++
				continue
			}
			tr.Records++
			if !fn(r) {
				tr.Stopped = true
				return false, nil
			}
		}
		carry = data[:end]
	}
	return true, nil
}
