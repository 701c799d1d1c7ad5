#!/usr/bin/env bash
# Builds the FieldSync mobile SDK (bindings/, package fieldsync-ffi), generates its
# Kotlin, Swift and Python bindings in library mode into target/bindings/, and runs the
# binding tests: Kotlin on the JVM, Python with pytest, and a text check of the Swift
# sources (there is no Swift compiler on this machine kind: Swift is NOT compiled).
# The sync tests start the sync server (fieldsync-server, built here; its path goes to
# the tests in FIELDSYNC_SERVER_BIN) on 127.0.0.1 with a temporary data folder.
#
# Idempotent. What is missing is installed without prompting: kotlinc (npm package
# kotlin-compiler) and a pytest venv into ./tools/ (git-ignored), JNA (Debian's
# libjna-java) with apt-get. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=$ROOT/tools
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET/bindings
KOTLIN_VERSION=2.4.20
START=$SECONDS

step() { echo "== bindings: $*"; }
die() { echo "bindings: $*" >&2; exit 1; }

apt_install() {
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root or sudo to apt-get install $*"
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null 2>&1 || die "install $* (no apt-get here)"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y -q "$@" </dev/null \
    || { "${sudo[@]}" apt-get update -q </dev/null && "${sudo[@]}" apt-get install -y -q "$@" </dev/null; }
}

case "$(uname -s)" in
  Darwin) LIB_FILE=libfieldsync_ffi.dylib ;;
  *) LIB_FILE=libfieldsync_ffi.so ;;
esac

# Two cargo invocations on purpose: building the library together with the bindgen
# would unify uniffi's `cli` features into the cdylib.
step "cargo build -p fieldsync-ffi"
cargo build -p fieldsync-ffi --locked
step "cargo build -p fieldsync-uniffi-bindgen"
cargo build -p fieldsync-uniffi-bindgen --locked
# The sync tests start a real server on loopback: a third, separate invocation, so that
# the server's dependencies (axum, tokio's full runtime) do not unify into the cdylib.
step "cargo build -p fieldsync-server"
cargo build -p fieldsync-server --locked
LIB=$TARGET/debug/$LIB_FILE
BINDGEN=$TARGET/debug/uniffi-bindgen
export FIELDSYNC_SERVER_BIN=$TARGET/debug/fieldsync-server
[ -x "$FIELDSYNC_SERVER_BIN" ] || die "no server binary at $FIELDSYNC_SERVER_BIN"

step "generate Kotlin, Swift and Python into $OUT"
rm -rf "$OUT/kotlin" "$OUT/swift" "$OUT/python" "$OUT/lib"
mkdir -p "$OUT/lib"
cp "$LIB" "$OUT/lib/"
for language in kotlin swift python; do
  "$BINDGEN" generate --no-format --library "$OUT/lib/$LIB_FILE" \
    --language "$language" --out-dir "$OUT/$language" >/dev/null
done
# The Python module loads the library from its own folder.
cp "$LIB" "$OUT/python/"

step "Python tests (pytest)"
PY=$TOOLS/python/bin/python
if ! "$PY" -c "import pytest" >/dev/null 2>&1; then
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
  python3 -m venv "$TOOLS/python" || { apt_install python3-venv && python3 -m venv "$TOOLS/python"; }
  "$PY" -m pip install --disable-pip-version-check -q pytest </dev/null
fi
# pytest exits non-zero on a failure and with 5 when it collected no test: both fail here.
PYTHONPATH=$OUT/python PYTHONDONTWRITEBYTECODE=1 \
  "$PY" -m pytest -q -p no:cacheprovider bindings/tests/python

step "Kotlin tests (JVM)"
command -v java >/dev/null 2>&1 || apt_install default-jre-headless
JNA_JAR=/usr/share/java/jna.jar
[ -f "$JNA_JAR" ] || apt_install libjna-java
[ -f "$JNA_JAR" ] || die "libjna-java did not install $JNA_JAR"
KOTLIN_HOME=$TOOLS/kotlin/node_modules/kotlin-compiler
if ! grep -qs "\"version\": \"$KOTLIN_VERSION\"" "$KOTLIN_HOME/package.json"; then
  command -v npm >/dev/null 2>&1 || apt_install npm
  npm install --prefix "$TOOLS/kotlin" --no-audit --no-fund --loglevel=error \
    "kotlin-compiler@$KOTLIN_VERSION" </dev/null
fi
KLIB=$KOTLIN_HOME/lib
CLASSPATH_DEPS=$JNA_JAR:$KLIB/kotlinx-coroutines-core-jvm.jar:$KLIB/kotlin-test.jar
KOTLIN_SOURCES=("$OUT/kotlin/uniffi/fieldsync_ffi/fieldsync_ffi.kt" bindings/tests/kotlin/*.kt)
# kotlinc takes most of this script's time: skip it when the sources did not change.
STAMP=$(cat "${KOTLIN_SOURCES[@]}" | sha256sum | cut -d' ' -f1)
CLASSES=$TARGET/bindings-kotlin-classes
if [ "$(cat "$CLASSES/.stamp" 2>/dev/null)" != "$STAMP" ]; then
  rm -rf "$CLASSES"
  "$KOTLIN_HOME/bin/kotlinc" -nowarn -cp "$CLASSPATH_DEPS" "${KOTLIN_SOURCES[@]}" -d "$CLASSES"
  echo "$STAMP" >"$CLASSES/.stamp"
else
  echo "kotlinc: sources unchanged, reusing the compiled classes"
fi
java -Djna.library.path="$OUT/lib" -cp "$CLASSES:$KLIB/kotlin-stdlib.jar:$CLASSPATH_DEPS" ReplicaTestKt

step "Swift check (NOT compiled: no Swift compiler here; the generated API is checked by text)"
"$PY" bindings/tests/swift/check_swift.py "$OUT/swift" "$OUT/lib/$LIB_FILE"

step "all binding tests passed in $((SECONDS - START))s"
