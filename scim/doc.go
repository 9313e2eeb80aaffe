// Package scim serves SCIM 2.0 (RFC 7643/7644) to identity providers on top of
// github.com/elimity-com/scim: Users (core + enterprise + Offboard extension), Groups, discovery,
// IdP request normalisation, the PATCH applier, filter parsing and RFC error bodies. It knows no
// database: users go through the lifecycle service, lookups and groups through small interfaces.
//
// Files: server.go (the front: routing, bodies, rendering, ETags), list.go (lists, .search,
// paging), projection.go (attributes/excludedAttributes), discovery.go, normalize.go (IdP
// shapes → canonical requests), filter.go (filter parsing and name resolution), patch.go (the
// PATCH applier), users.go and groups.go (the resource handlers), convert.go (wire ↔ storage),
// errors.go (the one error table). Decisions on non-RFC inputs are listed where they are taken
// and tested in nasty_test.go; testdata/recorded holds the Entra ID and Okta requests replayed
// by recorded_test.go.
package scim
