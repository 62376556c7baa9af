// Package configs embeds the example schedules shipped with the binary:
// demo.yaml, which `scheduler demo` runs against the emulated cloud, and
// example.yaml, the annotated starting point for real use.
package configs

import _ "embed"

// Demo is configs/demo.yaml.
//
//go:embed demo.yaml
var Demo []byte

// Example is configs/example.yaml.
//
//go:embed example.yaml
var Example []byte
