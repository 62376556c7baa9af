package schedule

import (
	"bytes"
	"fmt"
	"reflect"
	"runtime"
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
