#!/usr/bin/env bash
# Builds the upstream test binaries vigil's integration tests run against
# (kube-apiserver, kubectl, etcd, helm) from their official Go modules, pinned
# by the wrapper modules next to this script (kubernetes/, etcd/, helm/: each a
# go.mod + go.sum). See README.md in this directory.
#
# Usage: tests/tools/build-test-binaries.sh
#   Prints the directory holding the four binaries as the LAST line of stdout;
#   everything else goes to stderr. Typical use:
#     assets="$(tests/tools/build-test-binaries.sh | tail -n1)"
#
# Environment:
#   VIGIL_TEST_ASSETS        use this directory as is (only checks that the four
#                            binaries exist there); nothing is built.
#   VIGIL_TEST_ASSETS_CACHE  cache root (default:
#                            ${XDG_CACHE_HOME:-$HOME/.cache}/vigil/test-assets).
#   VIGIL_TEST_ASSETS_GO_P   `go build -p` value (default: 2).
#
# The binaries land in <cache root>/k8s-<v>_etcd-<v>_helm-<v>/. If all four are
# already there the script does nothing else. Each binary is built under a
# temporary name, checked with its version command, then renamed into place,
# so an interrupted run never leaves a broken binary in the cache.
set -euo pipefail

BINARIES=(kube-apiserver kubectl etcd helm)

# stdout is reserved for the final path; send everything else to stderr.
exec 3>&1 1>&2

log() { printf '[build-test-binaries] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_dir() { # dir -> 0 if all binaries are present and executable
  local dir=$1 b
  for b in "${BINARIES[@]}"; do
    [[ -f "$dir/$b" && -x "$dir/$b" ]] || return 1
  done
}

if [[ -n "${VIGIL_TEST_ASSETS:-}" ]]; then
  check_dir "$VIGIL_TEST_ASSETS" ||
    die "VIGIL_TEST_ASSETS=$VIGIL_TEST_ASSETS lacks one of: ${BINARIES[*]}"
  printf '%s\n' "$VIGIL_TEST_ASSETS" >&3
  exit 0
fi

TOOLS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The versions come from the wrapper modules' go.mod files (single source of
# truth; bump them there, see README.md).
require_version() { # moddir module -> version required by moddir/go.mod
  local v
  v="$(awk -v m="$2" '
    $1 == "require" && $2 == m { print $3; exit }
    $1 == m && $2 ~ /^v/ && !seen { print $2; seen = 1 }' "$TOOLS_DIR/$1/go.mod")"
  [[ -n "$v" ]] || die "$1/go.mod does not require $2"
  printf '%s\n' "$v"
}

K8S_VERSION="$(require_version kubernetes k8s.io/kubernetes)"
ETCD_VERSION="$(require_version etcd go.etcd.io/etcd/server/v3)"
HELM_VERSION="$(require_version helm helm.sh/helm/v4)"

CACHE_ROOT="${VIGIL_TEST_ASSETS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vigil/test-assets}"
OUT="$CACHE_ROOT/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}"

# Fast path: everything already built.
if check_dir "$OUT"; then
  printf '%s\n' "$OUT" >&3
  exit 0
fi

command -v go >/dev/null || die "go is not on PATH (needed to build into $OUT)"
mkdir -p "$OUT"

# Serialise concurrent runs on one cache dir (the renames below keep it safe
# even without flock; this only avoids building twice).
if command -v flock >/dev/null; then
  exec 9>"$OUT/.lock"
  flock 9
fi

# Build for this machine, from the checked-in go.mod/go.sum only, with no VCS
# stamping of vigil's own repo and no go.work from an enclosing directory.
unset GOOS GOARCH
export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false"
GO_P="${VIGIL_TEST_ASSETS_GO_P:-2}"

# Kubernetes release v1.X.Y is published as staging modules v0.X.Y; every
# staging replace in kubernetes/go.mod must point at that version.
K8S_STAGING_VERSION="v0.${K8S_VERSION#v1.}"
bad_replaces="$(awk -v want="$K8S_STAGING_VERSION" '
  $2 == "=>" && $1 ~ /^k8s\.io\// && $4 != want { print $1 " => " $3 " " $4 }' \
  "$TOOLS_DIR/kubernetes/go.mod")"
[[ -z "$bad_replaces" ]] ||
  die "kubernetes/go.mod: staging replaces not at $K8S_STAGING_VERSION: $bad_replaces"

mod_time() { # moddir module -> release commit time (UTC) from the module proxy
  (cd "$TOOLS_DIR/$1" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$2")
}

# build NAME MODDIR PACKAGE LDFLAGS VERSION-CHECK-REGEX VERSION-CMD...
build() {
  local name=$1 moddir=$2 pkg=$3 ldflags=$4 want=$5
  shift 5
  if [[ -f "$OUT/$name" && -x "$OUT/$name" ]]; then
    log "$name: already in cache"
    return
  fi
  local tmp="$OUT/.$name.tmp.$$" start=$SECONDS out
  trap 'rm -f "$tmp"' EXIT
  log "$name: go build $pkg"
  (cd "$TOOLS_DIR/$moddir" &&
    go build -p "$GO_P" -trimpath -ldflags "-s -w $ldflags" -o "$tmp" "$pkg")
  out="$("$tmp" "$@" 2>&1)" || die "$name: '$name $*' failed: $out"
  grep -Eq -- "$want" <<<"$out" ||
    die "$name: '$name $*' printed '$out', expected /$want/"
  mv -f "$tmp" "$OUT/$name"
  trap - EXIT
  log "$name: built in $((SECONDS - start))s: $(head -n1 <<<"$out")"
}

need_build() { [[ ! -x "$OUT/$1" ]]; }

if need_build kube-apiserver || need_build kubectl; then
  K8S_MINOR="${K8S_VERSION#v1.}"
  K8S_MINOR="${K8S_MINOR%%.*}"
  K8S_BUILD_DATE="$(mod_time kubernetes k8s.io/kubernetes)"
  # The same variables upstream's hack/lib/version.sh sets. The release commit
  # is not known from the module proxy, so gitCommit stays empty.
  k8s_ldflags=""
  for pkgpath in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $pkgpath.gitVersion=$K8S_VERSION"
    k8s_ldflags+=" -X $pkgpath.gitMajor=1 -X $pkgpath.gitMinor=$K8S_MINOR"
    k8s_ldflags+=" -X $pkgpath.gitTreeState=clean -X $pkgpath.buildDate=$K8S_BUILD_DATE"
  done
  build kube-apiserver kubernetes k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags" \
    "^Kubernetes ${K8S_VERSION//./\\.}\$" --version
  build kubectl kubernetes k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags" \
    "^Client Version: ${K8S_VERSION//./\\.}\$" version --client
fi

# etcd's version is a constant in go.etcd.io/etcd/api/v3/version; its build
# script only adds the git SHA, which the module proxy does not give us.
build etcd etcd go.etcd.io/etcd/server/v3 "" \
  "^etcd Version: ${ETCD_VERSION#v}\$" --version

# helm reads the Kubernetes version it targets (capabilities, kubeVersion
# checks) from the k8s.io/client-go version in the binary's build info, which
# `go build` records from helm/go.sum; only its own version needs ldflags.
# metadata="" is what upstream's Makefile sets for a tagged release.
build helm helm helm.sh/helm/v4/cmd/helm \
  "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.metadata= -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
  "^${HELM_VERSION//./\\.}\$" version --template '{{.Version}}'

check_dir "$OUT" || die "internal error: $OUT is incomplete"
printf '%s\n' "$OUT" >&3
