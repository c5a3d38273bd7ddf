"""Mutation run: does the suite fail when a bound-computing line is wrong? (issue 15; on demand, not CI)

A mutant is one small change to one line (DeMillo, Lipton & Sayward 1978, "Hints on test data
selection"; the operators of mutmut and cosmic-ray): an arithmetic operator swapped (+ -, * /, ** *),
a unary minus dropped, a number changed, a comparison loosened or tightened, a sqrt / exp / log dropped,
a mean made a sum.  Two sets are run: the hand-written mutants of the issue (LISTED) and mutants
generated from the AST of the functions that compute bounds in prob/, models/, eval/ (FUNCTIONS), at
most --cap of them, drawn with a fixed seed.  Each runs on a COPY of the tree in a temporary directory
(never the working tree) against the tests of the file it mutates (TESTS, pytest -x); survivors run
again on the wider set (WIDE).  Workers are forked from a process that has torch imported, so a mutant
costs its tests, not an interpreter start.

    flock /work/bench.lock python benchmarks/mutants.py [--cap 150] [--budget 660] [--seed 0]

Each run writes benchmarks/results/mutants-run-N.json and stops starting mutants after --budget seconds;
the next run goes on where it stopped (the issue's mutants first, then earlier survivors, which new
tests may kill, then the rest of the sample).  mutants.json and .md merge the runs: every mutant with
its line, status (killed, survived, timeout, invalid, gone) and the first failing test; survivors with
the reason they are equivalent (EXPLAINED) or flagged as a gap.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
M, P, E = "tests/models/", "tests/prob/", "tests/eval/test_likelihood.py"
SCORING = "tests/train/test_scoring.py"
DIFFUSION = [M + "test_diffusion.py", M + "test_diffusion_estimators.py"]
VARIANCES, PLANS = M + "test_bound_variances.py", M + "test_work_plans.py"
TESTS = {
    "models/diffusion/ddpm.py": [*DIFFUSION, VARIANCES, PLANS],
    "models/diffusion/vlb.py": [*DIFFUSION, VARIANCES, PLANS],
    "models/diffusion/schedule.py": [*DIFFUSION, M + "test_schedule_edges.py", VARIANCES],
    "models/diffusion/gaussian.py": DIFFUSION,
    "models/diffusion/vdm.py": [M + "test_vdm.py", VARIANCES],
    "models/vae.py": [M + "test_vae.py", PLANS],
    "models/decoders.py": [M + "test_decoders.py", M + "test_vae.py"],
    "prob/kl.py": [P + "test_kl.py", P + "test_information.py", P + "test_coverage.py"],
    "prob/montecarlo.py": [P + "test_montecarlo.py", P + "test_kl.py", P + "test_coverage.py"],
    "prob/estimate.py": [P + "test_estimate_edges.py", P + "test_montecarlo.py", P + "test_kl.py",
                         P + "test_coverage.py", E],
    "prob/tails.py": [P + "test_tails.py", P + "test_pareto_khat.py", P + "test_coverage.py",
                      P + "test_kl.py", P + "test_vi.py", M + "test_vae.py"],
    "prob/vi.py": [P + "test_vi.py", P + "test_coverage.py"],
    "prob/bound.py": [E, M + "test_vae.py"],
    "prob/units.py": [P + "test_units.py", M + "test_decoders.py", M + "test_diffusion.py",
                      M + "test_diffusion_estimators.py"],
    "eval/likelihood.py": [E, SCORING],
    "train/scoring.py": [SCORING],
    "train/state.py": [SCORING],
    "train/load.py": [SCORING],
}
WIDE = ["tests/models", "tests/prob", "tests/eval", "tests/sample", SCORING]
FUNCTIONS = {  # the functions whose lines compute a bound, a divergence or its error
    "models/diffusion/ddpm.py": ["q_sample", "_log_posterior", "_x0_eps", "_logvar", "_reverse", "_terms",
                                 "_rows", "prior", "bound"],
    "models/diffusion/vlb.py": ["neighbour_variance", "diffusion_term"],
    "models/diffusion/schedule.py": ["linear_betas", "cosine_betas", "__init__", "log_variance_range",
                                     "prior_kl"],
    "models/diffusion/gaussian.py": ["normal_kl", "log1mexp", "log_normal_interval",
                                     "discretized_gaussian_log_likelihood", "gaussian_log_density"],
    "models/diffusion/vdm.py": ["_prior", "_diffusion", "_decoder_logits", "_reconstruction", "bound",
                                "_eps_hat"],
    "models/vae.py": ["_draw", "_log_px", "_log_weights", "kl_per_dim", "bound", "_iwae_bound"],
    "models/decoders.py": ["level_log_probs", "log_prob", "_log_sigmoid_difference", "_component_log_probs",
                           "mean_and_log_scale", "_split"],
    "prob/kl.py": ["kl_divergence", "mc_estimate_allowing_inf", "log_prob_or_neg_inf", "_zero_mass",
                   "_diagonal_as_mvn"],
    "prob/tails.py": ["gpd_shape", "tail_shape", "log_mean_exp_variance"],
    "prob/vi.py": ["elbo", "elbo_terms", "iwae_bound"],
    "prob/montecarlo.py": ["_draw_normal", "_draw_mvn", "_draw_uniform", "_draw_laplace", "_draw_categorical",
                           "_draw_bernoulli"],
    "prob/estimate.py": ["from_samples", "confidence_interval", "_combine"],
    "prob/units.py": ["to_signed", "from_signed", "bin_width", "dequantize", "dequantization_log_jacobian"],
    "eval/likelihood.py": ["_mean_stderr", "_summarize"],
}
LISTED = [  # the mutants: (id, file, exact text, replacement)
    ("L1 weight T", "models/diffusion/vlb.py", "(T - 1) * model._rows", "T * model._rows"),
    ("L2 t from 1..T", "models/diffusion/vlb.py", "torch.randint(2, T + 1", "torch.randint(1, T + 1"),
    ("L3 q_sample abar", "models/diffusion/ddpm.py", "return (abar.sqrt() * y0", "return (abar * y0"),
    ("L4 VDM recon noise", "models/diffusion/vdm.py", "torch.exp(0.5 * g0) * eps", "torch.exp(g0) * eps"),
    ("L5 VDM log(scale) sign", "models/diffusion/vdm.py", "+ self.dims * math.log(self.config.scale)",
     "- self.dims * math.log(self.config.scale)"),
    ("L6a train mode in likelihood", "eval/likelihood.py", "    model.eval()\n", "    model.train()\n"),
    ("L6b train mode in scoring", "train/scoring.py", "    model.eval()\n", "    model.train()\n"),
    ("L7a raw weights at validation", "train/state.py", "if self.ema is None:", "if True:"),
    ("L7b raw weights at export", "train/load.py", "    if ema:\n", "    if False:\n"),
    # the error bars of the same issue
    # (full, mc and is share the line that adds the decoder's variance since vlb.py holds the estimators)
    ("E1 variance without the decoder's", "models/diffusion/ddpm.py",
     "variance + recon_var", "variance"),
    ("E2 mc variance not divided by k", "models/diffusion/vlb.py",
     "draws.detach().var(0) / k", "draws.detach().var(0)"),
    ("E3 end terms at half weight", "models/diffusion/vlb.py", " + (d2[0] + d2[-1]) / 2", ""),
    ("E4 KL tail limit 0.7", "prob/kl.py", "TAIL_K_LIMIT = 0.5", "TAIL_K_LIMIT = 0.7"),
    ("E5 KL tail never checked", "prob/kl.py", "heavy = (k > TAIL_K_LIMIT)", "heavy = (k < -1e300)"),
    ("E6 IWAE delta method", "prob/tails.py", "spread = ((loo - loo.mean(0)) ** 2).sum(0) * (k - 1) / k",
     "spread = (k * torch.exp(torch.logsumexp(2 * lw, 0) - 2 * total) - 1) / (k - 1)"),
]
NOTE = ("Run 1 (issue 15) drew its generated mutants by an earlier rule (a seeded shuffle, since replaced by "
        "sha1(seed:key), which other changes to the code do not reshuffle), so most of them are outside the "
        "current sample; runs 2-8 ran the issue's mutants and re-ran run 1's survivors after new tests.  "
        "Run 9 ran the rest of the sample; run 10 re-ran its survivors after the tests written for them "
        "(tests/models/test_schedule_edges.py, test_bound_variances.py, test_work_plans.py; "
        "tests/prob/test_estimate_edges.py, test_pareto_khat.py, test_units.py and additions to test_kl.py, "
        "test_montecarlo.py, test_vi.py).")
# key -> why a surviving mutant cannot change a bound or its error bar (keys as in mutants.json)
EXPLAINED: dict[str, str] = json.loads((ROOT / "benchmarks" / "mutants_explained.json").read_text())

_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult}
_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt}
_DROP = {"sqrt", "exp", "log", "log1p", "expm1"}


def _skip_parents(tree: ast.AST) -> set[int]:
    """ids of nodes inside raise/assert statements, f-strings, validation ifs and docstrings."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        guard = isinstance(node, ast.If) and node.body and isinstance(node.body[0], ast.Raise)
        if isinstance(node, (ast.Raise, ast.Assert, ast.JoinedStr)) or guard:
            skip.update(id(n) for n in ast.walk(node.test if guard else node))
    return skip


def _mutations(node: ast.AST):
    """(description, replacement source) for one node."""
    if isinstance(node, ast.BinOp) and type(node.op) in _SWAP:
        new = ast.BinOp(node.left, _SWAP[type(node.op)](), node.right)
        yield f"{type(node.op).__name__}->{type(new.op).__name__}", f"({ast.unparse(new)})"
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield "drop unary -", f"({ast.unparse(node.operand)})"
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
        new = node.value + 1 if isinstance(node.value, int) else (node.value * 2 if node.value else 1.0)
        yield f"{node.value!r}->{new!r}", repr(new)
    elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP:
        new = ast.Compare(node.left, [_CMP[type(node.ops[0])]()], node.comparators)
        yield f"{type(node.ops[0]).__name__}->{type(new.ops[0]).__name__}", f"({ast.unparse(new)})"
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        name = node.func.attr
        if name in _DROP and not node.args and not node.keywords:  # a.sqrt() -> a
            yield f"drop .{name}()", f"({ast.unparse(node.func.value)})"
        elif name in _DROP and len(node.args) == 1 and ast.unparse(node.func.value) in ("torch", "math"):
            yield f"drop {name}()", f"({ast.unparse(node.args[0])})"
        elif name in ("mean", "sum"):
            other = "sum" if name == "mean" else "mean"
            func = ast.Attribute(node.func.value, other, ast.Load())
            yield f".{name}->.{other}", ast.unparse(ast.Call(func, node.args, node.keywords))


def generate(src: Path) -> list[dict]:
    """Every mutant of the FUNCTIONS' lines: dicts with file, function, line, key, the new file text."""
    out = []
    for rel, names in FUNCTIONS.items():
        path = src / rel
        if not path.is_file():
            continue
        text = path.read_text()
        raw = text.encode()
        starts = [0] + [i + 1 for i, c in enumerate(raw) if c == 10]
        tree = ast.parse(text)
        skip = _skip_parents(tree)
        seen: dict[str, int] = {}
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or fn.name not in names:
                continue
            body = fn.body[1:] if ast.get_docstring(fn) else fn.body
            for node in (n for stmt in body for n in ast.walk(stmt)):
                if id(node) in skip or not hasattr(node, "end_lineno") or isinstance(node, ast.Slice):
                    continue
                a = starts[node.lineno - 1] + node.col_offset
                b = starts[node.end_lineno - 1] + node.end_col_offset
                segment = raw[a:b].decode()
                for what, repl in _mutations(node):
                    new = (raw[:a] + repl.encode() + raw[b:]).decode()
                    line = text.splitlines()[node.lineno - 1]
                    col = node.col_offset - (len(line) - len(line.lstrip()))  # stable if the line moves
                    key = f"{rel}::{fn.name}::{line.strip()}::{col}::{segment} [{what}]"
                    seen[key] = seen.get(key, -1) + 1  # the same line twice in one function
                    key += f" #{seen[key]}" if seen[key] else ""
                    out.append({"file": rel, "function": fn.name, "line": node.lineno, "what": what,
                                "source": line.strip(), "key": key, "text": new})
    return out


def listed(src: Path) -> list[dict]:
    out = []
    for ident, rel, old, new in LISTED:
        text = (src / rel).read_text()
        if text.count(old) != 1:
            raise SystemExit(f"listed mutant {ident!r}: {old!r} occurs {text.count(old)} times in {rel}")
        line = text[:text.index(old)].count("\n") + 1
        out.append({"file": rel, "function": "", "line": line, "what": ident, "source": old.strip(),
                    "key": f"{rel}::{ident}", "text": text.replace(old, new), "listed": True})
    return out


def run_one(tree: Path, mutant: dict, tests: list[str], timeout: float) -> tuple[str, str, float]:
    """Apply the mutant to the copy, run `tests` in a forked child, restore; (status, first failure, s)."""
    path = tree / "src" / "lowerbound" / mutant["file"]
    original = path.read_text()
    try:
        compile(mutant["text"], str(path), "exec")
    except SyntaxError:
        return "invalid", "", 0.0
    path.write_text(mutant["text"])
    log = tree / "pytest.log"
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: import the mutated package from the copy and run the tests
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(tree)
        sys.path.insert(0, str(tree / "src"))
        import pytest

        code = pytest.main([*tests, "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore"])
        os._exit(int(code))
    status = None
    while status is None:
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            status = "survived" if os.waitstatus_to_exitcode(code) == 0 else "killed"
        elif time.perf_counter() - t0 > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = "timeout"
        else:
            time.sleep(0.05)
    path.write_text(original)
    failed = re.findall(r"^FAILED (\S+)", log.read_text(errors="replace"), re.M)
    return status, failed[0] if failed else "", time.perf_counter() - t0


def copy_tree(dest: Path) -> None:
    """The working tree's tracked and untracked (not ignored) files, copied to dest."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for f in files:
        if f.startswith(("src/", "tests/")) or f in ("pyproject.toml",):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)


def run_files() -> list[Path]:
    """benchmarks/results/mutants-run-N.json in the order of N."""
    return sorted(OUT.glob("mutants-run-*.json"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))


def _previous() -> dict[str, dict]:
    """The latest result of every mutant over the runs written so far (benchmarks/results/mutants-run-*)."""
    runs = run_files()
    return {m["key"]: m for p in runs for m in json.loads(p.read_text())["mutants"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cap", type=int, default=150, help="most generated mutants in the sample")
    ap.add_argument("--seed", type=int, default=0, help="sample: the cap mutants of least sha1(seed:key)")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per mutant")
    ap.add_argument("--budget", type=float, default=660.0, help="seconds after which no mutant starts (the "
                    "benchmark lock is held at most 12 minutes); the next run goes on where this one stopped")
    ap.add_argument("--only", default=None, help="run only mutants whose key contains this text")
    ap.add_argument("--confirm", action="store_true", help="run survivors again on the wider set WIDE")
    args = ap.parse_args()
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    import numpy  # noqa: F401  heavy imports once, before forking
    import scipy.stats  # noqa: F401
    import torch

    torch.set_num_threads(1)
    from tqdm import tqdm

    start, done = time.perf_counter(), _previous()
    with tempfile.TemporaryDirectory(prefix="lowerbound-mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        src = tree / "src" / "lowerbound"
        generated = generate(src)
        sample = {m["key"] for m in listed(src)}
        chosen = sorted(generated, key=lambda m: hashlib.sha1(f"{args.seed}:{m['key']}".encode()).hexdigest())
        # listed first, then the survivors of earlier runs (new tests since?), then what never ran
        sample |= {m["key"] for m in chosen[:args.cap]}
        by_key = {m["key"]: m for m in generated}
        earlier = sorted((by_key[k] for k, r in done.items() if r["status"] == "survived" and k in by_key),
                         key=lambda m: m["key"] in EXPLAINED)  # the unexplained first
        for k, r in done.items():  # a survivor whose line has changed since cannot be run again
            if r["status"] == "survived" and k not in by_key and not r.get("listed"):
                r.update(status="gone", status_before="survived")
        todo = [m for m in listed(src) + earlier + [m for m in chosen[:args.cap] if m["key"] not in done]
                if done.get(m["key"], {}).get("status") not in ("killed", "invalid", "timeout", "gone")]
        todo = list({m["key"]: m for m in todo}.values())
        todo.sort(key=lambda m: (not m.get("listed"), m["key"] not in done))
        if args.only:
            todo = [m for m in todo if args.only in m["key"]]
        ran, checked = [], set()
        for m in tqdm(todo, desc="mutants", file=sys.stderr):
            if time.perf_counter() - start > args.budget:
                break
            tests = tuple(TESTS[m["file"]])
            if tests not in checked:  # the unmutated copy must pass them, or every mutant looks killed
                base = {"file": "prob/units.py", "text": (src / "prob/units.py").read_text()}
                if run_one(tree, base, list(tests), 4 * args.timeout)[0] != "survived":
                    raise SystemExit(f"the unmutated tree fails {tests}: fix that first")
                checked.add(tests)
            m["status"], m["failed"], m["seconds"] = run_one(tree, m, TESTS[m["file"]], args.timeout)
            if m["status"] == "survived" and args.confirm:  # confirm on the wider set
                m["status"], m["failed"], extra = run_one(tree, m, WIDE, 4 * args.timeout)
                m["seconds"] += extra
            if done.get(m["key"], {}).get("status") == "survived":
                m["status_before"] = "survived"
            ran.append(m)
    for m in ran:
        m.pop("text")
    ran += [r for r in done.values() if r["status"] == "gone" and "seconds" in r and r not in ran]
    number = 1 + max([int(p.stem.rsplit("-", 1)[1]) for p in OUT.glob("mutants-run-*.json")] or [0])
    part = {"generated": len(generated), "seconds": round(time.perf_counter() - start, 1),
            "load_average": os.getloadavg(), "cpu": _cpu(), "cap": args.cap, "seed": args.seed,
            "left": len(todo) - len(ran), "confirmed_on_wide_set": args.confirm}
    OUT.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"run": part, "mutants": ran}, indent=1)
    (OUT / f"mutants-run-{number}.json").write_text(text + "\n")
    write(sample)


def write(sample: set[str]) -> None:
    """Merge the runs (the latest result of each mutant) into mutants.json and mutants.md."""
    runs = [json.loads(p.read_text()) for p in run_files()]
    mutants = sorted(_previous().values(), key=lambda m: (not m.get("listed"), m["file"], m["line"]))
    for m in mutants:
        m["explained"] = EXPLAINED.get(m["key"])
    last = runs[-1]["run"]
    summary = {"generated": last["generated"], "cap": last["cap"], "run": len(mutants),
               "not_run_yet": len(sample - {m["key"] for m in mutants}), "runs": len(runs),
               "seconds": sum(r["run"]["seconds"] for r in runs), "cpu": last["cpu"],
               "load_average": [r["run"]["load_average"][0] for r in runs]}
    for m in mutants:
        summary[m["status"]] = summary.get(m["status"], 0) + 1
    _report(summary, mutants)


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def _report(summary: dict, mutants: list[dict]) -> None:
    report = {"summary": summary, "mutants": mutants}
    (OUT / "mutants.json").write_text(json.dumps(report, indent=1) + "\n")
    s = summary
    loads = ", ".join(f"{v:.1f}" for v in s["load_average"])
    lines = ["# Mutation run (benchmarks/mutants.py)", "",
             f"{s['run']} mutants run in {s['runs']} runs ({len(LISTED)} listed + generated ones from a "
             f"seeded sample of {s['cap']} of the {s['generated']} generated; {s['not_run_yet']} of the "
             f"sample not run yet), {s['seconds']:.0f} s, 1-minute load average at the end of each run "
             f"{loads}, {s['cpu']}.  Each mutant ran the tests of the file it mutates (TESTS in the "
             "script), pytest -x, on a copy of the tree; a mutant's latest run counts.", "", NOTE, "",
             "| status | count |", "| --- | --- |"]
    lines += [f"| {k} | {summary[k]} |" for k in ("killed", "survived", "timeout", "invalid", "gone")
              if k in summary]
    lines += ["", "## The issue's mutants", "", "| mutant | status | killed by |", "| --- | --- | --- |"]
    lines += [f"| {m['what']} | {m['status']} | {m['failed']} |" for m in mutants if m.get("listed")]
    later = [m for m in mutants if m.get("status_before") == "survived" and m["status"] != "survived"]
    lines += ["", "## Survived a first run, killed by a test added after it", "",
              "| file:line | function | mutation | line | killed by |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {m['file']}:{m['line']} | {m['function']} | {m['what']} | `{m['source']}` | {m['failed']} |"
              for m in later]
    survivors = [m for m in mutants if m["status"] == "survived"]
    lines += ["", "## Survivors", "", "| file:line | function | mutation | line | why |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {m['file']}:{m['line']} | {m['function']} | {m['what']} | `{m['source']}` | "
              f"{m['explained'] or 'NOT EXPLAINED: a gap'} |" for m in survivors]
    (OUT / "mutants.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
