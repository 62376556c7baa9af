package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestNodeField: a log opened with a node name writes it on every record
// that has none, keeps a record's own, hashes it into the chain, and a log
// that a single host began without the field verifies whole after a
// replica appended records with it; editing a record's node breaks its
// hash.
func TestNodeField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	old := mustOpen(t, path)
	if err := old.Append(Record{Event: EventReload, Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	old.Close()
	raw, _ := os.ReadFile(path)
	if bytes.Contains(raw, []byte(`"node"`)) {
		t.Fatalf("a record without node wrote the field: %s", raw)
	}

	l, err := OpenWith(path, Options{Node: "host-b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AppendBatch([]Record{{Event: EventRun, Job: "j"}, {Event: EventRun, Job: "j", Node: "host-c"}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	recs, err := ReadAll(path)
	if err != nil {
		t.Fatal(err)
	}
	var nodes []string
	for _, r := range recs {
		nodes = append(nodes, r.Node)
	}
	if len(nodes) != 3 || nodes[0] != "" || nodes[1] != "host-b" || nodes[2] != "host-c" {
		t.Fatalf("nodes = %q; want [\"\" host-b host-c]", nodes)
	}
	if rep, err := Verify(path); err != nil || rep.Records != 3 {
		t.Fatalf("Verify = %+v, %v; want 3 good records", rep, err)
	}

	raw, _ = os.ReadFile(path)
	edited := bytes.Replace(raw, []byte(`"node":"host-b"`), []byte(`"node":"host-x"`), 1)
	if bytes.Equal(edited, raw) {
		t.Fatal("no node field to edit")
	}
	if err := os.WriteFile(path, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(path); err == nil {
		t.Fatal("Verify accepted a record whose node was edited")
	}
}
