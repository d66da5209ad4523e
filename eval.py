#!/usr/bin/env python
"""Evaluate a trained run, or a random baseline, on a dream2flow-gym env.

    python eval.py -f logs/sac/D2F-PushT-v0_1 --episodes 50 --video --json out.json
    python eval.py --env D2F-PushT-v0 --policy random
    python eval.py --help

Prints success rate, final and tracking error and episode return; writes plots
(and videos) to <run>/eval/. The work is done in d2f_rl/evaluate.py.
"""
from d2f_rl.evaluate import main

if __name__ == "__main__":
    main()
