package state

import (
	"testing"
	"time"
)

func TestOverridesSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Overrides(); err != nil || len(got) != 0 {
		t.Fatalf("Overrides of a new state = %v, %v; want none", got, err)
	}
	t0 := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	win := Override{Window: "lab", State: "off", From: t0, Until: t0.Add(time.Hour)}
	tgt := Override{Window: "lab", Target: "nb-1", State: "on", From: t0, Until: t0.Add(2 * time.Hour)}
	for _, o := range []Override{win, tgt, {Window: "lab", State: "on", From: t0, Until: t0.Add(3 * time.Hour)}} {
		if err := s.SetOverride(o); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Overrides()
	if err != nil || len(got) != 2 || got[0].State != "on" || !got[0].Until.Equal(t0.Add(3*time.Hour)) || got[1] != tgt {
		t.Fatalf("Overrides after reopen = %+v, %v; want the replaced window override and the target one", got, err)
	}
	if ok, err := s.ClearOverride("lab", "nb-1"); !ok || err != nil {
		t.Fatalf("ClearOverride = %v, %v; want true", ok, err)
	}
	if ok, err := s.ClearOverride("lab", "nb-1"); ok || err != nil {
		t.Fatalf("second ClearOverride = %v, %v; want false", ok, err)
	}
	if got, _ := s.Overrides(); len(got) != 1 || got[0].Target != "" {
		t.Fatalf("Overrides after clear = %+v", got)
	}
}
