#!/usr/bin/env bash
# Installs what the test suite needs when it is absent: redis-server for the
# Redis store, audit and fault tests (its Debian package brings redis-cli,
# which joins the test Redis Cluster; Sentinel runs as redis-server --sentinel), nginx for the forward-auth gateway test,
# chromium for the web console's browser test,
# Node.js and the npm packages of the FHIR server test. Go modules and code generators come
# through the Go module proxy on first use.
set -euo pipefail
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server (Debian package)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is not installed; install it (e.g. apt-get install redis-server) to run the Redis tests" >&2
  fi
fi
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing nginx (Debian package)" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
  else
    echo "nginx is not installed; install it (e.g. apt-get install nginx) to run the gateway test" >&2
  fi
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing nodejs and npm (Debian packages) for the FHIR server test" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "node and npm are not installed; install Node.js 20.19 or later to run the FHIR server test (test/fhirserver)" >&2
  fi
fi
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (Debian package) for the web console's browser test" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || echo "chromium could not be installed; the browser test skips" >&2
  else
    echo "chromium is not installed; install it (e.g. apt-get install chromium) to run the web console's browser test" >&2
  fi
fi
# The FHIR server test's packages, from the committed lockfile.
if command -v npm >/dev/null 2>&1 && [ ! -f "$(dirname "$0")/fhirserver/node_modules/@medplum/fhir-router/package.json" ]; then
  (cd "$(dirname "$0")/fhirserver" && npm ci --no-audit --no-fund --loglevel=error) || echo "npm ci failed in test/fhirserver; its test installs again or skips" >&2
fi
# The HL7 FHIR R4 example resources the enforcement package's test runs through.
if command -v npm >/dev/null 2>&1 && [ ! -f "$(dirname "$0")/../pep/testdata/hl7pkg/node_modules/hl7.fhir.r4.examples/Patient-example.json" ]; then
  (cd "$(dirname "$0")/../pep/testdata/hl7pkg" && npm ci --no-audit --no-fund --loglevel=error) || echo "npm ci failed in pep/testdata/hl7pkg; the HL7 examples test skips" >&2
fi
