package main

import (
	"strings"
	"testing"
)

func TestOverrideCommandRefusals(t *testing.T) {
	path, _ := writeConfig(t, planConfig)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"override"}, exitUsage, "say set, list or clear"},
		{[]string{"override", "set", "lab-notebooks", "--state", "on"}, exitUsage, "exactly one of --until RFC3339 and --for DURATION"},
		{[]string{"override", "set", "lab-notebooks", "--state", "maybe", "--for", "1h"}, exitUsage, "--state on or --state off"},
		{[]string{"override", "set", "lab-notebooks", "--state", "on", "--for", "-1h"}, exitUsage, "positive duration"},
		{[]string{"override", "set", "lab-notebooks", "--state", "on", "--until", "tomorrow"}, exitUsage, "RFC3339"},
		{[]string{"override", "clear"}, exitUsage, "clear takes one WINDOW"},
		{[]string{"override", "list", "--config", path}, exitFailed, "scheduler run"},
	} {
		code, _, errOut := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("scheduler %s = %d, %q; want %d and %q", strings.Join(tc.args, " "), code, errOut, tc.code, tc.want)
		}
	}
}
