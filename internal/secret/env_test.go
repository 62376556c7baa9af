package secret

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestEnvEmptyIsNotUnset: an exported but empty variable is reported as
// empty, so the operator looks at its value, not at the unit's Environment=.
func TestEnvEmptyIsNotUnset(t *testing.T) {
	env := map[string]string{"EMPTY": ""}
	res := Resolver{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	_, err := res.Resolve(Ref{Env: "EMPTY"})
	if err == nil || !strings.Contains(err.Error(), "EMPTY is set but empty") || strings.Contains(err.Error(), "not set") {
		t.Errorf("empty variable: %v; want it called empty, not unset", err)
	}
	_, err = res.Resolve(Ref{Env: "ABSENT"})
	if err == nil || !strings.Contains(err.Error(), "ABSENT is not set") {
		t.Errorf("absent variable: %v; want it called not set", err)
	}
}

// TestEnvNameThatLooksLikeASecret: a value pasted where the variable's name
// goes is refused without being echoed.
func TestEnvNameThatLooksLikeASecret(t *testing.T) {
	for _, v := range []string{"wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "sk-live 1234", "1ABC", "ab-cd"} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte("{env: \""+v+"\"}"), &n); err != nil {
			t.Fatal(err)
		}
		var r Ref
		err := r.UnmarshalYAML(n.Content[0])
		if err == nil || strings.Contains(err.Error(), v) || !strings.Contains(err.Error(), "not an environment variable name") {
			t.Errorf("env %q: %v; want a refusal that does not echo it", v, err)
		}
	}
	for _, v := range []string{"NCP_ACCESS_KEY", "_x", "a1"} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte("{env: "+v+"}"), &n); err != nil {
			t.Fatal(err)
		}
		var r Ref
		if err := r.UnmarshalYAML(n.Content[0]); err != nil || r.Env != v {
			t.Errorf("env %q: %v, %+v; want accepted", v, err, r)
		}
	}
}
