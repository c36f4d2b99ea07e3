#!/usr/bin/env bash
# Runs Alibaba Cloud's official Python SDKs (tests/sdk, pinned in tests/sdk/requirements.txt)
# against kms-emulator. The venv lives outside the repo, keyed by the requirements' hash, so it is
# built once per set of versions:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/kms-alias-operator/venv-<hash>
# Needs python3 with the venv module (Debian: python3-venv) and network access to PyPI on first
# use. Environment: PYTHON (default python3), CARGO (default cargo), KMS_EMULATOR_BIN (a prebuilt
# emulator; default: build target/debug/kms-emulator). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
cargo=${CARGO:-cargo}
requirements=tests/sdk/requirements.txt

hash=$(sha256sum "$requirements" | cut -c1-16)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/kms-alias-operator/venv-$hash"

# A venv counts as ready only once its marker exists, so an interrupted install is redone.
if [[ ! -f "$venv/.installed" ]]; then
  echo "sdk-tests: creating $venv" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  if ! "$python" -m venv "$venv"; then
    echo "sdk-tests: '$python -m venv' failed; on Debian install python3-venv" >&2
    exit 1
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --use-pep517 -r "$requirements"
  touch "$venv/.installed"
fi

if [[ -z "${KMS_EMULATOR_BIN:-}" ]]; then
  "$cargo" build --quiet --bin kms-emulator
  target_dir=${CARGO_TARGET_DIR:-target}
  [[ "$target_dir" = /* ]] || target_dir="$PWD/$target_dir"
  export KMS_EMULATOR_BIN="$target_dir/debug/kms-emulator"
fi

# No __pycache__ or .pytest_cache in the work tree.
export PYTHONDONTWRITEBYTECODE=1
exec "$venv/bin/python" -m pytest tests/sdk -q -p no:cacheprovider "$@"
