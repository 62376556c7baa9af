package audit

import (
	"encoding/json"
	"fmt"
	"os"
)

// Report is what Verify checked.
type Report struct {
	Files    []string // the files read, oldest first
	Records  uint64   // records whose hash and link were checked
	FirstSeq uint64   // 0 when no record was checked
	LastSeq  uint64
	LastHash string // hash of the last good record: compare it with the run state's
	LogID    string // the log_id of the first record
	// Segments are the seqs of the records that start a new chain segment
	// (written by Repair), oldest first.
	Segments []uint64
}

// Verify checks the whole log at path: the rotated files path.1, path.2, …
// in order, then the live file. It checks that every line is a JSON record,
// that the files are numbered without gaps, that seq runs 1, 2, 3, …
// without gaps or reordering across all files, that each record's hash
// matches its bytes, that each prev is the hash of the record before (the
// first one's the genesis of its log_id), and that the live file ends in a
// complete line.
//
// It stops at the first problem and returns it as a *CorruptError naming
// the file, offset, line and seq; the Report then covers the records
// before it. Other errors (a file that cannot be read) are plain errors.
// Verify alone cannot see records deleted from the end of the log; the run
// state's tail (Options.ExpectSeq) catches that.
func Verify(path string) (Report, error) {
	var rep Report
	nums, err := rotatedNums(path)
	if err != nil {
		return rep, err
	}
	// gapBefore[i] names the rotated files missing before files[i].
	var files, gapBefore []string
	want := 1
	for _, n := range nums {
		missing := ""
		if n != want {
			missing = rotatedName(path, want)
			if n-want > 1 {
				missing += " … " + rotatedName(path, n-1)
			}
		}
		files, gapBefore = append(files, rotatedName(path, n)), append(gapBefore, missing)
		want = n + 1
	}
	if _, err := os.Stat(path); err == nil {
		files, gapBefore = append(files, path), append(gapBefore, "")
	} else if len(files) == 0 {
		return rep, fmt.Errorf("audit: verify: %w", err)
	}

	c := checker{}
	var gap *CorruptError // a seq gap, waiting to learn whether the seq comes later
	var missing uint64
	var suspect *CorruptError // an invalid line, torn if it is the live file's last
	for i, file := range files {
		if gapBefore[i] != "" && gap == nil {
			return rep, &CorruptError{Kind: KindMissingFile, File: file, Seq: c.seq + 1,
				Msg: fmt.Sprintf("%s missing: the rotated files before this one are not all there (the records after seq %d are gone)", gapBefore[i], c.seq)}
		}
		rep.Files = append(rep.Files, file)
		live := i == len(files)-1 && file == path
		f, err := os.Open(file)
		if err != nil {
			return rep, fmt.Errorf("audit: verify: %w", err)
		}
		for ln, err := range fileLines(file, f, 0) {
			if err != nil {
				f.Close()
				return rep, err
			}
			if gap != nil {
				var cf chainFields
				if json.Unmarshal(ln.b, &cf) == nil && cf.Seq == missing {
					f.Close()
					gap.Kind = KindReordered
					gap.Msg = fmt.Sprintf("records out of order: seq %d comes before seq %d (%s offset %d)", gap.Seq, missing, ln.file, ln.off)
					return rep, gap
				}
				continue
			}
			if suspect != nil {
				f.Close()
				return rep, suspect
			}
			if !ln.complete {
				f.Close()
				msg := "the last line is incomplete: a write was interrupted, or the end of the log was cut; the daemon keeps its bytes in a side file and cuts it off on start if the run state does not count it, and refuses to start otherwise (see scheduler audit repair)"
				if !live {
					msg = "rotated file ends in an incomplete line"
				}
				return rep, &CorruptError{Kind: KindTorn, File: file, Offset: ln.off, Line: ln.no, Seq: c.seq + 1, Msg: msg}
			}
			cf, cerr := c.check(ln)
			if cerr != nil {
				switch {
				case cerr.Kind == KindDeleted:
					gap, missing = cerr, c.seq+1
				case live && !json.Valid(ln.b):
					suspect = cerr
				default:
					f.Close()
					return rep, cerr
				}
				continue
			}
			if c.records == 1 {
				rep.LogID = cf.LogID
				if cf.Seq != 1 {
					f.Close()
					return rep, &CorruptError{Kind: KindDeleted, File: file, Offset: ln.off, Line: ln.no, Seq: cf.Seq,
						Msg: fmt.Sprintf("the log starts at seq %d, not 1: its oldest records or files are gone", cf.Seq)}
				}
				rep.FirstSeq = cf.Seq
			}
			rep.Records, rep.LastSeq, rep.LastHash = c.records, cf.Seq, cf.Hash
		}
		f.Close()
	}
	rep.Segments = c.segments
	if gap != nil {
		return rep, gap
	}
	if suspect != nil {
		suspect.Kind = KindTorn
		suspect.Msg = "the last line is not a complete record: a write was interrupted; the daemon cuts it off when it next opens the log"
		return rep, suspect
	}
	return rep, nil
}
