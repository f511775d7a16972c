"""`edgekd sweep`: the most accurate student that meets a latency (and energy) budget on the target (docs/sweep.md).

budget.py parses `--budget` and checks bench records against it; candidates.py names the students to try
(zoo family x backbone x width x input size); stages.py runs stage 1 (export untrained, time, filter) and stage 2
(distil, export with the parity gate, evaluate), each cached; report.py writes sweep.json, sweep.md and front.png.
"""
