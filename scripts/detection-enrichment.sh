# Sourced by the detection scripts: the `enrichment:` section of their camfa.yaml, so that
# the offline replay and the daemon enrich the labelled stream the same way. With
# ../shared/testdata (MaxMind's test databases, uap-core's rules) the user-agent features
# and the anonymous-IP detector are exercised; without it enrichment is off, which the
# scripts say, and the figures leave those features out.
detection_enrichment() {
    local testdata none=$1/none
    testdata=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../shared/testdata" 2>/dev/null && pwd) || testdata=
    if [ -n "$testdata" ] && [ -f "$testdata/uap-core/regexes.yaml" ]; then
        cat <<YAML
enrichment:
  cityDatabase: $testdata/maxmind/test-data/GeoIP2-City-Test.mmdb
  asnDatabase: $testdata/maxmind/test-data/GeoLite2-ASN-Test.mmdb
  anonymousIPDatabase: $testdata/maxmind/test-data/GeoIP2-Anonymous-IP-Test.mmdb
  userAgentRules: $testdata/uap-core/regexes.yaml
YAML
    else
        echo "no ../shared/testdata: enrichment off (no user-agent features, no anonymous-IP flags)" >&2
        cat <<YAML
enrichment:
  cityDatabase: $none
  asnDatabase: $none
  anonymousIPDatabase: $none
  userAgentRules: $none
YAML
    fi
}
