"""Compare two fer-edge JSON-lines runs (x86_64 vs aarch64): the same labels, face by face."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(path: str) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            msg = json.loads(line)
            runs[msg.get("file") or str(msg["frame"])] = msg["faces"]
    return runs


def main() -> int:
    x86, arm = load(sys.argv[1]), load(sys.argv[2])
    ok = set(x86) == set(arm) and len(x86) > 0
    worst = 0.0
    print(f"   {'file':28} {'x86_64':10} {'aarch64':10} max|dscore|  boxes (x86 | aarch64)")
    for name in sorted(set(x86) | set(arm)):
        a, b = x86.get(name, []), arm.get(name, [])
        la = ",".join(f["label"] for f in a) or "-"
        lb = ",".join(f["label"] for f in b) or "-"
        pairs = zip(a, b, strict=False)  # a face-count mismatch is reported below
        diff = max(
            (abs(fa["scores"][k] - fb["scores"][k]) for fa, fb in pairs for k in fa["scores"]),
            default=0.0,
        )
        worst = max(worst, diff)
        same = la == lb and len(a) == len(b)
        ok &= same
        boxes = ""
        if any("box" in f for f in a + b):
            boxes = f"  {[f.get('box') for f in a]} | {[f.get('box') for f in b]}"
        flag = "" if same else "  <-- DIFFERENT"
        print(f"   {name:28} {la:10} {lb:10} {diff:.4f}{boxes}{flag}")
    print(f"   {len(x86)} frames x86_64, {len(arm)} frames aarch64, largest score gap {worst:.4f}")
    if not ok:
        print("== arm64 check FAILED: labels differ", file=sys.stderr)
        return 1
    print("== same labels on x86_64 and aarch64")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
