//go:build tools

// Package tools records the upstream main package this module builds (the
// etcd binary is the root package of go.etcd.io/etcd/server/v3), so that
// `go mod tidy` keeps its dependencies in go.mod/go.sum.
package tools

import _ "go.etcd.io/etcd/server/v3"
