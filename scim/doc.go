// Package scim serves SCIM 2.0 (RFC 7643/7644) to identity providers on top of
// github.com/elimity-com/scim: Users (core + enterprise + Offboard extension), Groups, discovery,
// IdP request normalisation, the PATCH applier, filter translation and RFC error bodies. It
// knows no database: users go through the lifecycle service, lookups through small interfaces.
package scim
