package schedule

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// sameJob reports how two jobs differ: every field, the zone by name, the
// schedule by its next fires, the fingerprint.
func sameJob(a, b *Job) string {
	if a.Loc.String() != b.Loc.String() {
		return fmt.Sprintf("Loc %s vs %s", a.Loc, b.Loc)
	}
	from := time.Date(2026, 3, 28, 23, 59, 58, 0, time.UTC)
	ta, tb := from, from
	for range 5 {
		ta, tb = a.Spec.Next(ta), b.Spec.Next(tb)
		if !ta.Equal(tb) {
			return fmt.Sprintf("Spec next %s vs %s", ta, tb)
		}
	}
	if a.Fingerprint() != b.Fingerprint() {
		return "fingerprint"
	}
	va, vb := reflect.ValueOf(*a), reflect.ValueOf(*b)
	for i := range va.NumField() {
		f := va.Type().Field(i)
		if !f.IsExported() || f.Name == "Loc" || f.Name == "Spec" {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			return fmt.Sprintf("%s: %+v vs %+v", f.Name, va.Field(i).Interface(), vb.Field(i).Interface())
		}
	}
	return ""
}

// loadBoth loads data with prev and without, and fails unless both give
// the same result: the same jobs (or the same problems). It returns the
// load with prev and how many of its jobs are prev's own.
func loadBoth(t *testing.T, prev *Config, data []byte) (*Config, int, error) {
	t.Helper()
	anchor := time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)
	got, gerr := Load("s.yaml", data, Options{Anchor: anchor, Prev: prev})
	want, werr := Load("s.yaml", data, Options{Anchor: anchor})
	if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
		t.Fatalf("with Prev: %v\nwithout: %v", gerr, werr)
	}
	if gerr != nil {
		return nil, 0, gerr
	}
	if len(got.Jobs) != len(want.Jobs) {
		t.Fatalf("with Prev: %d jobs, without: %d", len(got.Jobs), len(want.Jobs))
	}
	old := map[*Job]bool{}
	if prev != nil {
		for _, j := range prev.Jobs {
			old[j] = true
		}
	}
	same := 0 // prev's own
	for i := range got.Jobs {
		if d := sameJob(got.Jobs[i], want.Jobs[i]); d != "" {
			t.Fatalf("jobs[%d] (%s) with Prev differs from a fresh load: %s", i, want.Jobs[i].Name, d)
		}
		if got.Job(want.Jobs[i].Name) != got.Jobs[i] {
			t.Fatalf("Job(%q) is not jobs[%d]", want.Jobs[i].Name, i)
		}
		if old[got.Jobs[i]] {
			same++
		}
	}
	if got.Hash() != want.Hash() || !reflect.DeepEqual(got.Accounts, want.Accounts) || !reflect.DeepEqual(got.Defaults, want.Defaults) || got.Loc.String() != want.Loc.String() {
		t.Fatal("with Prev, the rest of the config differs from a fresh load")
	}
	if got.Reused() < same {
		t.Fatalf("Reused() = %d, but %d jobs are prev's own", got.Reused(), same)
	}
	return got, got.Reused(), nil
}

func atLeastTwoProcs(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		prev := runtime.GOMAXPROCS(2)
		t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	}
}

// A reload takes the unchanged chunks of a big jobs list from the running
// config, and gives exactly what a fresh load gives, for each kind of edit
// a user makes, valid or not.
func TestLoadPrevReusesUnchangedChunks(t *testing.T) {
	atLeastTwoProcs(t)
	const n = 4000
	base := bigSchedule(n)
	if len(base) < splitMinBytes {
		t.Fatalf("test schedule is %d bytes, under splitMinBytes", len(base))
	}
	if !checkSplit(t, base) {
		t.Fatal("the split does not apply")
	}
	prev, _, err := loadBoth(t, nil, base)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d chunks", len(prev.memo.chunks))
	if prev.memo == nil {
		t.Fatal("a big schedule loaded without a memo of its chunks")
	}
	job := func(i int) string { return fmt.Sprintf("  - name: job-%d\n", i) }
	// field replaces the first line of job i that starts with field.
	field := func(s string, i int, field, to string) string {
		at := strings.Index(s, job(i))
		k := at + strings.Index(s[at:], "    "+field+":")
		end := k + strings.Index(s[k:], "\n")
		return s[:k] + "    " + field + ": " + to + s[end:]
	}
	edits := []struct {
		name    string
		edit    func(s string) string
		minSame int    // jobs that must be taken from prev
		maxSame int    // at most
		problem string // in the error, when the edit is a mistake
	}{
		{"unchanged", func(s string) string { return s }, n, n, ""},
		{"one schedule changed", func(s string) string { return field(s, 2001, "schedule", `"1 2 * * *"`) }, n - 4*splitChunkItems, n - 1, ""},
		{"one target changed, last job", func(s string) string {
			return strings.Replace(s, fmt.Sprintf("[\"%d\"]", 1000000+n-1), "[\"42\", \"43\"]", 1)
		}, n - 4*splitChunkItems, n - 1, ""},
		{"a job added at the end", func(s string) string {
			return s + "  - {name: extra, schedule: \"0 9 * * *\", account: sandbox, action: scnet.notebook.start, targets: [x]}\n"
		}, n - 4*splitChunkItems, n, ""},
		{"a job removed in the middle", func(s string) string {
			i := strings.Index(s, job(2000))
			j := strings.Index(s, job(2001))
			return s[:i] + s[j:]
		}, n - 8*splitChunkItems, n - 2, ""},
		{"a comment line inserted at the top of the list", func(s string) string {
			return strings.Replace(s, "jobs:\n", "jobs:\n  # moved\n", 1)
		}, n - 4*splitChunkItems, n - 1, ""}, // each job one line down
		{"a comment added above the list", func(s string) string { // the rest's text changed: all parsed again
			return strings.Replace(s, "version: 1\n", "version: 1\n# a comment\n\n", 1)
		}, 0, 0, ""},
		{"defaults changed", func(s string) string {
			return strings.Replace(s, "timeout: 5s", "timeout: 6s", 1)
		}, 0, 0, ""},
		{"an account field added", func(s string) string {
			return strings.Replace(s, "    vendor: sandbox\n", "    vendor: sandbox\n    concurrency: 7\n", 1)
		}, 0, 0, ""},
		{"a bad schedule in a changed chunk", func(s string) string { return field(s, 3001, "schedule", `"0 25 * * *"`) }, 0, 0, "jobs[3001].schedule"},
		{"a new job named as an unchanged one", func(s string) string {
			return s + "  - {name: job-7, schedule: \"0 9 * * *\", account: sandbox, action: scnet.notebook.start, targets: [x]}\n"
		}, 0, 0, `duplicate job name "job-7"`},
		{"an unknown account in a changed chunk", func(s string) string { return field(s, 5, "account", "sandbx") }, 0, 0, `unknown account "sandbx"`},
		{"a syntax error", func(s string) string { return strings.Replace(s, job(1500), "  - name: [job-1500\n", 1) }, 0, 0, "invalid YAML"},
	}
	for _, e := range edits {
		t.Run(e.name, func(t *testing.T) {
			data := []byte(e.edit(string(base)))
			if e.name != "unchanged" && bytes.Equal(data, base) {
				t.Fatal("the edit changed nothing")
			}
			got, same, err := loadBoth(t, prev, data)
			if e.problem != "" {
				if err == nil || !strings.Contains(err.Error(), e.problem) {
					t.Fatalf("error = %v; want one naming %s", err, e.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d of %d jobs taken from the previous load", same, len(got.Jobs))
			if same < e.minSame || same > e.maxSame {
				t.Errorf("%d jobs taken from the previous load; want %d to %d", same, e.minSame, e.maxSame)
			}
			// And the next reload reuses this one's chunks in turn.
			_, again, err := loadBoth(t, got, data)
			if err != nil || again != len(got.Jobs) {
				t.Errorf("loading it once more took %d of %d jobs from it (%v)", again, len(got.Jobs), err)
			}
		})
	}
}

// A chunk's nodes count towards the alias budget of the file when it is
// taken as it is, as when it is parsed.
func TestLoadPrevKeepsTheAliasBudget(t *testing.T) {
	atLeastTwoProcs(t)
	var b strings.Builder
	b.Write(bigSchedule(3000))
	b.WriteString("  - name: bomb\n    schedule: \"0 9 * * *\"\n    account: sandbox\n    action: scnet.notebook.start\n    targets: &t [a, b, c, d, e, f, g, h]\n")
	base := []byte(b.String())
	d, ok := splitParse(base, 2, splitMinItems, nil)
	if !ok {
		t.Fatal("the split does not apply")
	}
	written, fe := checkAliases("s.yaml", d.root)
	if fe != nil || written != d.written {
		t.Fatalf("the split counts %d nodes written, a count of its tree %d (%v)", d.written, written, fe)
	}
	prev, _, err := loadBoth(t, nil, base)
	if err != nil {
		t.Fatal(err)
	}
	// Aliases in the last chunk that expand past the budget for the whole
	// file: refused with prev, where the unchanged chunks count their
	// nodes without being parsed, as without.
	budget := aliasFactor * d.written
	var bomb strings.Builder
	bomb.WriteString(string(base))
	bomb.WriteString("  - name: bomb2\n    schedule: \"0 9 * * *\"\n    account: sandbox\n    action: scnet.notebook.start\n    targets: [x]\n    note: &l0 [a, a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&bomb, "    n%d: &l%d [*l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d, *l%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	if 10e8 < float64(budget) {
		t.Fatalf("the bomb (1e9 nodes) is under the budget %d", budget)
	}
	_, _, err = loadBoth(t, prev, []byte(bomb.String()))
	if err == nil || !strings.Contains(err.Error(), "expands aliases too much") {
		t.Fatalf("error = %v; want the alias budget", err)
	}
}

// smallSplits makes every schedule of a few entries load through the split,
// in content-defined chunks of 2 to 16 entries, for the rest of the test.
func smallSplits(t *testing.T) {
	atLeastTwoProcs(t)
	b, i, c := splitMinBytes, splitMinItems, splitChunkItems
	splitMinBytes, splitMinItems, splitChunkItems = 0, 1, 4
	t.Cleanup(func() { splitMinBytes, splitMinItems, splitChunkItems = b, i, c })
}

// FuzzLoadPrev loads a, then b with a's Config as Prev, and fails unless
// that gives what a fresh load of b gives (see loadBoth). Files split in
// small chunks, so that a few entries exercise every path: chunks taken as
// they are, moved, parsed again, and problems in any of them.
func FuzzLoadPrev(f *testing.F) {
	small := string(bigSchedule(40))
	edits := []func(string) string{
		func(s string) string { return s },
		func(s string) string { return strings.Replace(s, "job-17\n", "job-17b\n", 1) },
		func(s string) string {
			return strings.Replace(s, "  - name: job-20\n", "  # gone\n  - name: job-20\n", 1)
		},
		func(s string) string {
			return strings.Replace(s, "  - name: job-3\n", "  - name: job-3x\n    schedule: \"@hourly\"\n    account: sandbox\n    action: scnet.notebook.start\n    targets: [\"a\"]\n  - name: job-3\n", 1)
		},
		func(s string) string { return strings.Replace(s, "\"1000030\"", "\"1000031\"", 1) },
		func(s string) string { return strings.Replace(s, "timeout: 5s", "timeout: 7s", 1) },
		func(s string) string { return strings.Replace(s, "job-33\n", "job-2\n", 1) },
		func(s string) string {
			return strings.Replace(s, "account: sandbox\n    action: cdss", "account: nobody\n    action: cdss", 1)
		},
		func(s string) string {
			return s + "  - {name: tail, schedule: \"@daily\", account: sandbox, action: scnet.notebook.start, targets: [t]}\n"
		},
		func(s string) string { return s[:strings.Index(s, "  - name: job-39\n")] },
		func(s string) string { return strings.Replace(s, "  - name: job-8\n", "  - &x\n    name: job-8\n", 1) },
	}
	for _, e := range edits {
		f.Add([]byte(small), []byte(e(small)))
	}
	anchor := time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, a, b []byte) {
		smallSplits(t)
		prev, err := Load("s.yaml", a, Options{Anchor: anchor})
		if err != nil {
			return
		}
		loadBoth(t, prev, b)
	})
}

// TestLoadPrevRandomEdits is FuzzLoadPrev on seeded random edits of a small
// schedule (and of its edit): bytes changed, cut and copied elsewhere.
func TestLoadPrevRandomEdits(t *testing.T) {
	smallSplits(t)
	small := bigSchedule(40)
	r := rand.New(rand.NewPCG(10, uint64(len(small))))
	// mutate makes mostly edits a user makes (a job removed, copied under
	// a new name, moved, a schedule or target changed, a comment added),
	// and now and then bytes changed, cut or copied anywhere.
	copies := 0
	mutate := func(b []byte) []byte {
		lines := strings.SplitAfter(string(b), "\n")
		entries := func() []int { // indexes of "  - " lines
			var at []int
			for i, l := range lines {
				if strings.HasPrefix(l, "  - ") {
					at = append(at, i)
				}
			}
			return at
		}
		entry := func() (int, int) { // a random entry's lines [lo, hi)
			at := entries()
			if len(at) == 0 {
				return 0, 0
			}
			k := r.IntN(len(at))
			hi := len(lines)
			if k+1 < len(at) {
				hi = at[k+1]
			}
			return at[k], hi
		}
		for range 1 + r.IntN(3) {
			switch op := r.IntN(8); op {
			case 0: // bytes
				b := []byte(strings.Join(lines, ""))
				i := r.IntN(len(b))
				switch r.IntN(3) {
				case 0:
					b[i] = "abc -:\n #&*[]{}"[r.IntN(15)]
				case 1:
					b = append(b[:i], b[min(len(b), i+1+r.IntN(20)):]...)
				case 2:
					j := r.IntN(len(b))
					b = slices.Insert(b, i, slices.Clone(b[j:min(len(b), j+r.IntN(80))])...)
				}
				lines = strings.SplitAfter(string(b), "\n")
			case 1: // remove a job
				lo, hi := entry()
				lines = slices.Delete(lines, lo, hi)
			case 2: // a comment
				i := r.IntN(len(lines))
				lines = slices.Insert(lines, i, "  # note\n")
			case 3: // copy a job under a new name, elsewhere
				lo, hi := entry()
				c := slices.Clone(lines[lo:hi])
				if len(c) > 0 {
					copies++
					if r.IntN(4) > 0 { // else a duplicate name
						c[0] = strings.Replace(c[0], "name: ", fmt.Sprintf("name: copy%d-", copies), 1)
					}
					at := entries()
					if len(at) > 0 {
						lines = slices.Insert(lines, at[r.IntN(len(at))], c...)
					}
				}
			case 4, 5: // a target or a schedule changed
				lo, hi := entry()
				for i := lo; i < hi; i++ {
					switch {
					case op == 4 && strings.Contains(lines[i], "targets:"):
						lines[i] = fmt.Sprintf("    targets: [\"%d\"]\n", r.IntN(1000))
					case op == 5 && strings.Contains(lines[i], "schedule:"):
						lines[i] = []string{"    schedule: \"@hourly\"\n", "    schedule: \"5 4 * * *\"\n", "    schedule: \"@every 2m\"\n"}[r.IntN(3)]
					}
				}
			default: // move a job
				lo, hi := entry()
				c := slices.Clone(lines[lo:hi])
				lines = slices.Delete(lines, lo, hi)
				if at := entries(); len(at) > 0 {
					lines = slices.Insert(lines, at[r.IntN(len(at))], c...)
				}
			}
		}
		return []byte(strings.Join(lines, ""))
	}
	anchor := time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)
	rounds, valid, reused := 1500, 0, 0
	if testing.Short() {
		rounds = 300
	}
	for range rounds {
		a := small
		if r.IntN(2) == 0 {
			a = mutate(small)
		}
		prev, err := Load("s.yaml", a, Options{Anchor: anchor})
		if err != nil {
			continue
		}
		got, _, err := loadBoth(t, prev, mutate(a))
		if err == nil {
			valid++
			if got.Reused() > 0 {
				reused++
			}
		}
	}
	t.Logf("%d rounds: %d edits loaded, %d of them taking jobs from the previous load", rounds, valid, reused)
	if reused < valid/3 {
		t.Errorf("only %d of %d loads took jobs from the previous one", reused, valid)
	}
}
