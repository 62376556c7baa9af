package secret

import (
	_ "github.com/cenkalti/backoff/v4"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/mattn/go-isatty"
	_ "github.com/robfig/cron/v3"
	_ "github.com/rs/zerolog"
	_ "golang.org/x/time/rate"
	_ "gopkg.in/yaml.v3"
)
