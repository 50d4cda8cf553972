#!/usr/bin/env bash
# The test command of the README: installs what the tests need when it is missing, then runs
# every test. A test whose dependency is still absent fails and names it; none is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
apt_install() {
  if need apt-get; then
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "$@"
  else
    echo "cannot install $* (no apt-get): install it by hand" >&2
  fi
}

need python3 || apt_install python3          # independent HMAC signer of the tests
need npm || apt_install npm                  # the payload fixtures come from the npm registry
[ -x /usr/sbin/nginx ] || apt_install nginx  # the reverse proxy in front of the gateway in tests
[ -x /usr/bin/prometheus-alertmanager ] || apt_install prometheus-alertmanager  # a real Alertmanager (tests/api/catalogue_ops.rs)
[ -x /usr/bin/chromium ] || apt_install chromium  # the browser of the console's end-to-end test (tests/api/console_browser.rs)
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || apt_install fonts-wqy-microhei  # Chinese text in its screenshots

# Postgres for the tests of the Postgres store (tests/api/pg.rs): each test creates and drops a
# database of its own on the server at FXHOOK_TEST_DATABASE_URL. When none answers at a local
# URL, Debian's postgresql is installed if missing and its cluster started, with trust auth for
# postgres over 127.0.0.1.
default_database_url="postgres://postgres@127.0.0.1:5432/test"
export FXHOOK_TEST_DATABASE_URL="${FXHOOK_TEST_DATABASE_URL:-$default_database_url}"
pg_answers() { psql "$FXHOOK_TEST_DATABASE_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; }
start_postgres() {
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || apt_install postgresql
  need psql || apt_install postgresql-client
  local version
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  [ -d "/etc/postgresql/$version/main" ] || $sudo pg_createcluster "$version" main
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! $sudo grep -Eq '^host[[:space:]]+all[[:space:]]+(all|postgres)[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    # The first matching line wins: this one goes ahead of Debian's scram-sha-256 for 127.0.0.1.
    $sudo sed -i '1i host all postgres 127.0.0.1/32 trust  # added by scripts/test.sh' "$hba"
  fi
  if $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main status >/dev/null 2>&1; then
    $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  else
    $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  for _ in $(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done
  # A new cluster has no database "test", which the default URL names.
  if [ "$FXHOOK_TEST_DATABASE_URL" = "$default_database_url" ] && ! pg_answers; then
    psql -h 127.0.0.1 -U postgres -d postgres -qc 'CREATE DATABASE test'
  fi
}
if ! pg_answers; then
  case "$FXHOOK_TEST_DATABASE_URL" in
    *@127.0.0.1[:/]* | *@localhost[:/]* | *://127.0.0.1[:/]* | *://localhost[:/]*) start_postgres ;;
  esac
  pg_answers || echo "no Postgres answers at FXHOOK_TEST_DATABASE_URL=$FXHOOK_TEST_DATABASE_URL: the Postgres store's tests will fail" >&2
fi

if [ ! -f tests/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json ] ||
   [ ! -f tests/npm/node_modules/playwright-core/package.json ]; then
  (cd tests/npm && npm install --no-audit --no-fund --silent)
fi

# The benches run once each in test mode (they must not rot), then every test; the test
# summary is the last thing printed.
cargo test --benches
cargo test --lib --bins --tests "$@"
