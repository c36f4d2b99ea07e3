# The two entry points a newcomer needs: `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo test lint unit e2e control-plane crds build

# Builds (or reuses) etcd, kube-apiserver, kubectl, kube-controller-manager and helm.
control-plane:
	@hack/build-control-plane.sh >/dev/null

build:
	$(CARGO) build --bins

## Run the main job end to end: control plane, emulator, operator, the example manifest.
demo: build control-plane
	hack/demo.sh

## Everything: formatting, lints, CRD drift, unit and integration tests, chart lint.
test: control-plane lint
	KMS_TESTENV_BIN_DIR="$$(hack/build-control-plane.sh)" $(CARGO) test --all-targets -- --test-threads=2
	hack/sdk-tests.sh
	hack/lint-chart.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

## Regenerate the CRD files from the Rust types.
crds:
	$(CARGO) run -q -- crd --dir crds
	$(CARGO) run -q -- crd --dir charts/kms-alias-operator/crds
