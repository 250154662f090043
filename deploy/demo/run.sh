#!/usr/bin/env bash
# The README's first command: set everything up, then detect people in the demo clip and print
# every MQTT message streamd publishes. Arguments go to `streamd demo` (e.g. --fast).
source "$(dirname "$0")/../bootstrap.sh"
exec streamd demo "$@"
