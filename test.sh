#!/usr/bin/env bash
# The whole test suite in one command, on a fresh machine as on CI:
#   ./test.sh
# It installs the real clients the tests drive (Debian packages and two Python modules,
# when missing), starts the local PostgreSQL when it is installed but stopped, runs every
# test of the workspace against SQLite and PostgreSQL, and walks the README's tour with the
# built binary. Extra arguments go to `cargo test` (e.g. ./test.sh -p vakt-store).
#
# Without PostgreSQL (no pg_ctlcluster here) the PostgreSQL halves print a loud SKIPPED line
# and pass; set VAKT_TEST_PG_URL to use another server.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
started=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))"; }

# Root installs directly; anyone else through sudo when it is there.
as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else echo "test.sh: need root (or sudo) to run: $*" >&2; return 1
    fi
}

step "tools: the real clients the tests drive"
# logger (bsdutils), snmptrap/snmpinform (snmp), Prometheus, Alertmanager and amtool, and
# the Nagios plugins (monitoring-plugins-basic) the command probe runs, and Chromium with
# chromedriver for the console's browser test.
packages="bsdutils snmp prometheus prometheus-alertmanager curl openssl python3 python3-pip monitoring-plugins-basic chromium chromium-driver"
missing=""
for tool in logger snmptrap prometheus prometheus-alertmanager amtool curl openssl python3 chromium chromedriver; do
    command -v "$tool" >/dev/null || missing="$missing $tool"
done
[ -x /usr/lib/nagios/plugins/check_tcp ] || missing="$missing check_tcp"
if [ -n "$missing" ]; then
    echo "installing for:$missing"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi
for tool in logger snmptrap prometheus prometheus-alertmanager amtool curl openssl python3 chromium chromedriver; do
    command -v "$tool" >/dev/null || { echo "missing $tool"; exit 1; }
done
# axe-core, the accessibility checker the browser test runs in the console's pages.
if [ ! -f target/npm/node_modules/axe-core/axe.min.js ]; then
    npm install --prefix target/npm --no-audit --no-fund --silent axe-core@4
fi
node -e 'console.log("axe-core", require("./target/npm/node_modules/axe-core/package.json").version)'
[ -x /usr/lib/nagios/plugins/check_tcp ] || { echo "missing check_tcp"; exit 1; }
# A real SMTP server for the email tests (python3 -m aiosmtpd), a real iCalendar reader for
# the on-call calendar export.
python3 -c 'import aiosmtpd, icalendar' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check aiosmtpd icalendar \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages aiosmtpd icalendar
python3 -c 'import aiosmtpd, icalendar; print("aiosmtpd", aiosmtpd.__version__, "icalendar", icalendar.__version__)'
cargo --version
rustc --version

step "services: PostgreSQL"
if [ -z "${VAKT_TEST_PG_URL:-}" ] && command -v pg_isready >/dev/null; then
    if ! pg_isready -h 127.0.0.1 -p 5432 -q && command -v pg_ctlcluster >/dev/null; then
        as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
        for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
    fi
    if pg_isready -h 127.0.0.1 -p 5432 -q; then
        export VAKT_TEST_PG_URL="postgres://postgres@127.0.0.1:5432/postgres"
    fi
fi
echo "VAKT_TEST_PG_URL=${VAKT_TEST_PG_URL:-(unset: the PostgreSQL halves will say SKIPPED)}"

step "tests"
cargo test --workspace --all-targets "$@"

step "README tour against the built binary"
# `cargo test` built it (for the CLI tests); build it only when a filter left it out.
[ -x target/debug/vakt ] || cargo build --quiet --bin vakt
.ci/readme-tour target/debug/vakt

step "done"
