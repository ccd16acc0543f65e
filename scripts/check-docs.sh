#!/usr/bin/env bash
# Builds the API reference from the public headers (docs/Doxyfile) and fails if any public
# declaration is undocumented or a doc comment is malformed. HTML: build/doxygen/html.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh doxygen
rm -rf build/doxygen
mkdir -p build/doxygen
doxygen docs/Doxyfile >/dev/null
if [ -s build/doxygen/warnings.log ]; then
  cat build/doxygen/warnings.log >&2
  echo "check-docs: $(wc -l <build/doxygen/warnings.log) warnings" >&2
  exit 1
fi
echo "check-docs: every public declaration documented (HTML in build/doxygen/html)"
