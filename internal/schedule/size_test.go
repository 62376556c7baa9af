package schedule

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// bigSchedule returns a schedule of n one-target jobs on a sandbox account,
// as configs/demo.yaml writes them, with a mix of cron specs, descriptors
// and @every intervals.
func bigSchedule(n int) []byte {
	specs := []string{`"0 9 * * MON-FRI"`, `"*/5 * * * *"`, `"0,20,40 * * * * *"`, `"@every 15s"`, `"@daily"`, `"30 3 1 * *"`}
	actions := []string{"modelarts.notebook.start", "modelarts.notebook.stop", "scnet.notebook.start", "cdss.cmak.restart", "dataforest.notebook.restart"}
	var b strings.Builder
	b.Grow(n * 150)
	b.WriteString("version: 1\ntimezone: UTC\naudit:\n  path: audit.jsonl\nstate:\n  dir: state\n")
	b.WriteString("defaults:\n  timeout: 5s\n  retry: {initial_interval: 500ms, max_interval: 2s, max_elapsed: 8s, max_attempts: 4}\n")
	b.WriteString("accounts:\n  sandbox:\n    vendor: sandbox\njobs:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: job-%d\n    schedule: %s\n    account: sandbox\n    action: %s\n    targets: [\"%d\"]\n",
			i, specs[i%len(specs)], actions[i%len(actions)], 1000000+i)
		if i%7 == 0 {
			b.WriteString("    timezone: Europe/Berlin\n")
		}
	}
	return []byte(b.String())
}

// TestLoadManyJobs loads an honest file of 10 000 jobs, and of 100 000
// unless -short (about 20 s under -race on 2 cores): the alias-bomb guard
// must not bound the size of a file.
func TestLoadManyJobs(t *testing.T) {
	sizes := []int{10000}
	if !testing.Short() {
		sizes = append(sizes, 100000)
	}
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "schedule.yaml")
			if err := os.WriteFile(path, bigSchedule(n), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadFile(path, Options{Anchor: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)})
			if err != nil {
				t.Fatalf("LoadFile(%d jobs) error:\n%.2000v", n, err)
			}
			if len(cfg.Jobs) != n {
				t.Fatalf("LoadFile(%d jobs) = %d jobs", n, len(cfg.Jobs))
			}
			last := cfg.Jobs[n-1]
			if want := fmt.Sprint("job-", n-1); last.Name != want || last.Spec == nil || last.Loc == nil || last.Fingerprint() == "" {
				t.Errorf("last job = %+v; want %s, complete", last, want)
			}
			if j := cfg.Job("job-4711"); j == nil || j.Name != "job-4711" || j.Targets[0] != "1004711" || cfg.Job("job-x") != nil {
				t.Errorf(`Job("job-4711") = %+v; want that job, and Job("job-x") = nil`, j)
			}
		})
	}
}

// TestLoadManyProblems checks that a big file with a problem in every job
// reports each one: every job repeats the first one's name and names a
// misspelt account.
func TestLoadManyProblems(t *testing.T) {
	const n = 2000
	data := strings.ReplaceAll(string(bigSchedule(n)), "account: sandbox", "account: sandbx")
	data = regexp.MustCompile(`name: job-\d+`).ReplaceAllString(data, "name: job")
	_, err := Load("same.yaml", []byte(data), Options{})
	if err == nil {
		t.Fatal("Load = nil error; want every duplicate name and unknown account")
	}
	dups, accounts := 0, 0
	for _, fe := range problemsOf(t, err) {
		switch {
		case strings.Contains(fe.Msg, `duplicate job name "job"; first defined at line 14`):
			dups++
		case strings.Contains(fe.Msg, `unknown account "sandbx"; did you mean "sandbox"?`):
			accounts++
		}
	}
	if dups != n-1 || accounts != n {
		t.Errorf("Load reported %d duplicate names and %d unknown accounts; want %d and %d", dups, accounts, n-1, n)
	}
}

func benchmarkLoad(b *testing.B, n int) {
	data := bigSchedule(n)
	opts := Options{Anchor: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := Load("schedule.yaml", data, opts)
		if err != nil {
			b.Fatalf("Load: %.2000v", err)
		}
		if len(cfg.Jobs) != n {
			b.Fatalf("Load = %d jobs; want %d", len(cfg.Jobs), n)
		}
	}
}

func BenchmarkLoad10000(b *testing.B)  { benchmarkLoad(b, 10000) }
func BenchmarkLoad100000(b *testing.B) { benchmarkLoad(b, 100000) }

// TestAliasBombRefused checks that documents whose aliases expand without
// bound are refused with one problem that names the alias where the
// expansion passes the limit and says what to do. The generated bomb would
// write 9^40 strings: it is refused without being expanded.
func TestAliasBombRefused(t *testing.T) {
	var deep strings.Builder
	deep.WriteString("version: 1\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 40; i++ {
		fmt.Fprintf(&deep, "l%d: &l%d [", i, i)
		for k := range 9 {
			if k > 0 {
				deep.WriteString(", ")
			}
			fmt.Fprintf(&deep, "*l%d", i-1)
		}
		deep.WriteString("]\n")
	}
	deep.WriteString("jobs: *l40\n")
	tests := []struct {
		name, want string
		data       []byte
	}{
		{"billion-laughs.yaml", "billion-laughs.yaml:6:29: document expands aliases too much: they reach more than 65536 nodes for 100 written", nil},
		{"nested-alias.yaml", "nested-alias.yaml:226:5: document expands aliases too much", nil},
		{"deep.yaml", "deep.yaml:6:45: document expands aliases too much", []byte(deep.String())},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.data
			if data == nil {
				var err error
				if data, err = os.ReadFile(filepath.Join("testdata", tc.name)); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(tc.name, data, Options{})
			if err == nil {
				t.Fatalf("Load(%s) = nil error; want the alias bomb refused", tc.name)
			}
			probs := problemsOf(t, err)
			if len(probs) != 1 || !strings.HasPrefix(err.Error(), tc.want) || !strings.Contains(err.Error(), "write the repeated values out") {
				t.Errorf("Load(%s) error =\n%v\nwant one problem starting %q that says to write the repeated values out", tc.name, err, tc.want)
			}
		})
	}
}

// TestAliasBudgetGrowsWithFile checks that the limit on alias expansion is
// relative to the file: 1 500 jobs that share one anchored list of 60
// targets reach more than 65 536 nodes through aliases, but fewer than ten
// times what the file writes, and load.
func TestAliasBudgetGrowsWithFile(t *testing.T) {
	const n, fleet = 1500, 60
	var b strings.Builder
	b.WriteString("version: 1\naudit: {path: audit.jsonl}\nstate: {dir: state}\naccounts:\n  lab: {vendor: sandbox}\njobs:\n")
	b.WriteString("  - {name: job-0, schedule: \"@daily\", account: lab, action: cdss.cmak.restart, targets: &fleet [")
	for i := range fleet {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "\"%d\"", i+1)
	}
	b.WriteString("]}\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "  - {name: job-%d, schedule: \"@daily\", account: lab, action: cdss.cmak.restart, targets: *fleet}\n", i)
	}
	cfg, err := Load("fleet.yaml", []byte(b.String()), Options{})
	if err != nil {
		t.Fatalf("Load(%d jobs sharing &fleet) error:\n%.2000v", n, err)
	}
	last := cfg.Jobs[len(cfg.Jobs)-1]
	if len(cfg.Jobs) != n || len(last.Targets) != fleet || last.Targets[fleet-1] != fmt.Sprint(fleet) {
		t.Errorf("Load = %d jobs, the last with targets %v; want %d jobs with the %d fleet targets", len(cfg.Jobs), last.Targets, n, fleet)
	}
}
