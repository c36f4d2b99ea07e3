#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kubectl and helm from pinned Go modules
# into a cache directory keyed by version, and prints that directory. Skips what is already built.
# Also builds `gitops-health` (hack/gitops-health: the health verdicts of kstatus, which Flux
# uses, and of Argo CD's Lua health checks) into a directory keyed by the versions it pins, and
# links it into the same directory.
#
# The wrapper modules under hack/k8s, hack/etcd and hack/helm pin the versions; see
# ../shared/control-plane.md for why wrappers are needed (replace directives upstream).
set -euo pipefail

K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.16
HELM_VERSION=v4.3.2
CLI_UTILS_VERSION=v0.37.2
GOPHER_LUA_VERSION=v1.1.2

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${KMS_OPERATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kms-alias-operator}
bin_dir="$cache_root/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
mkdir -p "$bin_dir"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { echo "build-control-plane: $*" >&2; }

build_k8s() {
  local name=$1
  [ -x "$bin_dir/$name" ] && return 0
  log "building $name $K8S_VERSION (slow on first run)"
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  (cd "$here/k8s" && go build -trimpath -ldflags "$ld" -o "$bin_dir/$name.tmp" \
    "k8s.io/kubernetes/cmd/$name")
  mv "$bin_dir/$name.tmp" "$bin_dir/$name"
}

build_etcd() {
  [ -x "$bin_dir/etcd" ] && return 0
  log "building etcd $ETCD_VERSION"
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$bin_dir/etcd.tmp" \
    go.etcd.io/etcd/server/v3)
  mv "$bin_dir/etcd.tmp" "$bin_dir/etcd"
}

build_helm() {
  [ -x "$bin_dir/helm" ] && return 0
  log "building helm $HELM_VERSION"
  (cd "$here/helm" && go build -trimpath -ldflags "-s -w \
    -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    -o "$bin_dir/helm.tmp" helm.sh/helm/v4/cmd/helm)
  mv "$bin_dir/helm.tmp" "$bin_dir/helm"
}

build_gitops_health() {
  local dir="$cache_root/bin/gitops-health-cli-utils-$CLI_UTILS_VERSION-lua-$GOPHER_LUA_VERSION"
  if [ ! -x "$dir/gitops-health" ]; then
    log "building gitops-health (cli-utils $CLI_UTILS_VERSION, gopher-lua $GOPHER_LUA_VERSION)"
    mkdir -p "$dir"
    (cd "$here/gitops-health" && go build -trimpath -ldflags "-s -w" -o "$dir/gitops-health.tmp" .)
    mv "$dir/gitops-health.tmp" "$dir/gitops-health"
  fi
  ln -sfn "$dir/gitops-health" "$bin_dir/gitops-health"
}

build_etcd
build_k8s kube-apiserver
build_k8s kubectl
build_k8s kube-controller-manager
build_helm
build_gitops_health
echo "$bin_dir"
