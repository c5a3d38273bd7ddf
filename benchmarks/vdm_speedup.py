"""Issue 16's VDM ratio: `lowerbound train vdm` now against the code of the issue's start, the same net.

The issue asks for the VDM at "at least 2x its own current examples/s at equal bits/dim after the same
number of steps".  "Current" is the code when the issue's loop work began (commit 8691dc8, --baseline):
its CLI set OMP_WAIT_POLICY=PASSIVE, trained in fp32 with foreach AdamW and a host sync per step.  Both
sides run the user's command, `lowerbound train vdm --data digits`, with that code's defaults and the
same network (the baseline's default UNet, 32 channels without dropout, 705,572 parameters: the new
side gets --set model.unet.channels=32 --set model.unet.dropout=0; the new default net is 48 channels).

speed    `--rounds` rounds, each one old and one new run of `--steps` steps (the order alternates),
         one process each: the OpenMP wait policy is read once per process, so one process cannot
         hold both.  examples/s is each run's own (training steps only, validation not counted);
         the ratio of the medians.  Run it alone: the load average is printed and kept.
quality  one old and one new run of `--quality-steps` steps side by side, one thread each (bits/dim
         after a number of steps does not depend on the load), each test split scored by its own
         code's `lowerbound eval --samples 64` (vdm-mc-k=64) on its best-validation checkpoint.

The baseline's source is taken by `git archive` from this checkout's history into runs/ (ignored).

    python benchmarks/vdm_speedup.py [--parts speed,quality] [--steps 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from diffusion_budget import cli
from machine_info import cpu_model

ROOT = Path(__file__).resolve().parents[1]
SAME_NET = ["--set", "model.unet.channels=32", "--set", "model.unet.dropout=0"]


def baseline_src(commit: str, runs: Path) -> Path:
    """The baseline's src/ from git history, extracted once."""
    dest = runs / f"src-{commit}"
    if not (dest / "src" / "lowerbound").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        got = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True)
        if got.returncode != 0:
            raise SystemExit(f"vdm_speedup: cannot take src/ of commit {commit} from this checkout's git "
                             f"history ({got.stderr.decode().strip() or 'git failed'}); pass --baseline.")
        archive = got.stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest / "src"


def side_env(src: Path, threads: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    env["PYTHONPATH"] = str(src)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def train(side: str, srcs: dict, steps: int, run_dir: Path, threads: int | None = None) -> dict:
    extra = SAME_NET if side == "new" else []
    args = ["train", "vdm", "--data", "digits", "--steps", str(steps), "--run-dir", str(run_dir), *extra]
    if threads is None:  # the speed runs: one validation at the end, none in between
        args += ["--eval-every", str(steps), "--checkpoint-every", str(steps)]
    return cli(args, side_env(srcs[side], threads))


def speed(srcs: dict, args, runs: Path) -> dict:
    rates = {"old": [], "new": []}
    load_before = os.getloadavg()
    for r in range(args.rounds):
        for side in (["old", "new"] if r % 2 == 0 else ["new", "old"]):
            res = train(side, srcs, args.steps, runs / f"speed-{side}-{r}-{time.strftime('%H%M%S')}")
            rates[side].append(round(res["examples_per_s"], 1))
            print(f"  round {r}: {side} {rates[side][-1]:.0f} examples/s ({res.get('precision', 'fp32')})",
                  file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"steps_per_run": args.steps, "rounds": args.rounds, "examples_per_s": rates,
            "examples_per_s_median": med, "ratio_new_over_old": round(med["new"] / med["old"], 3),
            "ratio_per_round": [round(n / o, 3) for n, o in zip(rates["new"], rates["old"])],
            "load_average_before_after": [load_before, os.getloadavg()]}


def quality(srcs: dict, args, runs: Path) -> dict:
    stamp = time.strftime("%H%M%S")
    dirs = {side: runs / f"quality-{side}-{args.quality_steps}-{stamp}" for side in srcs}
    with ThreadPoolExecutor(2) as pool:
        trained = dict(zip(srcs, pool.map(lambda s: train(s, srcs, args.quality_steps, dirs[s], 1), srcs)))
    out = {}
    for side in srcs:
        quiet = ["--no-progress"] if side == "new" else []  # the baseline's eval had no such flag
        tight = cli(["eval", str(dirs[side]), "--samples", "64", *quiet], side_env(srcs[side], None))
        out[side] = {"steps": trained[side]["steps"], "selected": trained[side]["selected"],
                     "valid": {k: trained[side]["splits"]["valid"][k] for k in ("estimator", "bits_per_dim")},
                     "test": {k: tight[k] for k in ("estimator", "bits_per_dim", "stderr")}}
        print(f"  {side}: test {tight['bits_per_dim']:.4f} +- {tight['stderr']:.4f} ({tight['estimator']}), "
              f"{trained[side]['selected']}", file=sys.stderr, flush=True)
    diff = out["new"]["test"]["bits_per_dim"] - out["old"]["test"]["bits_per_dim"]
    se = (out["new"]["test"]["stderr"] ** 2 + out["old"]["test"]["stderr"] ** 2) ** 0.5
    out["difference_new_minus_old"] = {"bits_per_dim": round(diff, 4), "stderr_unpaired": round(se, 4)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="speed,quality")
    p.add_argument("--baseline", default="8691dc8")
    p.add_argument("--steps", type=int, default=300, help="steps of each speed run")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quality-steps", type=int, default=1500)
    p.add_argument("--runs", default=str(ROOT / "runs" / "benchmarks" / "vdm_speedup"))
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "vdm_speedup.json"))
    args = p.parse_args()
    runs = Path(args.runs)
    srcs = {"old": baseline_src(args.baseline, runs), "new": ROOT / "src"}
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    result.update({"benchmark": __doc__.splitlines()[0], "baseline_commit": args.baseline,
                   "command": "lowerbound train vdm --data digits (new: " + " ".join(SAME_NET) + ")",
                   "cpu_model": cpu_model(), "cores": os.cpu_count()})
    for part in [s for s in args.parts.split(",") if s]:
        result[part] = {"speed": speed, "quality": quality}[part](srcs, args, runs)
        out.write_text(json.dumps(result, indent=1))
    if "speed" in result:
        print(f"speed: new/old = {result['speed']['ratio_new_over_old']} "
              f"({result['speed']['examples_per_s_median']} examples/s)")
    if "quality" in result:
        q = result["quality"]
        print(f"quality after {args.quality_steps} steps: old {q['old']['test']['bits_per_dim']:.4f}, "
              f"new {q['new']['test']['bits_per_dim']:.4f}, new - old {q['difference_new_minus_old']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
