#!/usr/bin/env bash
# Checks the Odoo addons under addons/.
#  (a) Every Python file byte-compiles and every XML file parses.
#  (b) When ODOOPBX_ODOO_PATH points to an Odoo 17 source tree and PostgreSQL is
#      reachable: installs the addons in a throwaway database, runs their tests with
#      Odoo's own runner, fails on any ERROR/FAIL line, and drops the database.
# This script never installs Odoo; it only runs an Odoo tree that is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# Keep compiled files out of the work tree.
scratch=$(mktemp -d)
export PYTHONPYCACHEPREFIX="$scratch/pycache"

db=""
cleanup() {
	if [ -n "$db" ]; then
		"$python" - "$db" <<-'EOF' || echo "addons: could not drop database $db" >&2
			import sys, psycopg2
			conn = psycopg2.connect(dbname="postgres")
			conn.autocommit = True
			with conn.cursor() as cr:
			    cr.execute('DROP DATABASE IF EXISTS "%s"' % sys.argv[1])
			conn.close()
		EOF
	fi
	rm -rf "$scratch"
}
trap cleanup EXIT

# Odoo 17 runs on Debian's python3-* packages; prefer the system interpreter.
python=${ODOOPBX_PYTHON:-}
if [ -z "$python" ]; then
	if [ -x /usr/bin/python3 ]; then python=/usr/bin/python3; else python=$(command -v python3); fi
fi

# (a) syntax
mapfile -t addon_dirs < <(find addons -mindepth 2 -maxdepth 2 -name __manifest__.py -printf '%h\n' | sort)
if [ "${#addon_dirs[@]}" -eq 0 ]; then
	echo "addons: no addon found under addons/"
	exit 0
fi
"$python" -m compileall -q addons >/dev/null || { echo "addons: Python byte-compilation failed" >&2; "$python" -m compileall -q addons; exit 1; }
find addons -name '*.xml' -print0 | xargs -0 -r "$python" -c '
import sys
import xml.etree.ElementTree as ET
bad = 0
for path in sys.argv[1:]:
    try:
        ET.parse(path)
    except ET.ParseError as e:
        print("addons: %s: %s" % (path, e), file=sys.stderr)
        bad += 1
sys.exit(1 if bad else 0)
'
echo "addons: syntax OK (${#addon_dirs[@]} addon(s))"

# (b) Odoo's test runner
odoo=${ODOOPBX_ODOO_PATH:-}
if [ -z "$odoo" ]; then
	echo "addons: Odoo tests skipped: ODOOPBX_ODOO_PATH not set"
	exit 0
fi
if [ ! -f "$odoo/odoo-bin" ] || ! grep -q "^version_info = (17," "$odoo/odoo/release.py" 2>/dev/null; then
	echo "addons: ODOOPBX_ODOO_PATH=$odoo is not an Odoo 17 source tree" >&2
	exit 1
fi
if ! "$python" -c 'import psycopg2; psycopg2.connect(dbname="postgres").close()' 2>/dev/null; then
	echo "addons: Odoo tests skipped: PostgreSQL not reachable"
	exit 0
fi

addons_path=""
for dir in "$odoo/addons" "$odoo/odoo/addons" "$repo/addons"; do
	[ -d "$dir" ] && addons_path="${addons_path:+$addons_path,}$dir"
done
modules=$(for d in "${addon_dirs[@]}"; do basename "$d"; done | paste -sd, -)
tags=$(for d in "${addon_dirs[@]}"; do printf '/%s\n' "$(basename "$d")"; done | paste -sd, -)
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
db="odoopbx_addons_$(date +%s)_$$"
log="$scratch/odoo.log"

echo "addons: running Odoo tests for $modules in database $db"
set +e
timeout "${ODOOPBX_ADDONS_TIMEOUT:-1800}" "$python" "$odoo/odoo-bin" \
	-d "$db" --addons-path="$addons_path" --data-dir="$scratch/data" \
	-i "$modules" --test-enable --test-tags "$tags" --stop-after-init --without-demo=all \
	--http-interface=127.0.0.1 --http-port="$port" --log-level=info >"$log" 2>&1
rc=$?
set -e

summary=$(grep -E 'odoo\.tests\.result: [0-9]+ failed, [0-9]+ error\(s\) of [0-9]+ tests' "$log" | tail -n 1 || true)
problems=$(grep -E '^[0-9-]+ [0-9:,]+ [0-9]+ (ERROR|CRITICAL) |(ERROR|FAIL): ' "$log" || true)
if [ -n "$summary" ]; then
	read -r failed errors total < <(echo "$summary" | sed -E 's/.*: ([0-9]+) failed, ([0-9]+) error\(s\) of ([0-9]+) tests.*/\1 \2 \3/')
	bad=$((failed + errors))
	echo "addons: $((total - bad)) passed, $bad failed"
else
	echo "addons: 0 passed, 0 failed (no test summary from Odoo, exit code $rc)"
fi
if [ -n "$problems" ] || [ -z "$summary" ] || [ "$rc" -ne 0 ] || [ "${bad:-1}" -ne 0 ]; then
	echo "addons: Odoo tests FAILED (exit code $rc)" >&2
	if [ -n "$problems" ]; then echo "$problems" | head -n 50 >&2; else tail -n 50 "$log" >&2; fi
	exit 1
fi
