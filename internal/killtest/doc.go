// Package killtest holds end-to-end tests of the offboard binary that kill it with SIGKILL
// in the middle of work and restart it on the same data directory. It has no code of its own.
package killtest
