package schedule

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzLoad checks that Load never panics and that whatever it accepts is
// complete: every job has its zone and parsed schedule. Seeds are the files
// of testdata/.
func FuzzLoad(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	anchor := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Load("fuzz.yaml", data, Options{Anchor: anchor})
		if err != nil {
			if cfg != nil {
				t.Fatalf("Load returned a Config and an error: %v", err)
			}
			probs := problemsOf(t, err)
			if len(probs) == 0 {
				t.Fatal("Load returned an empty Problems")
			}
			return
		}
		if cfg == nil || cfg.Loc == nil || len(cfg.Jobs) == 0 {
			t.Fatalf("Load = %+v, nil; want a complete Config", cfg)
		}
		for _, j := range cfg.Jobs {
			if j == nil || j.Spec == nil || j.Loc == nil || j.Retry == nil || j.Verify == nil || j.Fingerprint() == "" {
				t.Fatalf("accepted job is incomplete: %+v", j)
			}
			if cfg.Accounts[j.Account] == nil {
				t.Fatalf("job %s names unknown account %q", j.Name, j.Account)
			}
		}
	})
}
