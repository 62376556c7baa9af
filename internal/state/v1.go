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
)

// The run state of scheduler versions before the embedded store: one JSON
// file, state.json, rewritten whole on every change. Open migrates it into
// state.db on first start and leaves a marker file in its place (see
// stubV1) that older binaries refuse to start with.

// FormatV1 is the format marker of the old state file.
const FormatV1 = "scheduler-state/v1"

// File names of the old state.
const (
	FileNameV1   = "state.json"
	movedV1Name  = "state.json.v1"
	tempPrefix   = FileNameV1 + ".tmp-"
	checksumAlgo = "sha256:"
)

// auditTail is the audit log's last record as known to the run state.
type auditTail struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// dataV1 is the checksummed content of the old state file.
type dataV1 struct {
	Audit auditTail            `json:"audit"`
	Jobs  map[string]*JobState `json:"jobs"`
}

// envelopeV1 is the old state file.
type envelopeV1 struct {
	Format   string          `json:"format"`
	Checksum string          `json:"checksum"`
	State    json.RawMessage `json:"state"`
	Note     string          `json:"note,omitempty"`
}

// stubV1 replaces state.json once it is migrated: its format marker is
// Format, which an older binary refuses ("format ...; this scheduler reads
// scheduler-state/v1") instead of starting with empty run state and
// repeating fires.
func stubV1() []byte {
	b, _ := json.MarshalIndent(envelopeV1{
		Format: Format,
		Note: "the run state moved to " + FileName + " in this folder (bbolt); " +
			"this file only stops older scheduler binaries from starting with empty run state; " +
			"the old content is kept in " + movedV1Name,
	}, "", "  ")
	return append(b, '\n')
}

// loadV1 reads an old state file. present is false when there is none;
// migrated is true when it is the marker stubV1 wrote.
func loadV1(path string) (d *dataV1, present, migrated bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, false, nil
	}
	if err != nil {
		return nil, true, false, fmt.Errorf("state: read %s: %w", path, err)
	}
	corrupt := func(format string, args ...any) error {
		return &FileError{Path: path, Problem: fmt.Sprintf(format, args...), Kind: ErrCorrupt}
	}
	foreign := func(format string, args ...any) error {
		return &FileError{Path: path, Problem: fmt.Sprintf(format, args...), Kind: ErrForeign}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, true, false, corrupt("file is empty (%d bytes)", len(b))
	}
	var env envelopeV1
	if err := json.Unmarshal(b, &env); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) { // truncation is a SyntaxError too
			return nil, true, false, corrupt("not valid JSON (truncated or damaged): %v", err)
		}
		return nil, true, false, foreign("not a scheduler state file (%v)", err)
	}
	switch {
	case env.Format == Format:
		return nil, true, true, nil
	case env.Format == "":
		return nil, true, false, foreign("no format marker; a scheduler state file starts with \"format\": %q", FormatV1)
	case env.Format != FormatV1:
		return nil, true, false, foreign("format %q; this scheduler reads %q and %q", env.Format, FormatV1, Format)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, env.State); err != nil || len(env.State) == 0 {
		return nil, true, false, corrupt("no state content")
	}
	if want := checksum(compact.Bytes()); env.Checksum != want {
		return nil, true, false, corrupt("checksum mismatch (file says %q, content hashes to %q): edited or damaged", env.Checksum, want)
	}
	d = &dataV1{}
	dec := json.NewDecoder(bytes.NewReader(compact.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(d); err != nil {
		return nil, true, false, corrupt("invalid content: %v", err)
	}
	if d.Jobs == nil {
		d.Jobs = map[string]*JobState{}
	}
	for name, js := range d.Jobs {
		if name == "" || js == nil {
			return nil, true, false, corrupt("invalid content: empty job entry")
		}
		for _, in := range js.InFlight {
			if in.RunID == "" || in.Scheduled.IsZero() {
				return nil, true, false, corrupt("invalid content: job %q has an in-flight entry without run_id or scheduled", name)
			}
		}
	}
	return d, true, false, nil
}

func checksum(b []byte) string {
	sum := sha256.Sum256(b)
	return checksumAlgo + hex.EncodeToString(sum[:])
}

// encodeV1 renders d as an old state file (for tests of the migration).
func encodeV1(d *dataV1) ([]byte, error) {
	body, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(envelopeV1{Format: FormatV1, Checksum: checksum(body), State: body}, "", "  ")
	return append(out, '\n'), err
}

// fsync makes f (a file or a folder) durable: (*os.File).Sync, replaced
// in tests to observe or fail it. bbolt fsyncs state.db itself on every
// commit (the store never sets NoSync).
var fsync = (*os.File).Sync

// writeFileSync writes b to path crash-safely: a temporary file in the
// same folder, fsync, rename, fsync of the folder.
func writeFileSync(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if _, err := f.Write(b); err != nil {
		return fail(err)
	}
	if err := fsync(f); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := fsync(d); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// removeLeftovers deletes temporary files a crash left between writing
// and renaming; it runs under the lock, so none is being written.
func removeLeftovers(dir string) ([]string, error) {
	var out []string
	for _, pat := range []string{tempPrefix + "*", auditTailName + ".tmp-*"} {
		matches, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
		for _, m := range matches {
			if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("state: remove leftover temporary file: %w", err)
			}
		}
		out = append(out, matches...)
	}
	return out, nil
}
