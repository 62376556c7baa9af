// Package schedule loads, defaults and validates the v1 schedule file of
// design.md ("Configuration contract").
//
// Load decodes strictly (yaml.v3, unknown fields rejected), keeps the YAML
// node tree beside the decoded value, and reports every problem it finds,
// not only the first: the returned error is a Problems value that unwraps
// to one *FieldError per problem, each printed as
// "file:line:col: field.path: message" and sorted by position. A Config
// returned without error is complete: defaults are applied, every job has
// its zone (Loc) and parsed schedule (Spec), and relative audit and state
// paths are resolved against Options.Dir.
//
// YAML anchors and aliases are allowed, but a document whose aliases reach
// more than ten times the nodes it writes (and more than 65 536) is
// refused before anything is expanded, so that an alias bomb costs an
// error and not memory, while an honest file of any size loads.
//
// Messages never quote the value of a secret field (access_key, secret_key,
// token, user, username, password): an inline secret is reported by position
// and path only.
package schedule
