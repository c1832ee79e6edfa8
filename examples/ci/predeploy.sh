#!/usr/bin/env bash
# Pre-deploy check: run the release gate (examples/test_release_gate.py, the
# bedrock_regression marker) for each candidate model against its base, before deploying.
#
#   examples/ci/predeploy.sh                  # the three example fine-tunes, on the emulator
#   examples/ci/predeploy.sh MODEL_ID ...     # your candidates (ARNs or model ids)
#
# Exit status: 0 when every candidate passes its gate, 1 when a gate fails (or a Bedrock
# test fails), 2 when pytest could not run at all (bad option, missing package...).
#
# Environment:
#   PYTHON       the interpreter that has pytest-bedrock-latency (default: python3)
#   REPORT_DIR   where the JSON reports and logs go (default: .bedrock-predeploy)
#   JOBS         candidates gated at the same time (default: 1; each run has its own emulator)
#   PYTEST_ARGS  more pytest options, e.g. "--bedrock-regression-budget 20", or
#                "-o bedrock_emulator=false" to gate on Amazon Bedrock itself (with AWS credentials)
#
# It uses examples/pytest.ini: the embedded emulator, its profiles, the base model.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
examples="$(dirname "$here")"
python="${PYTHON:-python3}"
report_dir="${REPORT_DIR:-.bedrock-predeploy}"
jobs="${JOBS:-1}"
mkdir -p "$report_dir"
report_dir="$(cd "$report_dir" && pwd)"

if [ "$#" -eq 0 ]; then
    set -- \
        arn:aws:bedrock:us-east-1:123456789012:custom-model/support-concise \
        arn:aws:bedrock:us-east-1:123456789012:custom-model/support-verbose \
        arn:aws:bedrock:us-east-1:123456789012:custom-model/support-slow
fi

gate() {  # gate MODEL_ID NAME: one pytest run; its exit status goes to NAME.status
    local model="$1" name="$2"
    # shellcheck disable=SC2086  # PYTEST_ARGS is a list of options
    (cd "$examples" && "$python" -m pytest test_release_gate.py -q -p no:cacheprovider \
        --bedrock-model "$model" --bedrock-require \
        --bedrock-report "$report_dir/$name.json" ${PYTEST_ARGS:-}) >"$report_dir/$name.log" 2>&1
    echo "$?" >"$report_dir/$name.status"
}

names=()
for model in "$@"; do
    name="$(printf '%s' "${model##*/}" | tr -c 'A-Za-z0-9._-' '_')"
    names+=("$name")
    rm -f "$report_dir/$name.status"
    gate "$model" "$name" &
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.2; done
done
wait

summarise() {  # the gate's ratios from the JSON report, one line
    "$python" - "$1" <<'PY'
import json, sys

try:
    with open(sys.argv[1]) as handle:
        tests = json.load(handle)["tests"]
except (OSError, ValueError, KeyError):
    sys.exit(0)
for test in tests:
    gate = test.get("regression")
    if gate:
        ratios = ", ".join(
            f"{m['label']} x{m['estimate']:.2f}{' FAIL' if m['verdict'] == 'fail' else ''}"
            for m in gate["metrics"] if m["estimate"] is not None
        )
        print(f"{len(gate['pairs'])} pairs vs {gate['base'].rsplit('/', 1)[-1]}: {ratios}")
PY
}

echo "Pre-deploy release gate: $# candidate(s); reports and logs in $report_dir"
worst=0
for name in "${names[@]}"; do
    status="$(cat "$report_dir/$name.status" 2>/dev/null || echo 2)"
    case "$status" in
        0) verdict="PASS" ;;
        1) verdict="FAIL"; [ "$worst" -lt 1 ] && worst=1 ;;
        *) verdict="ERROR"; worst=2 ;;
    esac
    printf '  %-5s %-24s %s\n' "$verdict" "$name" "$(summarise "$report_dir/$name.json")"
    if [ "$verdict" != "PASS" ]; then
        # Why: the gate's headline, a failed bound, or pytest's own complaint.
        grep -E '^(bedrock_regression: |bedrock_length: |bedrock_latency: |bedrock timeout: |Bedrock is not configured|ERROR: )' \
            "$report_dir/$name.log" | sort -u | sed 's/^/        /'
    fi
done
if [ "$worst" -eq 2 ]; then
    echo "pytest could not run for some candidate: see the .log files in $report_dir" >&2
fi
exit "$worst"
