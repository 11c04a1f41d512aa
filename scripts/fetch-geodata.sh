#!/usr/bin/env bash
# Installs the data enrichment needs on a fresh machine, from PyPI (never committed):
#   DEST/GeoLite2-City.mmdb  from maxminddb-geolite2 (GeoLite2 data by MaxMind,
#                            CC BY-SA 4.0, https://www.maxmind.com; a 2018 snapshot,
#                            good enough for demos, too old for production: production
#                            uses geoipupdate into /var/lib/GeoIP)
#   DEST/regexes.yaml        uap-core's rules (Apache-2.0), rebuilt from the tables that
#                            ua-parser-builtins generates from regexes.yaml
#
# usage: scripts/fetch-geodata.sh DEST
# Env: PYTHON (default python3). Needs pip; nothing is installed outside a temp dir.
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: $0 DEST" >&2
    exit 2
fi
dest=$1
python=${PYTHON:-python3}
mkdir -p "$dest"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pip_install() {
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --no-compile \
        --target "$work/site" "$@"
}

echo "fetching maxminddb-geolite2 (GeoLite2 City, CC BY-SA 4.0)..." >&2
pip_install maxminddb-geolite2
city=$(find "$work/site" -name 'GeoLite2-City.mmdb' -print -quit)
if [[ -z "$city" ]]; then
    echo "error: maxminddb-geolite2 did not contain GeoLite2-City.mmdb" >&2
    exit 1
fi
cp "$city" "$dest/GeoLite2-City.mmdb.tmp"
mv "$dest/GeoLite2-City.mmdb.tmp" "$dest/GeoLite2-City.mmdb"

echo "fetching ua-parser-builtins (uap-core rules, Apache-2.0)..." >&2
pip_install ua-parser-builtins
# ua_parser_builtins/regexes.py is generated from regexes.yaml as constructor calls of
# ua_parser.user_agent_parser's legacy classes, with the YAML keys as positional
# arguments. Stand-in classes record those arguments, and the YAML is written back in
# uap-core's own layout. The stand-in package shadows any real ua_parser.
mkdir -p "$work/stub/ua_parser"
: > "$work/stub/ua_parser/__init__.py"
cat > "$work/stub/ua_parser/user_agent_parser.py" <<'PY'
class _Rule:
    FIELDS = ()
    def __init__(self, pattern, *args):
        if len(args) > len(self.FIELDS):
            raise SystemExit(f"{type(self).__name__}: {len(args)} arguments, expected at most {len(self.FIELDS)}")
        self.pattern = pattern
        self.values = dict(zip(self.FIELDS, args))

class UserAgentParser(_Rule):
    FIELDS = ("family_replacement", "v1_replacement", "v2_replacement", "v3_replacement", "v4_replacement")

class OSParser(_Rule):
    FIELDS = ("os_replacement", "os_v1_replacement", "os_v2_replacement", "os_v3_replacement", "os_v4_replacement")

class DeviceParser(_Rule):
    FIELDS = ("regex_flag", "device_replacement", "brand_replacement", "model_replacement")
PY
PYTHONPATH="$work/stub:$work/site" "$python" - "$dest/regexes.yaml.tmp" <<'PY'
import sys
from ua_parser_builtins import regexes

def quote(s):
    return "'" + s.replace("'", "''") + "'"

sections = [
    ("user_agent_parsers", regexes.USER_AGENT_PARSERS),
    ("os_parsers", regexes.OS_PARSERS),
    ("device_parsers", regexes.DEVICE_PARSERS),
]
with open(sys.argv[1], "w", encoding="utf-8") as out:
    out.write("# uap-core regexes.yaml (Apache-2.0), rebuilt from PyPI ua-parser-builtins\n")
    for name, rules in sections:
        if not rules:
            raise SystemExit(f"ua-parser-builtins: section {name} is empty")
        out.write(f"{name}:\n")
        for rule in rules:
            out.write(f"  - regex: {quote(rule.pattern)}\n")
            for key, value in rule.values.items():
                if value is not None:
                    out.write(f"    {key}: {quote(value)}\n")
    print(f"regexes.yaml: {len(regexes.USER_AGENT_PARSERS)} user agent, {len(regexes.OS_PARSERS)} OS, "
          f"{len(regexes.DEVICE_PARSERS)} device rules", file=sys.stderr)
PY
mv "$dest/regexes.yaml.tmp" "$dest/regexes.yaml"
revision=$(cat "$work/site/REVISION" 2>/dev/null || true)
echo "installed $dest/GeoLite2-City.mmdb and $dest/regexes.yaml${revision:+ (uap-core $revision)}" >&2
