// Package identity is the domain root of Offboard: tenants, their policies and tokens, employees
// and their lifecycle state, jobs (the external effects an employee's state still owes), and the
// sentinel errors every adapter maps to. It imports no HTTP router and no database driver.
package identity
