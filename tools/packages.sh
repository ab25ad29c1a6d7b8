#!/bin/sh
# Prints the Debian packages of the named sections of tools/packages.txt, one a line
# (no section named: all of them). POSIX sh, so the Dockerfile's stages can run it.
#   sh tools/packages.sh build        sh tools/packages.sh runtime       sh tools/packages.sh
set -eu
list="$(dirname "$0")/packages.txt"
awk -v want=" $* " '
  /^# section: / { section = $3; next }
  /^#/ || NF == 0 { next }
  want == "  " || index(want, " " section " ") { print $1 }
' "$list"
