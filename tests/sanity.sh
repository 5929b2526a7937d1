#!/usr/bin/env bash
# ansible-test sanity for the treazrisland.ops collection.
#
# ansible-test wants the collection under .../ansible_collections/<namespace>/<name>/ and, outside
# git, tests every file it finds there. So this copies the collection's files (git-tracked, plus
# untracked ones git does not ignore; never .venv, .build, .git, bench/results or tests/output, nor
# what galaxy.yml's build_ignore keeps out of the built collection: sandbox, bench, .ci) into a
# temporary ansible_collections/treazrisland/ops, runs the sanity tests there and removes the
# copy. Exits non-zero when any sanity test fails, or could not run.
#
# Mode: --local. The controller is the project's .venv (ansible-core from requirements.txt);
# ansible-test itself creates one cached virtualenv per sanity test (pylint, pep8, yamllint,
# validate-modules...) under ~/.ansible/test/venv and installs into it the exact pins it ships
# (ansible_test/_data/requirements/sanity.*.txt) from PyPI: the first run downloads them (about a
# minute), later runs reuse them. --venv would add one more virtualenv for the controller, with
# ansible-core's own dependencies downloaded again, for nothing: the .venv already has them.
#
# Usage: bash tests/sanity.sh [extra ansible-test sanity arguments, e.g. --test pylint]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
namespace=treazrisland
name=ops
python_version=3.11

if [ -x "$repo/.venv/bin/ansible-test" ]; then
  ansible_test="$repo/.venv/bin/ansible-test"
  export PATH="$repo/.venv/bin:$PATH"
else
  ansible_test=$(command -v ansible-test) || { echo "sanity: ansible-test not found; run: bash sandbox/setup.sh" >&2; exit 2; }
fi

# ansible-test creates each sanity virtualenv without pip, then runs a pip bootstrap script it
# downloads from https://ci-files.testing.ansible.com/, which is not reachable here (only PyPI is).
# Its documented workaround is to put that script at ~/.ansible/test/cache/get_pip_<version>.py.
# The stand-in below does what get-pip.py does (run pip from a pip wheel to install pip itself)
# with the pip wheel of that exact version fetched from PyPI. A real script found there is kept.
bootstrap_pip() {
  local version cache script wheel
  version=$("$ansible_python" -c 'import types; from ansible_test._internal.python_requirements import get_venv_packages as p; print(p(types.SimpleNamespace(version="'"$python_version"'"))["pip"])')
  cache="$HOME/.ansible/test/cache"
  script="$cache/get_pip_${version//./_}.py"
  wheel="$cache/pip-$version-py3-none-any.whl"
  if [ -f "$script" ] && ! grep -q 'treazrisland-sanity-stand-in' "$script"; then
    return 0
  fi
  mkdir -p "$cache"
  if [ ! -f "$wheel" ]; then
    "$ansible_python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      "pip==$version" -d "$cache"
  fi
  cat > "$script.$$.tmp" <<EOF
# treazrisland-sanity-stand-in for get-pip-$version.py, written by tests/sanity.sh of treazrisland.ops.
import sys

WHEEL = "$wheel"


def main():
    args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    sys.path.insert(0, WHEEL)
    from pip._internal.cli.main import main as pip_main
    sys.exit(pip_main(["install", "--upgrade", "--force-reinstall"] + args))


if __name__ == "__main__":
    main()
EOF
  mv "$script.$$.tmp" "$script"
}
ansible_python=$(dirname "$ansible_test")/python
bootstrap_pip

tmp=$(mktemp -d "${TMPDIR:-/tmp}/treazrisland-sanity.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dest="$tmp/ansible_collections/$namespace/$name"
mkdir -p "$dest"

# The files to test, NUL-separated: tracked and untracked-but-not-ignored (git), minus what is
# not collection content: the paths below, and those that galaxy.yml's build_ignore leaves out of
# the built collection (sandbox, bench, .ci...), matched as ansible-galaxy does (fnmatch on the
# path of each file and of each of its parent directories). Files deleted in the work tree but
# still in the index, and symlinks, are left out.
list_files() {
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$repo" ls-files -z --cached --others --exclude-standard
  else
    (cd "$repo" && find . -type f -print0 | sed -z 's|^\./||')
  fi
}
list_files | "$ansible_python" -c '
import fnmatch, os, sys, yaml
repo = sys.argv[1]
with open(os.path.join(repo, "galaxy.yml"), encoding="utf-8") as handle:
    galaxy = yaml.safe_load(handle)
paths = [".git", ".venv", ".build", "bench/results", "tests/output", ".pytest_cache"] + (galaxy.get("build_ignore") or [])
names = ["__pycache__", "*.pyc"]
for path in sys.stdin.buffer.read().decode("utf-8").split("\0"):
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    if not path or any(fnmatch.fnmatch(p, pat) for p in prefixes for pat in paths) \
            or any(fnmatch.fnmatch(part, pat) for part in parts for pat in names):
        continue
    full = os.path.join(repo, path)
    if os.path.isfile(full) and not os.path.islink(full):
        sys.stdout.buffer.write(path.encode("utf-8") + b"\0")
' "$repo" | (cd "$repo" && tar --null --files-from=- -cf -) | tar -xf - -C "$dest"

# Tests skipped on purpose, as --skip-test NAME, each with its reason. None at present: every
# test ansible-test selects for this collection runs (pslint, changelog and action-plugin-docs
# find no PowerShell, changelogs/config.yaml or action plugin, and pass with nothing to check).
skip=(
)

cd "$dest"
log="$tmp/sanity.log"
status=0
"$ansible_test" sanity --local --python "$python_version" --color no "${skip[@]}" "$@" 2>&1 | tee "$log" || status=$?

# ansible-test reports a test it could not set up (no virtualenv support, pip failure turned
# into a skip) as "skipped" and still exits 0; for a gate that is a failure.
if grep -q "due to missing virtual environment support" "$log"; then
  echo "sanity: some tests were skipped for lack of a virtual environment (see above); failing." >&2
  [ "$status" -ne 0 ] || status=1
fi
# Likewise the shellcheck test without the program (sandbox/setup.sh installs Debian's).
if grep -q 'Required program "shellcheck" not found' "$log"; then
  echo "sanity: shellcheck is not installed (bash sandbox/setup.sh installs it); failing." >&2
  [ "$status" -ne 0 ] || status=1
fi
if [ "$status" -ne 0 ]; then
  echo "sanity: FAILED (exit $status)" >&2
else
  echo "sanity: passed"
fi
exit "$status"
