package schedule

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// StateDir reads only state.dir from the schedule file at path, resolved
// against the file's folder as Load resolves it. It does not validate the
// rest, so commands that talk to a running daemon (`scheduler status`,
// `override`) still find its control socket while the file holds an edit
// the daemon rejected.
func StateDir(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read schedule: %w", err)
	}
	var doc struct {
		State struct {
			Dir string `yaml:"dir"`
		} `yaml:"state"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) { // a wrong type elsewhere does not hide state.dir
			return "", fmt.Errorf("%s: %w", path, err)
		}
	}
	if doc.State.Dir == "" {
		return "", fmt.Errorf("%s: state.dir is not set; it names the folder of the daemon's run state and control socket", path)
	}
	dir := doc.State.Dir
	if !filepath.IsAbs(dir) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", fmt.Errorf("read schedule: %w", err)
		}
		dir = filepath.Join(filepath.Dir(abs), dir)
	}
	return dir, nil
}
