package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// debounce is how long the watcher waits after the last event of a burst
// before it asks for one reload: long enough to merge an editor's write,
// fsync and rename (a few milliseconds), short enough that a save takes
// effect within the reload budget (150 ms from the rename to the audit
// record).
const debounce = 75 * time.Millisecond

// watchConfig watches the directory of the config file (and, when the file
// is a symlink, the directory it resolves to), so that editors that save by
// rename and Kubernetes-style `..data` symlink swaps are seen. A burst of
// events yields one request on reload; the daemon then skips the reload if
// the file's content did not change. It returns when ctx is done.
// A zero wait is the default debounce.
func watchConfig(ctx context.Context, path string, log zerolog.Logger, wait time.Duration, reload chan<- struct{}) error {
	if wait <= 0 {
		wait = debounce
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	defer w.Close()
	dirs := map[string]bool{filepath.Dir(path): true}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		dirs[filepath.Dir(real)] = true
	}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("watch %s: %w", d, err)
		}
	}
	cw := newConfigWatch(path)
	log.Debug().Str("config", path).Msg("watching the config file for changes")
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod || !cw.relevant(ev) {
				continue
			}
			log.Debug().Str("event", ev.String()).Msg("config directory changed")
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			fire = timer.C
		case <-fire:
			fire = nil
			// A symlink swap may have moved the file to another directory.
			if real, err := filepath.EvalSymlinks(path); err == nil && !dirs[filepath.Dir(real)] {
				if err := w.Add(filepath.Dir(real)); err == nil {
					dirs[filepath.Dir(real)] = true
				}
			}
			select {
			case reload <- struct{}{}:
			default: // one is already pending
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn().Err(err).Msg("config watcher error; SIGHUP still reloads")
		}
	}
}

// configWatch tells the events that can change the config at path: on
// the file itself (written, or replaced by a rename), on what it resolves
// to, or a Kubernetes-style `..data` symlink swap. Other files in the
// folder, such as an audit log kept beside the config, are ignored, at the
// cost of a string comparison: what path resolves to is kept, and looked
// up again only when an entry of the folder is created, removed or renamed
// (a write changes no symlink), not at each of the audit log's appends.
type configWatch struct {
	path, base, real string
}

func newConfigWatch(path string) *configWatch {
	cw := &configWatch{path: path, base: filepath.Base(path)}
	cw.resolve()
	return cw
}

func (cw *configWatch) resolve() {
	cw.real = ""
	if real, err := filepath.EvalSymlinks(cw.path); err == nil {
		cw.real = real
	}
}

func (cw *configWatch) relevant(ev fsnotify.Event) bool {
	base := filepath.Base(ev.Name)
	if base == cw.base || base == "..data" {
		cw.resolve()
		return true
	}
	if ev.Op != fsnotify.Write {
		cw.resolve()
	}
	return cw.real != "" && filepath.Clean(ev.Name) == cw.real
}
