"""Does a 2-process CPU torchrun training exit cleanly?  (issue 14: rank 1 sometimes aborted with
"terminate called without an active exception", SIGABRT, after training had finished.)

Runs the issue's command N times, each in a fresh run directory, and counts the runs whose torchrun
exit status is not 0 and the runs whose output holds the C++ abort message.  The failure rate is a
binomial proportion: its standard error sqrt(p (1 - p) / N) is printed beside it, and with 0
failures in N runs the one-sided 95% upper bound 3 / N (the rule of three).  CPU-heavy: run it
under the benchmark lock.

    flock /work/bench.lock python benchmarks/torchrun_exit.py [--runs 20] [--label after]
        [--competitors 0] [--out benchmarks/results/torchrun_exit.json]

`--mechanism` runs, instead of training, the smallest program that shows the cause: one DDP step on
gloo, destroy_process_group, then one rank leaves 0.05 s after the other (alternating which), ending
either through the ordinary interpreter exit (`--exit plain`) or through lowerbound's
runtime.end_worker (`--exit end_worker`).  DDP keeps the gloo threads alive after
destroy_process_group, and the ordinary exit of the first rank to leave then aborts.

`--competitors N` runs N busy-looping processes beside it (the failure was seen on a loaded machine).
A worker that aborts leaves a core file (the core size limit is lifted for the runs); the script
prints the aborting thread's backtrace from it with gdb, when gdb is installed, and deletes the core.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import cpu_model

ABORT = "terminate called without an active exception"
TRAIN = ["train", "vae", "--data", "digits", "--steps", "20", "--checkpoint-every", "10",
         "--batch-size", "32", "--device", "cpu"]




def _allow_cores() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def backtrace(core: Path) -> str:
    """The backtraces of every thread of a core file (gdb), or '' without gdb."""
    if shutil.which("gdb") is None:
        return ""
    out = subprocess.run(["gdb", "-batch", "-ex", "thread apply all bt 25", sys.executable, str(core)],
                         capture_output=True, text=True, timeout=300)
    return out.stdout[-20000:]


def mechanism_worker(exit_mode: str, late: int) -> None:
    """One DDP step on gloo, destroy_process_group, rank `late` leaves 0.05 s after the other."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    ddp = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 1))
    ddp(torch.ones(2, 3)).sum().backward()
    del ddp
    dist.destroy_process_group()
    if int(os.environ["RANK"]) == late:
        time.sleep(0.05)
    if exit_mode == "end_worker":
        from lowerbound.train.runtime import end_worker

        end_worker(0)


def one_run(folder: Path, i: int, exit_mode: str | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cwd = folder / f"cwd{i}"
    cwd.mkdir()
    program = (["-m", "lowerbound", *TRAIN, "--run-dir", str(folder / f"run{i}")] if exit_mode is None else
               [str(Path(__file__).resolve()), "--worker", exit_mode, "--late", str(i % 2)])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *program]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=cwd,
                         preexec_fn=_allow_cores)
    text = out.stdout + out.stderr
    cores = sorted(cwd.glob("core*"))
    trace = backtrace(cores[0]) if cores else ""
    for core in cores:
        core.unlink()
    return {"returncode": out.returncode, "abort_message": ABORT in text,
            "seconds": round(time.perf_counter() - t0, 2),
            "tail": text[-1500:] if out.returncode else "", "backtrace": trace}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--label", default="current")
    p.add_argument("--competitors", type=int, default=0)
    p.add_argument("--mechanism", action="store_true", help="the minimal DDP exit program, not training")
    p.add_argument("--exit", default="plain", choices=["plain", "end_worker"])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--late", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--out", default="benchmarks/results/torchrun_exit.json")
    args = p.parse_args()
    if args.worker:
        return mechanism_worker(args.worker, args.late)
    runs = []
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.competitors)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.runs):
                r = one_run(Path(tmp), i, args.exit if args.mechanism else None)
                runs.append(r)
                print(f"run {i + 1:2d}/{args.runs}: exit {r['returncode']}, abort message "
                      f"{'yes' if r['abort_message'] else 'no'}, {r['seconds']} s", flush=True)
                if r["returncode"]:
                    print(r["tail"], r["backtrace"], sep="\n", flush=True)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    n = len(runs)
    failed = sum(r["returncode"] != 0 for r in runs)
    aborted = sum(r["abort_message"] for r in runs)
    rate = failed / n
    result = {"label": args.label, "competitors": args.competitors,
              "command": f"mechanism, exit {args.exit}" if args.mechanism else
              "torchrun --standalone --nproc_per_node=2 -m lowerbound " + " ".join(TRAIN),
              "runs": n, "failed": failed, "abort_messages": aborted,
              "failure_rate": rate, "stderr": math.sqrt(rate * (1 - rate) / n),
              "upper95_if_none": 3 / n if failed == 0 else None,
              "median_seconds": sorted(r["seconds"] for r in runs)[n // 2],
              "loadavg": os.getloadavg(), "cpu": cpu_model(),
              "failures": [r for r in runs if r["returncode"]]}
    print("\n| label | runs | failed | abort message | failure rate +- stderr | median s | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.label} | {n} | {failed} | {aborted} | {rate:.2f} +- {result['stderr']:.2f} | "
          f"{result['median_seconds']} | {', '.join(f'{x:.2f}' for x in result['loadavg'])} |")
    print(f"cpu: {result['cpu']}")
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    previous[args.label] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(previous, indent=2) + "\n")


if __name__ == "__main__":
    main()
