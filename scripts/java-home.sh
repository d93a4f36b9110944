# Sourced by the project's scripts: exports JAVA_HOME pointing at a JDK 25 or newer.
# Order: $JAVA_HOME if it is 25+, then the newest 25+ JDK under /usr/lib/jvm (or $PUNICA_JVM_DIR).
# Exits with a clear message when there is none. Callers run under `set -euo pipefail`, so every command
# that may fail on the way to that message is guarded (a failing $(...) would end the caller silently).

punica_java_feature() { # prints the feature release (17, 25, ...) of the JDK at $1, or nothing
  local v
  [ -x "$1/bin/java" ] && [ -x "$1/bin/javac" ] || return 0
  v=$("$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p' | head -n1) || v=""
  case "$v" in ''|*[!0-9.]*) return 0 ;; esac
  printf '%s' "${v%%.*}"
}

punica_find_jdk() {
  local candidate feature best="" best_feature=0
  if [ -n "${JAVA_HOME:-}" ]; then
    feature=$(punica_java_feature "$JAVA_HOME")
    if [ -n "$feature" ] && [ "$feature" -ge 25 ]; then printf '%s' "$JAVA_HOME"; return 0; fi
  fi
  for candidate in "${PUNICA_JVM_DIR:-/usr/lib/jvm}"/*; do
    [ -d "$candidate" ] || continue
    feature=$(punica_java_feature "$candidate")
    if [ -n "$feature" ] && [ "$feature" -ge 25 ] && [ "$feature" -gt "$best_feature" ]; then
      best="$candidate"; best_feature="$feature"
    fi
  done
  if [ -n "$best" ]; then printf '%s' "$best"; fi
}

PUNICA_JDK=$(punica_find_jdk) || PUNICA_JDK=""

if [ -z "$PUNICA_JDK" ]; then
  echo "error: Punica-J needs a JDK 25 or newer." >&2
  echo "  JAVA_HOME is '${JAVA_HOME:-unset}' and no JDK 25+ was found under ${PUNICA_JVM_DIR:-/usr/lib/jvm}." >&2
  echo "  Install one (e.g. Temurin 25) and set JAVA_HOME to it." >&2
  exit 1
fi
export JAVA_HOME="$PUNICA_JDK"
export PATH="$JAVA_HOME/bin:$PATH"
