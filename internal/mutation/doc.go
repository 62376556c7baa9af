// Package mutation holds the mutation check (go test -tags mutation
// ./internal/mutation, or .ci/mutants): a list of critical mutants of the
// project's code and the tests that must kill each one.
package mutation
