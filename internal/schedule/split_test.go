package schedule

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// sameTree reports the first difference between two node trees: kind,
// style, tag, value, anchor, line, column, and which node each alias
// points to. Comments are not compared (nothing in Load reads them).
func sameTree(a, b *yaml.Node) string {
	pairs := map[*yaml.Node]*yaml.Node{}
	var walk func(a, b *yaml.Node, path string) string
	walk = func(a, b *yaml.Node, path string) string {
		if (a == nil) != (b == nil) {
			return path + ": one is nil"
		}
		if a == nil {
			return ""
		}
		pairs[a] = b
		if a.Kind != b.Kind || a.Style != b.Style || a.Tag != b.Tag || a.Value != b.Value || a.Anchor != b.Anchor ||
			a.Line != b.Line || a.Column != b.Column || len(a.Content) != len(b.Content) {
			return fmt.Sprintf("%s: %d/%d %q %q %q &%s %d:%d (%d children) vs %d/%d %q %q %q &%s %d:%d (%d children)", path,
				a.Kind, a.Style, a.Tag, a.Value, a.Anchor, a.Anchor, a.Line, a.Column, len(a.Content),
				b.Kind, b.Style, b.Tag, b.Value, b.Anchor, b.Anchor, b.Line, b.Column, len(b.Content))
		}
		if a.Kind == yaml.AliasNode && pairs[a.Alias] != b.Alias {
			return path + ": alias *" + a.Value + " points elsewhere"
		}
		for i := range a.Content {
			if d := walk(a.Content[i], b.Content[i], fmt.Sprintf("%s/%d", path, i)); d != "" {
				return d
			}
		}
		return ""
	}
	return walk(a, b, "")
}

// checkSplit parses data whole and split in 2 to 4 ways (one entry per
// chunk at least) and fails if a split parse succeeds with a tree other
// than the whole parse's, or where the whole parse fails. It returns
// whether any split applied.
func checkSplit(t *testing.T, data []byte) bool {
	t.Helper()
	whole, werr := parseOne(data)
	applied := false
	for ways := 2; ways <= 4; ways++ {
		got, ok := parseSplit(data, ways, 1)
		if !ok {
			continue
		}
		applied = true
		if werr != nil {
			t.Fatalf("split in %d parses, whole does not (%v):\n%s", ways, werr, data)
		}
		if d := sameTree(whole, got); d != "" {
			t.Fatalf("split in %d differs from the whole parse: %s\n%s", ways, d, data)
		}
	}
	return applied
}

// splitCases are documents the split must parse as a whole parse does
// (applies true) or leave to the whole parse (applies false).
var splitCases = []struct {
	name    string
	applies bool
	doc     string
}{
	{"flow entries", true, `version: 1
accounts: {a: {vendor: ncp}}
jobs:
  - {name: a, schedule: "0 9 * * *", targets: [x]}
  - {name: b, schedule: "0 9 * * *", targets: [x]}
  - {name: c, schedule: "0 9 * * *", targets: [x]}
  - {name: d, schedule: "0 9 * * *", targets: [x]}
`},
	{"block entries, comments, keys after", true, `version: 1
jobs: # every job
  # morning
  - name: a
    schedule: "0 9 * * *"
    targets:
      - x
      - y

  # evening
  - name: b
    schedule: '0 19 * * *'
    targets: [x]
  -
    name: c
  - name: d
# trailing
timezone: UTC
`},
	{"entries in column 0", true, `jobs:
- name: a
  targets: [x]
- name: b
- name: c
timezone: UTC
`},
	{"block scalars keep lines that look like comments", true, `jobs:
  - name: a
    description: |+
      line

      # content, not a comment

  - name: b
    description: >-
      folded
      # also content
  # a real comment
  - name: c
    description: |
      x
  - name: d
`},
	{"anchors inside entries", true, `jobs:
  - &one {name: a, targets: [x]}
  - name: b
    retry: &r {attempts: 3}
    again: *r
  - name: c
    targets: &t [x, y]
    more: *t
  - name: d
`},
	{"multi-line scalars", true, `jobs:
  - name: "a
      b"
  - name: plain
      continued
  - name: 'single
    quoted'
  - name: d
`},
	{"alias to an anchor before jobs", false, `defaults: &d {catchup: 1s}
jobs:
  - {name: a, extra: *d}
  - {name: b, extra: *d}
  - {name: c, extra: *d}
`},
	{"alias after jobs to an anchor an entry redefines", false, `x: &a 1
jobs:
  - {name: a, v: &a 2}
  - {name: b}
  - {name: c}
y: *a
`},
	{"quoted scalar across an entry line", false, `jobs:
  - name: "a
  - b"
  - name: c
  - name: d
`},
	{"flow list across entry lines", false, `jobs:
  - targets: [a,
  - b]
  - name: c
  - name: d
`},
	{"top-level flow mapping", false, `{version: 1,
jobs:
  - a
  - b
  - c
}
`},
	{"second document", false, `jobs:
  - a
  - b
---
jobs:
  - c
`},
	{"less indented line", false, `jobs:
    - a
    - b
  x: 1
    - c
`},
	{"tabs", false, "jobs:\n  - a\n  - b\n\t- c\n"},
	{"carriage returns", false, "jobs:\r\n  - a\r\n  - b\r\n  - c\r\n"},
	{"line separator", false, "jobs:\n  - a\u2028  - b\n  - c\n  - d\n"},
	{"anchored list", false, "jobs: &all\n  - a\n  - b\n  - c\n"},
	{"two jobs keys", false, "jobs:\n  - a\n  - b\njobs:\n  - c\n  - d\n"},
	{"tag directive", false, "%TAG !e! tag:example.com,2000:\n---\njobs:\n  - !e!x a\n  - !e!x b\n  - c\n"},
	{"tag handle redefined", false, "%TAG ! 0\n---\njobs:\n  -\n  - !0"},
	{"no final line break", true, "jobs:\n  - a\n  - b\n  - |+\n    c\n\n"},
	{"entries to the end of the file", true, "timezone: UTC\njobs:\n  - a\n  - b\n  - c\n\n\n# end"},
}

func TestSplitParsesAsAWholeParseDoes(t *testing.T) {
	for _, tc := range splitCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkSplit(t, []byte(tc.doc)); got != tc.applies {
				t.Fatalf("split applied = %v, want %v", got, tc.applies)
			}
		})
	}
}

func TestSplitTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("testdata: %v (%d files)", err, len(files))
	}
	applied := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if checkSplit(t, data) {
			applied++
		}
	}
	if applied == 0 {
		t.Fatal("the split applied to no file in testdata")
	}
}

// A big schedule loads through the split, and a problem deep in it is
// reported on its own line, as a whole parse would report it.
func TestLoadSplitReportsTheRightLine(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\ntimezone: UTC\naudit: {path: a.jsonl}\nstate: {dir: st}\naccounts:\n  a: {vendor: ncp, access_key: {env: AK}, secret_key: {env: SK}}\njobs:\n")
	const n = 3000
	badLine := 0
	for i := range n {
		spec := "0 9 * * *"
		if i == n-7 {
			spec = "0 25 * * *"
			badLine = 8 + i
		}
		fmt.Fprintf(&b, "  - {name: job-%05d, schedule: %q, account: a, action: dataforest.app.start, targets: [app-%05d]}\n", i, spec, i)
	}
	data := []byte(b.String())
	if len(data) < splitMinBytes {
		t.Fatalf("test schedule is %d bytes, under splitMinBytes %d: it would not split", len(data), splitMinBytes)
	}
	if _, ok := parseSplit(data, 2, splitMinItems); !ok {
		t.Fatal("the split does not apply to a plain big schedule")
	}
	checkSplit(t, data)
	_, err := Load("big.yaml", data, Options{})
	if err == nil {
		t.Fatal("Load accepted hour 25")
	}
	probs := problemsOf(t, err)
	if len(probs) != 1 || probs[0].Line != badLine || probs[0].Path != fmt.Sprintf("jobs[%d].schedule", n-7) {
		t.Fatalf("problems = %v, want one on line %d at jobs[%d].schedule", err, badLine, n-7)
	}
}

func FuzzSplit(f *testing.F) {
	for _, tc := range splitCases {
		f.Add([]byte(tc.doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSplit(t, data)
	})
}
