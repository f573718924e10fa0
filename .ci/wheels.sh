#!/usr/bin/env bash
# Each distribution stands on its own.
#
# 1. Build a wheel of colearn-core and of every plugins/colearn-plugin-*, examples/colearn-plugin-*
#    and tests/plugins/colearn-plugin-toy (the core tests' plugin).
# 2. Install the wheels (not editable, with their `test` extras) into a FRESH virtual environment
#    (no system site-packages, no source tree on sys.path).
# 3. Generate one plugin of each kind with the installed `colearn new-plugin` (the templates must
#    be in the core wheel), build and install those too.
# 4. Run every plugin's tests from a copy outside the source tree, so a module or data file left
#    out of a wheel fails here. The core's own tests (tests/) run too with WHEELS_CORE_TESTS=1;
#    they are off by default because `make test` runs them and they double this script's time.
# 5. Run deptry on every distribution, so an import its pyproject.toml does not declare fails.
#
# Environment: PYTHON (python3), TORCH_SPEC (as in the Makefile), WHEELS_WORKDIR (a folder to
# keep everything in; default a temporary one, removed at the end), WHEELS_CORE_TESTS (0).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
START=$SECONDS
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}
CORE_TESTS=${WHEELS_CORE_TESTS:-0}
if [ -n "${WHEELS_WORKDIR:-}" ]; then
  WORK=$WHEELS_WORKDIR
  rm -rf "$WORK" && mkdir -p "$WORK"
else
  WORK=$(mktemp -d -t colearn-wheels.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
fi
VENV=$WORK/venv
PY=$VENV/bin/python
FAILED=()

step() { echo "== [$((SECONDS - START))s] $*"; }
fail() { echo "!! $*" >&2; FAILED+=("$*"); }
die() { echo "!! $*" >&2; exit 1; }
# The fresh environment only: nothing from the caller's Python setup or colearn settings.
clean_env() { env -u PYTHONPATH -u VIRTUAL_ENV $(env | sed -n 's/^\(COLEARN_[A-Z_]*\)=.*/-u \1/p') "$@"; }

# Distributions: the core, then every plugin folder (new ones are picked up automatically).
DISTS=(".")
for d in plugins/colearn-plugin-*/ examples/colearn-plugin-*/ tests/plugins/colearn-plugin-toy/; do
  [ -d "$d" ] || continue
  d=${d%/}
  [ -f "$d/pyproject.toml" ] || die "$d has no pyproject.toml: every plugin folder is a distribution"
  DISTS+=("$d")
done

step "fresh virtual environment in $VENV"
"$PYTHON" -m venv "$VENV" || die "cannot create a virtual environment with $PYTHON"
# --no-compile: byte-compiling all of torch at install time costs more than this run saves.
PIP_INSTALL=("$PY" -m pip install -q --no-compile)
# shellcheck disable=SC2086  # TORCH_SPEC is a list of requirements
clean_env "${PIP_INSTALL[@]}" $TORCH_SPEC "hatchling>=1.18" || die "torch install failed"

step "building ${#DISTS[@]} wheels"
mkdir -p "$WORK/dist"
clean_env "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/dist" \
  "${DISTS[@]/#/$ROOT/}" || die "building the wheels failed (see pip's message above)"
ls "$WORK/dist"

install_wheels() {
  local specs=()
  for w in "$@"; do specs+=("$w[test]"); done
  clean_env "${PIP_INSTALL[@]}" --find-links "$WORK/dist" "${specs[@]}"
}

step "installing the wheels with their test extras (and deptry)"
install_wheels "$WORK"/dist/*.whl || die "installing the wheels failed"
clean_env "${PIP_INSTALL[@]}" "deptry>=0.20" || die "installing deptry failed"
clean_env "$PY" -m pip check || fail "pip check: installed distributions have broken requirements"

step "generating a plugin of each kind with the installed colearn new-plugin"
GEN=$WORK/generated
mkdir -p "$GEN" "$WORK/gen-dist"
(cd "$WORK" && clean_env "$VENV/bin/colearn" new-plugin ci-signal --kind modality --dir "$GEN" \
  && clean_env "$VENV/bin/colearn" new-plugin ci-pair --kind method --dir "$GEN") \
  || die "colearn new-plugin failed with the installed core wheel"
clean_env "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$WORK/gen-dist" \
  "$GEN"/colearn-plugin-* || die "building the generated plugins' wheels failed"
# Their requirements are installed already (pip check below verifies that); --no-deps skips
# a second resolution.
clean_env "${PIP_INSTALL[@]}" --no-deps "$WORK"/gen-dist/*.whl \
  || die "installing the generated plugins failed"
clean_env "$PY" -m pip check || fail "pip check: a generated plugin's requirements are missing"

step "copying the source tree without its packages"
# Tests may read repository files by relative path (hub/recipes/, tests/hub/hub_server.py), so
# they run in a copy of the tree (tracked and unignored files) from which every package
# directory is removed: the code under test can only come from the installed wheels.
TREE=$WORK/tree
mkdir -p "$TREE"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$ROOT" ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$TREE" \
    || die "copying the source tree failed"
else
  tar -C "$ROOT" --exclude=.venv --exclude=.git --exclude=runs --exclude=site -cf - . \
    | tar -xf - -C "$TREE" || die "copying the source tree failed"
fi
rm -rf "$TREE/colearn_core" "$TREE/colearn" "$TREE"/plugins/*/colearn_plugin_* \
  "$TREE"/examples/*/colearn_plugin_*
mkdir -p "$TREE/generated"
for d in "$GEN"/colearn-plugin-*; do
  mkdir -p "$TREE/generated/$(basename "$d")" && cp -r "$d/tests" "$TREE/generated/$(basename "$d")/"
done
TEST_DIRS=()
for d in "${DISTS[@]}" "$GEN"/colearn-plugin-*; do
  case $d in
    .) [ "$CORE_TESTS" = 1 ] && TEST_DIRS+=(tests); continue ;;
    tests/plugins/*) continue ;;  # test-only plugin: the core tests exercise it
    /*) rel=generated/$(basename "$d") ;;
    *) rel=$d ;;
  esac
  if [ -d "$TREE/$rel/tests" ]; then TEST_DIRS+=("$rel/tests"); else fail "$rel has no tests/"; fi
done

step "running the tests against the installed wheels: ${TEST_DIRS[*]}"
(cd "$TREE" && clean_env "$PY" -m pytest -q -p no:cacheprovider "${TEST_DIRS[@]}") \
  || fail "tests against the installed wheels failed"
(cd "$TREE" && clean_env "$PY" -c "import colearn_core, sys; sys.exit('site-packages' not in \
  colearn_core.__file__)") || fail "colearn_core was not imported from the installed wheel"

step "deptry: every import declared by its distribution"
# DEP002 (declared but unused) is allowed: a distribution may declare what its users need.
run_deptry() {
  local dir=$1; shift
  (cd "$dir" && clean_env "$VENV/bin/deptry" --ignore DEP002 "$@") || fail "deptry: $dir"
}
for d in "${DISTS[@]}" "$GEN"/colearn-plugin-*; do
  if [ "$d" = . ]; then
    run_deptry "$ROOT" colearn_core colearn -kf colearn_core -kf colearn
  else
    src=$d; [ "${d#/}" = "$d" ] && src=$ROOT/$d
    module=$(basename "$src" | tr - _)
    run_deptry "$src" . -kf "$module"
  fi
done

step "done in $((SECONDS - START))s"
if [ ${#FAILED[@]} -gt 0 ]; then
  printf '!! failed: %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "wheels: all distributions built, installed, tested and dependency-checked"
