package schedule

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"gopkg.in/yaml.v3"
)

// Options tunes Load.
type Options struct {
	// Resolver reads secrets when CheckSecrets is set.
	Resolver secret.Resolver
	// CheckSecrets makes Load resolve every secret reference and report
	// those that do not resolve (unset variable, missing or group-readable
	// file, missing credential). The values are read and dropped.
	CheckSecrets bool
	// Anchor is the instant @every schedules count from (the daemon's
	// start, or `next --from`); zero means Now().
	Anchor time.Time
	// Now is the clock used for a zero Anchor; nil means time.Now.
	Now func() time.Time
	// Dir is the directory a relative audit.path or state.dir is resolved
	// against. LoadFile sets it to the absolute directory of the file; with
	// Load and an empty Dir, relative paths are kept as written (relative
	// to the process's working directory).
	Dir string
	// Prev is a Config loaded earlier from the same file (a reload passes
	// the running one). When the file is large enough to be parsed in
	// chunks (see parseSplit) and nothing outside its jobs list changed,
	// the entries of each chunk whose text and first line are unchanged
	// are taken as the Jobs Prev holds, not parsed and checked again: a
	// reload that changes one job of 10 000 parses a few hundred. The
	// result is the Config a load without Prev gives, with the same *Job
	// for each such entry, except that an @every schedule keeps Prev's
	// anchor (the grid the daemon runs it on). Prev is only read; with
	// any problem in the file, Load starts again without it, so that its
	// report is the one a load without Prev gives.
	Prev *Config
}

// LoadFile reads and loads the schedule file at path; see Load. A relative
// audit.path or state.dir is resolved against the file's directory, so a
// schedule means the same wherever the daemon is started from.
func LoadFile(path string, opts Options) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load schedule: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > MaxFileBytes {
		return nil, tooBig(path, fi.Size())
	}
	// A file that grows while it is read is bounded too.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("load schedule: %w", err)
	}
	if opts.Dir == "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("load schedule: %w", err)
		}
		opts.Dir = filepath.Dir(abs)
	}
	return Load(path, data, opts)
}

// Load decodes, defaults and validates the schedule data; name is the file
// name used in messages. On any problem it returns a nil Config and a
// Problems error listing every problem found, sorted by position; each
// unwraps to a *FieldError.
func Load(name string, data []byte, opts Options) (*Config, error) {
	return load(name, data, opts, false)
}

// load is Load; clean selects the walker's clean mode, which decodes a
// clean copy of the tree with Node.Decode instead of filling the Config as
// it walks. Both give the same result (TestFillMatchesDecode); the fast
// mode goes over to the clean mode for what it does not mirror.
func load(name string, data []byte, opts Options, clean bool) (*Config, error) {
	if len(data) > MaxFileBytes {
		return nil, tooBig(name, int64(len(data)))
	}
	sum := sha256.Sum256(data)
	var prev *splitMemo
	if opts.Prev != nil && !clean {
		prev = opts.Prev.memo
	}
	root, nodes, sd, perr := parseDoc(name, data, prev)
	if perr != nil {
		return nil, Problems{perr}
	}
	again := func() (*Config, error) {
		opts.Prev = nil
		return load(name, data, opts, clean)
	}
	var w *walker
	var cfg *Config
	var reuse []*Job
	if sd != nil && sd.reused > 0 {
		reuse = sd.reuse
		w, cfg = newWalker(name, nodes, false), &Config{}
		w.reuse = reuse
		w.walk(nil, root, configType, reflect.ValueOf(cfg).Elem())
		if w.slow || len(w.probs) > 0 || len(cfg.Jobs) != len(reuse) {
			return again()
		}
	} else {
		w, cfg = decodeTree(name, root, nodes, clean)
	}
	cfg.File = name
	cfg.hash = hex.EncodeToString(sum[:])
	if sd != nil {
		cfg.reused = sd.reused
	}

	applyDefaults(cfg, reuse)
	anchor := opts.Anchor
	if anchor.IsZero() {
		now := opts.Now
		if now == nil {
			now = time.Now
		}
		anchor = now()
	}
	v := &validator{w: w, c: cfg, opts: opts, anchor: anchor, reuse: reuse}
	v.run()
	if probs := append(w.probs, v.probs...); len(probs) > 0 {
		if reuse != nil {
			return again()
		}
		return nil, sortProblems(probs)
	}
	if opts.Dir != "" {
		if !filepath.IsAbs(cfg.Audit.Path) {
			cfg.Audit.Path = filepath.Join(opts.Dir, cfg.Audit.Path)
		}
		if !filepath.IsAbs(cfg.State.Dir) {
			cfg.State.Dir = filepath.Join(opts.Dir, cfg.State.Dir)
		}
	}
	accts := make(map[string]json.RawMessage, len(cfg.Accounts))
	cfg.byName = make(map[string]*Job, len(cfg.Jobs))
	fp := fingerprinter{b: make([]byte, 0, 512)}
	for i, j := range cfg.Jobs {
		cfg.byName[j.Name] = j
		if i < len(reuse) && reuse[i] == j {
			continue // Prev's, and the same: its account did not change
		}
		acct, ok := accts[j.Account]
		if !ok {
			acct = accountJSON(cfg.Accounts[j.Account])
			accts[j.Account] = acct
		}
		j.fingerprint = fp.sum(j, acct)
	}
	if sd != nil && sd.memo != nil && !w.clean && len(cfg.Jobs) == totalItems(sd.memo) {
		cfg.memo = sd.memo
		for i := range cfg.memo.chunks {
			c := &cfg.memo.chunks[i]
			if c.start+c.items > len(cfg.Jobs) {
				cfg.memo = nil // cannot happen: each entry is a job
				break
			}
			c.jobs = cfg.Jobs[c.start : c.start+c.items : c.start+c.items]
		}
	}
	return cfg, nil
}

// Reused is how many of the jobs Load took from Options.Prev as they were
// instead of parsing and checking them again.
func (c *Config) Reused() int { return c.reused }

func totalItems(m *splitMemo) int {
	n := 0
	for _, c := range m.chunks {
		n += c.items
	}
	return n
}

// decodeTree walks the document root, which writes nodes nodes, and
// decodes it into a Config; see walker.
func decodeTree(name string, root *yaml.Node, nodes int, clean bool) (*walker, *Config) {
	w := newWalker(name, nodes, clean)
	cfg := &Config{}
	if !clean {
		w.walk(nil, root, configType, reflect.ValueOf(cfg).Elem())
		if !w.slow {
			return w, cfg
		}
		w, cfg = newWalker(name, nodes, true), &Config{}
	}
	if c := w.walk(nil, root, configType, reflect.Value{}); c != nil {
		// Decode the walker's copy of the tree: the parsed file with its
		// aliases written out (checkAliases bounded them) and without
		// the nodes the walker reported, so that the semantic checks
		// still run and every problem is reported in one go. The walker
		// rejects unknown and duplicate fields and every value the
		// decoder would refuse; an error here only loses later checks.
		if err := c.Decode(cfg); err != nil {
			w.probs = append(w.probs, w.translate(err)...)
		}
	}
	return w, cfg
}

var configType = reflect.TypeFor[Config]()

// Job returns the job called name, or nil. It costs the same with 10 jobs
// or 100 000 in a Config that Load returned.
func (c *Config) Job(name string) *Job {
	if c.byName != nil {
		return c.byName[name]
	}
	for _, j := range c.Jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// Hash returns the hex SHA-256 of the file bytes the Config was loaded
// from. A reload whose bytes hash the same can be skipped.
func (c *Config) Hash() string { return c.hash }

// Fingerprint returns a hex digest of everything that decides the job's
// behaviour: name, schedule, zone, account (its name and settings, secret
// references included but not their positions), action, targets and the
// effective policy. Two loads give a job the same fingerprint exactly when
// a reload can keep it running unchanged.
func (j *Job) Fingerprint() string {
	if j.fingerprint == "" {
		return fingerprint(j, nil)
	}
	return j.fingerprint
}

// fingerprint hashes a canonical binary form of j, every field
// length-prefixed, followed by acct, the form of its account (see
// accountJSON; computed once per account), or of no account when acct is
// nil. Fingerprints live only in memory (a reload compares them), so the
// form may change between versions; it avoids reflection, which made the
// fingerprints a sixth of the load of a large file.
func fingerprint(j *Job, acct json.RawMessage) string {
	var fp fingerprinter
	return fp.sum(j, acct)
}

// fingerprinter computes fingerprints in a buffer it keeps: one for all
// the jobs of a load.
type fingerprinter struct{ b []byte }

func (fp *fingerprinter) str(s string) {
	fp.b = binary.AppendUvarint(fp.b, uint64(len(s)))
	fp.b = append(fp.b, s...)
}

func (fp *fingerprinter) num(v int64) { fp.b = binary.AppendVarint(fp.b, v) }

// sum returns the fingerprint of j with acct; see fingerprint.
func (fp *fingerprinter) sum(j *Job, acct json.RawMessage) string {
	zone := ""
	if j.Loc != nil {
		zone = j.Loc.String()
	}
	fp.b = fp.b[:0]
	fp.str(j.Name)
	fp.str(j.Schedule)
	fp.str(zone)
	fp.str(j.Account)
	fp.str(j.Action)
	fp.num(int64(len(j.Targets)))
	for _, t := range j.Targets {
		fp.str(t)
	}
	fp.num(int64(j.TimeoutD))
	fp.num(int64(j.CatchupD))
	fp.num(int64(j.VerifyTimeoutD))
	r := j.Backoff
	fp.num(int64(r.InitialInterval))
	fp.num(int64(r.MaxInterval))
	fp.num(int64(r.MaxElapsed))
	fp.num(int64(r.MaxAttempts))
	fp.str(j.Overlap)
	if j.Verify != nil && *j.Verify {
		fp.b = append(fp.b, 1)
	} else {
		fp.b = append(fp.b, 0)
	}
	if acct == nil {
		acct = json.RawMessage("null")
	}
	fp.b = append(fp.b, acct...)
	sum := sha256.Sum256(fp.b)
	var hexSum [2 * sha256.Size]byte
	hex.Encode(hexSum[:], sum[:])
	return string(hexSum[:])
}

// accountJSON is the canonical JSON form of a, part of the fingerprint of
// each of its jobs: computed once per account, embedded as is. A nil a
// gives nil.
func accountJSON(a *Account) json.RawMessage {
	if a == nil {
		return nil
	}
	type ref struct{ Env, File, Credential string }
	canon := func(r *secret.Ref) *ref {
		if r == nil {
			return nil
		}
		return &ref{r.Env, r.File, r.Credential}
	}
	b, err := json.Marshal(struct {
		Vendor, Region, Domain, Cluster, ProjectID, Auth, API string
		AccessKey, SecretKey, Token, User, Username, Password *ref
		Endpoints                                             map[string]string
		RateLimit                                             *RateLimit
		Concurrency                                           int
		Faults                                                []Fault
	}{
		a.Vendor, a.Region, a.Domain, a.Cluster, a.ProjectID, a.Auth, a.API,
		canon(a.AccessKey), canon(a.SecretKey), canon(a.Token), canon(a.User), canon(a.Username), canon(a.Password),
		a.Endpoints, a.RateLimit, a.Concurrency, a.Faults,
	})
	if err != nil {
		panic("schedule: fingerprint: " + err.Error()) // plain data; cannot fail
	}
	return b
}
