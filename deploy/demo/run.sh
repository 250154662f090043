#!/usr/bin/env bash
# The README's first command: set everything up, then detect people in the demo clip and print
# every MQTT message streamd publishes. Arguments go to `streamd demo` (e.g. --fast).
# Only what the demo runs (streamd and scikit-image for the clip): the test tools (NNCF, ONNX,
# linters...) come with the second command.
STREAMD_EXTRAS="${STREAMD_EXTRAS:-demo}"
source "$(dirname "$0")/../bootstrap.sh"
exec streamd demo "$@"
