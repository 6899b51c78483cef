#!/usr/bin/env bash
# Cold start of new agents, measured as docs/fleet.md reports it. For each
# hold-out set, its agents are held out of the fleet model's training
# (MODEL_SPLIT's training file) and of the replay's history (SPLIT's
# training file), then meet SPLIT's test week with no history at all. For
# each fleet setting it prints, over the held-out agents only: benign
# sessions flagged (each stands for a false incident: with a release after
# each, every one would open one) and attacked sessions flagged at or after
# their first attack call, on day one and over the week; one row per set
# and their total.
# Usage: scripts/cold-start.sh [MODEL_SPLIT=seed-7] [SPLIT=seed-11] [SET...]
# SET: comma-separated agent ids. The default is three sets that together
# hold out 20 agents, each set one or two of every archetype: one set's
# eight day-one attacked sessions are too few to judge a rate by.
# Needs python3 and a release build (built here).
set -euo pipefail
cd "$(dirname "$0")/.."
model_split="${1:-seed-7}"
split="${2:-seed-11}"
shift $(($# < 2 ? $# : 2))
sets=("$@")
if [ ${#sets[@]} -eq 0 ]; then
  sets=(
    support-vip-hooli,mail-assist-tyrell,sql-analyst-risk,infra-bot-data,chat-standup-initech,bank-assist-retail
    support-triage-eu,mail-assist-globex,sql-analyst-growth,deploy-bot-payments,chat-helper-globex,payments-ap-acme,travel-desk-acme
    support-billing-umbrella,mail-assist-initech,sql-analyst-ops,ci-bot-web,chat-ops-hooli,payments-treasury-globex,travel-desk-tyrell
  )
fi
data=replay-data

cargo build --release --locked --bin warden >&2
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c "import json,sys; print(json.load(sys.stdin)[\"target_directory\"])")/release/warden"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# A training file without the held-out agents.
without() {
  python3 - "$1" "$2" "$3" <<'PY'
import gzip, json, sys
src, dst, held = sys.argv[1], sys.argv[2], set(sys.argv[3].split(","))
with gzip.open(src, "rt") as f, gzip.open(dst, "wt") as o:
    for line in f:
        if json.loads(line)["agent_id"] not in held:
            o.write(line)
PY
}

printf '[fleet]\ngroup-threshold = true\nblend-prior = false\n' > "$work/group-threshold.toml"
printf '[fleet]\nblend-prior = true\n' > "$work/blend-prior.toml"
runs=(no-models group-threshold blend-prior)
for i in "${!sets[@]}"; do
  held="${sets[$i]}"
  d="$work/set$i"
  mkdir -p "$d"
  without "$data/$model_split/train.jsonl.gz" "$d/model-train.jsonl.gz" "$held"
  without "$data/$split/train.jsonl.gz" "$d/history.jsonl.gz" "$held"
  "$bin" train --data "$d/model-train.jsonl.gz" --out "$d/models" >&2
  for run in "${runs[@]}"; do
    if [ "$run" = no-models ]; then
      args=(--no-models)
    else
      args=(--models "$d/models" --config "$work/$run.toml")
    fi
    "$bin" replay --train "$d/history.jsonl.gz" "$data/$split/test.jsonl.gz" \
      --labels "$data/$split/labels.jsonl" --decisions "$d/$run.jsonl" "${args[@]}" > /dev/null 2>&1
  done
  echo "Set $((i + 1)): $held" >&2
done

echo "Model trained on $model_split without each set; $split's history without it; $split's test week streamed."
echo
echo "| run | set | day one: false incidents per agent | day one: attacked flagged | week: false incidents per agent | week: attacked flagged |"
echo "|---|---|---|---|---|---|"
for run in "${runs[@]}"; do
  python3 - "$run" "$data/$split/test.jsonl.gz" "$data/$split/labels.jsonl" "$work" "${sets[@]}" <<'PY'
import gzip, json, sys
from collections import defaultdict
run, test, labels, work, sets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
attack = {json.loads(l)["event_id"] for l in open(labels)}
meta = {}
for l in gzip.open(test, "rt"):
    r = json.loads(l)
    if r.get("kind") in (None, "tool_call"):
        meta[r["event_id"]] = (r["agent_id"], r.get("session_id"), r["ts"][:10])
first = min(m[2] for m in meta.values())
total = {"agents": 0, "one": [0, 0, 0], "week": [0, 0, 0]}
def tally(ss):
    benign = [s for s in ss if not s["attacked"]]
    attacked = [s for s in ss if s["attacked"]]
    return [sum(s["flagged"] for s in benign), len(benign), sum(s["caught"] for s in attacked), len(attacked)]
def cells(agents, t):
    fp, benign, caught, attacked = t
    pct = 100 * caught / attacked if attacked else 0
    return [f"{fp / agents:.2f} ({fp}/{benign})", f"{caught}/{attacked} ({pct:.0f}%)"]
rows, sums = [], [[0] * 4, [0] * 4]
for i, held in enumerate(sets):
    held = set(held.split(","))
    sessions = defaultdict(lambda: {"day": None, "attacked": False, "flagged": False, "caught": False})
    for l in open(f"{work}/set{i}/{run}.jsonl"):
        d = json.loads(l)
        m = meta.get(d["event_id"])
        if m is None or m[0] not in held:
            continue
        s = sessions[(m[0], m[1])]
        s["day"] = s["day"] or m[2]
        s["attacked"] |= d["event_id"] in attack
        if d["flagged"]:
            s["flagged"] = True
            s["caught"] |= s["attacked"]
    one = tally([s for s in sessions.values() if s["day"] == first])
    week = tally(list(sessions.values()))
    for acc, t in ((sums[0], one), (sums[1], week)):
        for j in range(4):
            acc[j] += t[j]
    total["agents"] += len(held)
    print("| " + " | ".join([run, str(i + 1)] + cells(len(held), one) + cells(len(held), week)) + " |")
if len(sets) > 1:
    print("| " + " | ".join([f"**{run}**", "all"] + cells(total["agents"], sums[0]) + cells(total["agents"], sums[1])) + " |")
PY
done
