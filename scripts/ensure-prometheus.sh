#!/usr/bin/env bash
# Make `promtool` and `prometheus` available for tests/unit/deploy/test_prometheus.py (rule/config checks and
# the scrape integration test). Idempotent and never fails the build: it always exits 0, and
# without the binaries those tests skip with a reason.
#
#   present on PATH            -> say so, done
#   root (or passwordless sudo) and apt-get
#                              -> apt-get install --no-install-recommends prometheus (Debian/Ubuntu
#                                 package; `apt-get update` only if the first attempt fails), with
#                                 service start-up blocked by a temporary policy-rc.d, so no
#                                 Prometheus daemon is left running on :9090
#   otherwise                  -> one line saying why the Prometheus tests will be skipped
# The apt output goes to a log file ($ENSURE_PROMETHEUS_LOG, default /tmp/ensure-prometheus.log).
set -u

LOG=${ENSURE_PROMETHEUS_LOG:-${TMPDIR:-/tmp}/ensure-prometheus.log}
skip="the promtool/Prometheus tests will be skipped"

have() { command -v "$1" >/dev/null 2>&1; }

if have promtool && have prometheus; then
  echo "ensure-prometheus: $(prometheus --version 2>&1 | head -n1) and promtool already installed"
  exit 0
fi
if ! have apt-get; then
  echo "ensure-prometheus: promtool/prometheus not on PATH and no apt-get: $skip (install Prometheus >= 2.x by hand)"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif have sudo && sudo -n true >/dev/null 2>&1; then
  SUDO="sudo -n"
else
  echo "ensure-prometheus: promtool/prometheus not on PATH and not root (no passwordless sudo): $skip"
  exit 0
fi

start=$(date +%s)
: >"$LOG" 2>/dev/null || LOG=/dev/null

# Keep the package's postinst from starting the service (invoke-rc.d and deb-systemd-invoke both
# honour policy-rc.d; exit 101 = action forbidden). Only if no policy is in place already, and
# removed again on exit.
POLICY=/usr/sbin/policy-rc.d
ours=""
if [ ! -e "$POLICY" ]; then
  if printf '#!/bin/sh\n# temporary, scripts/ensure-prometheus.sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null 2>&1 \
     && $SUDO chmod 755 "$POLICY" 2>/dev/null; then
    ours=1
  fi
fi
cleanup() { if [ -n "$ours" ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

install() {
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=120 prometheus >>"$LOG" 2>&1
}
how="apt-get install"
if ! install; then
  how="apt-get update + install"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q -o DPkg::Lock::Timeout=120 >>"$LOG" 2>&1
  install
fi
secs=$(( $(date +%s) - start ))

if have promtool && have prometheus; then
  echo "ensure-prometheus: installed $(prometheus --version 2>&1 | head -n1) via $how in ${secs}s (log: $LOG)"
else
  echo "ensure-prometheus: $how of the prometheus package failed after ${secs}s (see $LOG): $skip"
fi
exit 0
