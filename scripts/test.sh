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

if [ ! -f tests/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json ]; then
  (cd tests/npm && npm install --no-audit --no-fund --silent)
fi

# The benches run once each in test mode (they must not rot), then every test; the test
# summary is the last thing printed.
cargo test --benches
cargo test --lib --bins --tests "$@"
