package schedule

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// richSchedule sets every kind of value the walker fills: accounts of each
// vendor with endpoints, rate limits and faults, jobs with every policy
// field, windows with both kinds of holidays, http, notify and cluster.
const richSchedule = `version: 1
timezone: Europe/Berlin
audit: {path: audit.jsonl, watchdog_after: 5m}
state: {dir: state}
defaults:
  timeout: 30s
  retry: {initial_interval: 1s, max_interval: 1m, max_elapsed: 10m, max_attempts: 8}
  catchup: 1h
  overlap: skip
  verify: false
  verify_timeout: 10m
accounts:
  lab:
    vendor: sandbox
    concurrency: 2
    rate_limit: {per_second: 2.5, burst: 4}
    faults:
      - {target: nb-1, action: modelarts.notebook.start, kind: throttle, times: 2, retry_after: 2s}
      - {kind: delay, delay: 45s}
  ncp:
    vendor: ncp
    region: KR
    access_key: {env: AK}
    secret_key: {file: /etc/sk}
    endpoints: {dataforest: "https://df.example.com", cdss: "https://cdss.example.com"}
    insecure_http: false
  otc:
    vendor: otc
    project_id: 0123456789abcdef0123456789abcdef
    auth: iam
    username: {env: U}
    password: {credential: p}
    domain: D
jobs:
  - name: a
    schedule: "0 9 * * MON-FRI"
    timezone: Asia/Seoul
    account: lab
    action: modelarts.notebook.start
    targets: [nb-1, nb-2]
    timeout: 1m
    retry: {max_attempts: 3, initial_interval: 2s}
    catchup: 0s
    overlap: queue
    verify: true
    verify_timeout: 2m
  - {name: b, schedule: "@daily", account: ncp, action: cdss.cmak.restart, targets: ["1484848"]}
  - {name: c, schedule: "@every 10m", account: otc, action: modelarts.notebook.stop, targets: [x]}
windows:
  - name: w1
    account: lab
    resource: modelarts.notebook
    targets: [nb-3]
    timezone: Asia/Seoul
    on:
      - {days: MON-FRI, from: "09:00", to: "19:00"}
    off_dates: [2026-12-24, "2026-12-31"]
    holidays: KR
    check_every: 30s
    hourly_cost: 1.20
    drift: edges
  - name: w2
    account: lab
    resource: dataforest.app
    targets: [db-1]
    on: [{days: SAT, from: "22:00", to: "02:00"}]
    holidays: {ics: company.ics}
    after: [w1]
http: {listen: "127.0.0.1:9464", allow_non_loopback: false}
notify:
  - {name: ops, type: slack, url: {env: HOOK_URL}}
  - {name: siem, type: webhook, url: {env: HOOK_URL}, secret: {env: HOOK_KEY}, on: [failure], jobs: [a]}
cluster:
  node: host-a
  etcd:
    endpoints: [https://10.0.0.1:2379]
    prefix: /scheduler/prod
    lease_ttl: 3s
    tls: {ca: {file: /etc/ca.pem}, cert: {file: /etc/c.pem}, key: {file: /etc/k.pem}}
    username: {env: ETCD_USER}
    password: {env: ETCD_PASSWORD}
`

// fillSeeds returns the files of testdata and richSchedule.
func fillSeeds(t testing.TB) [][]byte {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seeds := [][]byte{[]byte(richSchedule)}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	return seeds
}

var fillAnchor = time.Date(2026, 3, 23, 8, 0, 0, 0, time.UTC)

// icsDir returns a directory with the company.ics of richSchedule.
func icsDir(t testing.TB) string {
	dir := t.TempDir()
	ics := "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20260324\nSUMMARY:Offsite\nEND:VEVENT\n"
	if err := os.WriteFile(filepath.Join(dir, "company.ics"), []byte(ics), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// checkFillMatchesDecode loads data in fast mode and in clean mode (the
// walker's clean copy decoded by Node.Decode, as Load did before it filled
// the Config itself) and fails unless both give the same Config or the
// same problems.
func checkFillMatchesDecode(t *testing.T, dir string, data []byte) (loaded bool) {
	t.Helper()
	opts := Options{Anchor: fillAnchor, Dir: dir}
	fast, ferr := load("f.yaml", data, opts, false)
	clean, cerr := load("f.yaml", data, opts, true)
	if (ferr == nil) != (cerr == nil) || ferr != nil && ferr.Error() != cerr.Error() {
		t.Fatalf("fast and clean mode disagree on\n%s\nfast: %v\nclean: %v", data, ferr, cerr)
	}
	if ferr != nil {
		return false
	}
	// Schedules are compared by what they do.
	specs := func(c *Config) []time.Time {
		var next []time.Time
		for _, j := range c.Jobs {
			next = append(next, j.Spec.Next(fillAnchor))
			j.Spec = nil
		}
		return next
	}
	// Holiday calendars keep caches: compared by whether there is one.
	calendars := func(c *Config) []bool {
		var has []bool
		for _, w := range c.Windows {
			if w == nil {
				continue
			}
			if h := w.Holidays; h != nil {
				has = append(has, h.Calendar != nil)
				h.Calendar = nil
			}
			if w.Spec != nil {
				has = append(has, w.Spec.Holidays != nil)
				w.Spec.Holidays = nil
			}
		}
		return has
	}
	if fh, ch := calendars(fast), calendars(clean); !reflect.DeepEqual(fh, ch) {
		t.Fatalf("fast and clean mode disagree on\n%s\nholiday calendars: fast %v, clean %v", data, fh, ch)
	}
	if fn, cn := specs(fast), specs(clean); !reflect.DeepEqual(fn, cn) {
		t.Fatalf("fast and clean mode disagree on\n%s\nnext fires: fast %v, clean %v", data, fn, cn)
	}
	if !reflect.DeepEqual(fast, clean) {
		t.Fatalf("fast and clean mode disagree on\n%s\nfast: %s\nclean: %s", data, dump(fast), dump(clean))
	}
	return true
}

func dump(c *Config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%+v\n", *c)
	for _, j := range c.Jobs {
		fmt.Fprintf(&b, "job %+v\n", j)
	}
	for _, w := range c.Windows {
		fmt.Fprintf(&b, "window %+v\n", w)
	}
	return b.String()
}

// mutate makes a few random changes to the document data: nulls, other
// kinds of values, explicit tags, anchors and aliases (keys included),
// duplicate, renamed, merge and dropped keys, dropped and null list
// elements. It returns nil when data does not parse or the result does not
// encode.
func mutate(r *rand.Rand, data []byte) (out []byte) {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	defer func() {
		if recover() != nil {
			out = nil
		}
	}()
	// The nodes in document order, and where the nodes under each end.
	var all []*yaml.Node
	var end []int
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		i := len(all)
		all = append(all, n)
		end = append(end, 0)
		for _, c := range n.Content {
			walk(c)
		}
		end[i] = len(all)
	}
	walk(doc.Content[0])
	if len(all) < 2 {
		return nil
	}
	names := []string{"name", "schedule", "targets", "retry", "timeout", "vendor", "faults", "kind", "holidays", "ics", "on", "jobs", "accounts", "endpoints", "max_attempts", "concurrency", "nmae", "<<", ""}
	scalars := []string{"x", "5", "-1", "1.5", "true", "no", "2001-01-01", "", "~", "30s", "@daily", "0 9 * * *", "nb-1", "lab", "sandbox", "modelarts.notebook.start"}
	tags := []string{"!!str", "!!binary", "!!int", "!!null", "!!map", "!custom", "!!float", "!!bool", "!!timestamp"}
	anchors := 0
	for range 1 + r.IntN(4) {
		at := 1 + r.IntN(len(all)-1) // not the root
		n := all[at]
		switch r.IntN(10) {
		case 0:
			*n = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "~"}
		case 1:
			*n = yaml.Node{Kind: yaml.ScalarNode, Value: scalars[r.IntN(len(scalars))]}
		case 2:
			*n = yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
				{Kind: yaml.ScalarNode, Value: names[r.IntN(len(names))]},
				{Kind: yaml.ScalarNode, Value: scalars[r.IntN(len(scalars))]}}}
		case 3:
			*n = yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: scalars[r.IntN(len(scalars))]}}}
		case 4:
			if n.Kind == yaml.ScalarNode || r.IntN(3) == 0 {
				n.Tag = tags[r.IntN(len(tags))]
				n.Style |= yaml.TaggedStyle
			}
		case 5, 6:
			// Alias a node that ends before n.
			ia := r.IntN(at)
			a := all[ia]
			if end[ia] > at || a.Kind == yaml.AliasNode {
				continue
			}
			if a.Anchor == "" {
				anchors++
				a.Anchor = fmt.Sprint("a", anchors)
			}
			*n = yaml.Node{Kind: yaml.AliasNode, Value: a.Anchor, Alias: a}
		case 7:
			if n.Kind == yaml.MappingNode && len(n.Content) >= 2 {
				i := 2 * r.IntN(len(n.Content)/2)
				switch r.IntN(4) {
				case 0: // duplicate
					n.Content = append(n.Content, n.Content[i], n.Content[i+1])
				case 1: // rename
					n.Content[i] = &yaml.Node{Kind: yaml.ScalarNode, Value: names[r.IntN(len(names))]}
				case 2: // drop
					n.Content = append(n.Content[:i:i], n.Content[i+2:]...)
				case 3: // a key that is no scalar
					n.Content[i] = &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "k"}}}
				}
			}
		case 8:
			if n.Kind == yaml.SequenceNode {
				null := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "~"}
				if len(n.Content) > 0 && r.IntN(2) == 0 {
					n.Content[r.IntN(len(n.Content))] = null
				} else {
					n.Content = append(n.Content, null)
				}
			}
		case 9:
			if n.Kind == yaml.SequenceNode && len(n.Content) > 1 {
				n.Content = n.Content[1:]
			} else if n.Kind == yaml.SequenceNode && len(n.Content) == 1 {
				n.Content = append(n.Content, n.Content[0])
			}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil
	}
	return out
}

// TestFillMatchesDecode checks that the walker's fill gives what decoding
// its clean copy gives, problems included, for the seeds and random
// mutations of them.
func TestFillMatchesDecode(t *testing.T) {
	seeds, dir := fillSeeds(t), icsDir(t)
	if !checkFillMatchesDecode(t, dir, []byte(richSchedule)) {
		t.Fatal("richSchedule does not load")
	}
	for _, s := range seeds {
		checkFillMatchesDecode(t, dir, s)
	}
	// Cases the fill handles apart, and those it leaves to the clean mode.
	for _, c := range [][2]string{
		{"  - {name: b,", "  - {name: d, schedule: \"@daily\", account: lab, action: cdss.cmak.restart, targets: [\"1\", *n, \"2\"]}\n  - {name: b,"},
		{"  - {name: b,", "  - {name: d, schedule: \"@daily\", account: lab, action: cdss.cmak.restart, targets: [\"1\", ~, \"2\"]}\n  - {name: b,"},
		{"version: 1", "version: &n ~"},
		{"  - {name: b,", "  - ~\n  - 5\n  - {name: b,"},
		{"targets: [nb-3]", "targets: []"},
		{"targets: [nb-3]", "targets: ~"},
		{"faults:\n", "faults:\n      - ~\n      - *n\n"},
		{"endpoints: {", "endpoints: {x: *n, 5: \"https://x.example.com\", "},
		{"holidays: {ics: company.ics}", "holidays: {ics: !!binary \"@@\"}"},
		{"holidays: KR", "holidays: !!str KR"},
		{"version: 1", "!!binary dmVyc2lvbg==: 1"},
		{"    retry: {", "    !!binary cmV0cnk=: {"},
		{"    timeout: 1m", "    timeout: !!str 1m"},
		{"concurrency: 2", "concurrency: !!float 2"},
		{"verify: true", "verify: !!null true"},
		{"accounts:\n", "accounts: !!null\n"},
	} {
		data := strings.Replace(richSchedule, c[0], c[1], 1)
		if data == richSchedule {
			t.Fatalf("%q is not in richSchedule", c[0])
		}
		data = strings.Replace(data, "watchdog_after: 5m", "watchdog_after: &n ~", 1)
		checkFillMatchesDecode(t, dir, []byte(data))
	}
	// A few seconds under -race; FuzzFillMatchesDecode goes on for longer.
	rounds := 600
	if testing.Short() {
		rounds = 200
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)
	r := rand.New(rand.NewPCG(1, seed))
	valid := 0
	for range rounds {
		// Half the rounds change one thing in a valid file.
		data, changes := []byte(richSchedule), 1
		if r.IntN(2) == 0 {
			data, changes = seeds[r.IntN(len(seeds))], 1+r.IntN(3)
		}
		for range changes {
			if m := mutate(r, data); m != nil {
				data = m
			}
		}
		if checkFillMatchesDecode(t, dir, data) {
			valid++
		}
	}
	t.Logf("%d of %d changed files loaded", valid, rounds)
}

// FuzzFillMatchesDecode is TestFillMatchesDecode on what the fuzzer makes.
func FuzzFillMatchesDecode(f *testing.F) {
	for _, s := range fillSeeds(f) {
		f.Add(s)
	}
	dir := icsDir(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFillMatchesDecode(t, dir, data)
	})
}

// TestJobPathsUnambiguous checks what walker.find relies on: no map (whose
// keys could contain . or [) and no holidays value is reachable from a Job,
// so a path under jobs[i] names one node.
func TestJobPathsUnambiguous(t *testing.T) {
	var check func(t reflect.Type, path string)
	check = func(ty reflect.Type, path string) {
		switch {
		case ty == holidayType:
			t.Errorf("%s is a holidays value", path)
			return
		case ty == refType || ty == durationType:
			return
		}
		switch ty.Kind() {
		case reflect.Pointer, reflect.Slice:
			check(ty.Elem(), path+"[]")
		case reflect.Map:
			t.Errorf("%s is a map", path)
		case reflect.Struct:
			types, names, _ := fieldsOf(ty)
			for _, n := range names {
				check(types[n], path+"."+n)
			}
		}
	}
	check(jobType, "jobs[i]")
}

// TestFindMatchesRecord checks that in fast mode the paths under jobs[i]
// that walker.find navigates to are the nodes the clean mode records.
func TestFindMatchesRecord(t *testing.T) {
	seeds := fillSeeds(t)
	r := rand.New(rand.NewPCG(2, uint64(time.Now().UnixNano())))
	for round := range 500 {
		data := seeds[r.IntN(len(seeds))]
		if round >= len(seeds) {
			for range 1 + r.IntN(3) {
				if m := mutate(r, data); m != nil {
					data = m
				}
			}
		} else {
			data = seeds[round]
		}
		root, nodes, _, perr := parseDoc("f.yaml", data, nil)
		if perr != nil {
			continue
		}
		fast, _ := decodeTree("f.yaml", root, nodes, false)
		if fast.clean { // went over to the clean mode
			continue
		}
		clean, _ := decodeTree("f.yaml", root, nodes, true)
		for p, want := range clean.nodes {
			if got := fast.find(p); got != want {
				t.Fatalf("in\n%s\nfind(%q) = %+v; the clean mode recorded %+v", data, p, got, want)
			}
		}
		// Paths that were not recorded are not found either.
		for _, p := range []string{"jobs[0].nope", "jobs[0].retry.nope", "jobs[00]", "jobs[-1]", "jobs[99999]", "jobs[0].targets[x]", "jobs[0]x", "jobs[0].targets[0].x", "jobs[0].name.x"} {
			if _, ok := clean.nodes[p]; !ok {
				if got := fast.find(p); got != (pathNodes{}) {
					t.Fatalf("in\n%s\nfind(%q) = %+v; want nothing, as the clean mode recorded nothing", data, p, got)
				}
			}
		}
	}
}
