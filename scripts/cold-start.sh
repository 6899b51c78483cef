#!/usr/bin/env bash
# Cold start of new agents, measured as docs/fleet.md reports it: AGENTS
# are held out of the fleet model's training (MODEL_SPLIT's training file)
# and of the replay's history (SPLIT's training file), then meet SPLIT's
# test week with no history at all. For each fleet setting it prints, over
# the held-out agents only: benign sessions flagged (each stands for a
# false incident: with a release after each, every one would open one) and
# attacked sessions flagged at or after their first attack call, on day
# one and over the week.
# Usage: scripts/cold-start.sh [MODEL_SPLIT=seed-7] [SPLIT=seed-11] [AGENTS]
# AGENTS: comma-separated agent ids (default: one per archetype).
# Needs python3 and a release build (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
model_split="${1:-seed-7}"
split="${2:-seed-11}"
agents="${3:-support-vip-hooli,mail-assist-tyrell,sql-analyst-risk,infra-bot-data,chat-standup-initech,bank-assist-retail}"
data=replay-data

cargo build --release --locked --bin warden >&2
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c "import json,sys; print(json.load(sys.stdin)[\"target_directory\"])")/release/warden"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The training files without the held-out agents.
without() {
  python3 - "$1" "$2" "$agents" <<'PY'
import gzip, json, sys
src, dst, held = sys.argv[1], sys.argv[2], set(sys.argv[3].split(","))
with gzip.open(src, "rt") as f, gzip.open(dst, "wt") as o:
    for line in f:
        if json.loads(line)["agent_id"] not in held:
            o.write(line)
PY
}
without "$data/$model_split/train.jsonl.gz" "$work/model-train.jsonl.gz"
without "$data/$split/train.jsonl.gz" "$work/history.jsonl.gz"
"$bin" train --data "$work/model-train.jsonl.gz" --out "$work/models" >&2

printf '[fleet]\ngroup-threshold = true\n' > "$work/group-threshold.toml"
printf '[fleet]\nblend-prior = true\n' > "$work/blend-prior.toml"

echo "Held out: $agents. Model trained on $model_split without them; $split's history without them; $split's test week streamed."
echo
echo "| run | day one: false incidents per agent | day one: attacked flagged | week: false incidents per agent | week: attacked flagged |"
echo "|---|---|---|---|---|"
for run in no-models group-threshold blend-prior; do
  if [ "$run" = no-models ]; then
    args=(--no-models)
  else
    args=(--models "$work/models" --config "$work/$run.toml")
  fi
  "$bin" replay --train "$work/history.jsonl.gz" "$data/$split/test.jsonl.gz" \
    --labels "$data/$split/labels.jsonl" --decisions "$work/$run.jsonl" "${args[@]}" > /dev/null 2>&1
  python3 - "$run" "$data/$split/test.jsonl.gz" "$data/$split/labels.jsonl" "$work/$run.jsonl" "$agents" <<'PY'
import gzip, json, sys
from collections import defaultdict
run, test, labels, decisions, held = sys.argv[1:6]
held = set(held.split(","))
attack = {json.loads(l)["event_id"] for l in open(labels)}
meta = {}
for l in gzip.open(test, "rt"):
    r = json.loads(l)
    if r.get("kind") in (None, "tool_call") and r["agent_id"] in held:
        meta[r["event_id"]] = (r["agent_id"], r.get("session_id"), r["ts"][:10])
sessions = defaultdict(lambda: {"day": None, "attacked": False, "flagged": False, "caught": False})
for l in open(decisions):
    d = json.loads(l)
    m = meta.get(d["event_id"])
    if m is None:
        continue
    s = sessions[(m[0], m[1])]
    s["day"] = s["day"] or m[2]
    s["attacked"] |= d["event_id"] in attack
    if d["flagged"]:
        s["flagged"] = True
        s["caught"] |= s["attacked"]
first = min(s["day"] for s in sessions.values())
def cells(day):
    ss = [s for s in sessions.values() if day is None or s["day"] == day]
    benign = [s for s in ss if not s["attacked"]]
    attacked = [s for s in ss if s["attacked"]]
    fp = sum(s["flagged"] for s in benign)
    caught = sum(s["caught"] for s in attacked)
    pct = 100 * caught / len(attacked) if attacked else 0
    return [f"{fp / len(held):.2f} ({fp}/{len(benign)})", f"{caught}/{len(attacked)} ({pct:.0f}%)"]
print("| " + " | ".join([run] + cells(first) + cells(None)) + " |")
PY
done
