// Package e2e holds end-to-end tests that build the chaperone binary and
// run it as a process: what only a real process shows (signals, files left
// behind, flags wired together).
package e2e
