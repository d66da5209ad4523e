"""Fuzz the flow loader: many seeded malformed files, each must end in a FlowFormatError naming file and field.

    python benchmarks/fuzz_flows.py                  # 20000 cases
    python benchmarks/fuzz_flows.py --cases 2000 --out /tmp/fuzz.json

Cases come from :mod:`flows.fuzz` (wrong arrays, shapes, dtypes, NaN/inf, values beyond
float32, missing/unknown fields, broken or deeply nested JSON, truncated, bit-flipped and
random bytes, .npy instead of .npz, pickled object arrays). "mishandled" counts any other
exception type and any silent load of changed data (target 0); "intact" is a file whose
damage did not change what it holds (e.g. a flipped byte in a zip timestamp).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_results  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0, help="first seed; case k uses seed + k")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "fuzz_flows.json")
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from flows.fuzz import MUTATIONS, check_case, make_case

    counts = {m: {} for m in MUTATIONS}
    bad = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k in tqdm(range(args.cases), desc="fuzzing flow files", unit="file"):
            seed = args.seed + k
            case = make_case(Path(tmp) / f"case_{seed}.npz", seed)
            outcome, detail = check_case(case)
            c = counts[case.mutation]
            c[outcome] = c.get(outcome, 0) + 1
            if outcome == "mishandled":
                bad.append({"seed": seed, "mutation": case.mutation, "detail": case.detail, "outcome": detail})
            case.path.unlink(missing_ok=True)
    wall = time.perf_counter() - t0

    rows = [{"mutation": m, **c} for m, c in counts.items()]
    total = {k: sum(c.get(k, 0) for c in counts.values()) for k in ("error", "intact", "valid-load", "mishandled")}
    md = [f"Machine: {machine()}.", "", f"Flow-loader fuzz: {args.cases} cases (seeds {args.seed}..{args.seed + args.cases - 1}), {wall:.0f} s.",
          "", "| mutation | refused (FlowFormatError) | harmless (intact) | valid load | **mishandled** |",
          "|---|---:|---:|---:|---:|"]
    for m, c in counts.items():
        md.append(f"| {m} | {c.get('error', 0)} | {c.get('intact', 0)} | {c.get('valid-load', 0)} | {c.get('mishandled', 0)} |")
    md.append(f"| **all** | {total['error']} | {total['intact']} | {total['valid-load']} | **{total['mishandled']}** |")
    md += ["", "Command: `python benchmarks/fuzz_flows.py" + (f" --cases {args.cases}" if args.cases != 20000 else "") + "`"]
    write_results(args.out, rows + [{"mutation": "all", **total, "cases": args.cases, "wall_s": wall, "mishandled_cases": bad}], md)
    if bad:
        print(f"{len(bad)} mishandled, first: {bad[0]}")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
