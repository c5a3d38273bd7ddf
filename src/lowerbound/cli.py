"""`lowerbound ...`: parse arguments, build a config, call the public API.  No logic lives here.

Every subcommand is a pair: `_add_NAME(subparsers)` declares its arguments and `_run_NAME(args)`
calls the library.  A UserError anywhere becomes one sentence on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one sentence and exit status 2 (its default code)."""

    def error(self, message: str) -> None:  # noqa: D401
        self.exit(2, f"lowerbound: error: {message}.\n")


# ---------------------------------------------------------------- demo (issues 2, 13)
def _add_demo(sub) -> None:
    from .train.demos.registry import names  # the names only: no demo is imported to build the parser

    p = sub.add_parser("demo", help="small demonstrations of the probability tools; alone, lists them")
    p.add_argument("name", nargs="?", choices=names(), help="the demo to run (omit to list every demo)")
    p.add_argument("options", nargs=argparse.REMAINDER, help="the demo's options (lowerbound demo NAME -h)")
    p.set_defaults(run=_run_demo)


def _run_demo(args) -> int:
    from .train import demos

    if args.name is None:
        listing = demos.summaries()
        width = max(map(len, listing))
        for name, summary in listing.items():
            print(f"{name:<{width}}  {summary}")
        return 0
    parser = _Parser(prog=f"lowerbound demo {args.name}", description=demos.get(args.name).summary)
    demos.declare(parser, args.name)
    options = parser.parse_args(args.options)
    result = demos.run(args.name, options, out=sys.stderr if options.json else sys.stdout)
    if options.json:
        print(demos.to_json(result))
    return 0


# ---------------------------------------------------------------- data (issue 3)
def _add_data(sub) -> None:
    p = sub.add_parser("data", help="list data sets, or describe one and draw its examples")
    p.add_argument("name", nargs="?", help="data set, e.g. digits, toy2d:8gaussians, mnist, npy:x.npy")
    p.add_argument("--png", help="write a grid of training examples (a scatter plot for 2-D sets)")
    p.add_argument("--n", type=int, help="examples to draw (default 64 images or 2000 points)")
    p.add_argument("--root", help="folder holding the data set's files (mnist, fashion-mnist, cifar10)")
    p.add_argument("--download", action="store_true", help="fetch the official files if missing")
    p.add_argument("--levels", type=int, help="number of levels of your own integer data (npy:, png:)")
    p.add_argument("--binarize", choices=["threshold", "static", "dynamic"], help="binarize MNIST")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other loader option, e.g. n_train=5000 (repeatable)")
    p.set_defaults(run=_run_data)


def _run_data(args) -> int:
    from . import data

    if args.name is None:
        names = data.available()
        width = max(map(len, names))
        for name, summary in sorted(names.items()):
            print(f"{name:<{width}}  {summary}")
        return 0
    options = {k: v for k, v in (("root", args.root), ("levels", args.levels),
                                 ("binarize", args.binarize)) if v is not None}
    if args.download:
        options["download"] = True
    options.update(_key_values(args.option, "--option"))
    if args.n is not None and args.n < 1:
        raise UserError(f"--n must be a positive number of examples, got {args.n}.")
    ds = data.load(args.name, **options)
    print(ds.describe())
    if args.png:
        _draw_examples(ds, args.png, args.n)
        print(f"wrote {args.png}")
    return 0


def _key_values(items: list[str], flag: str) -> dict:
    """KEY=VALUE arguments as a dict of typed values; a malformed one is one sentence."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{flag} takes KEY=VALUE, got {item!r}.")
        out[key] = _parse_value(value)
    return out


def _parse_value(text: str):
    """A command-line option value as int, float, bool, None or the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _draw_examples(ds, path: str, n: int | None) -> None:
    from .io.images import save_grid, save_scatter

    if ds.levels is not None and len(ds.shape) == 3 and ds.shape[0] in (1, 3):
        save_grid(path, ds.train[: n or 64], ds.levels)
    elif ds.levels is None and tuple(ds.shape) == (2,):
        save_scatter(path, ds.train[: n or 2000], title=f"{ds.name}: training points")
    else:
        raise UserError(f"Cannot draw {ds.name}: --png needs images [C, H, W] with C = 1 or 3, "
                        f"or 2-D points, and its examples have shape {tuple(ds.shape)}.")


# ---------------------------------------------------------------- train / eval / sample (issue 4)
def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train (or fit) a model family on a data set")
    p.add_argument("family", nargs="?", help="model family, e.g. independent, vae, diffusion")
    p.add_argument("--data", help="data set name (default digits)")
    p.add_argument("--steps", type=int, help="optimizer steps (default 2000)")
    p.add_argument("--minutes", type=float, help="training time budget in minutes")
    p.add_argument("--batch-size", type=int, help="global batch size (default 128)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, help="seed of the split, data order and all randomness")
    p.add_argument("--run-dir", help="run directory (default runs/FAMILY-DATA-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast precision; auto: bf16 where the CPU or GPU has it, else fp32")
    p.add_argument("--eval-every", type=int, help="steps between validation bounds (default 100)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 500)")
    p.add_argument("--keep", type=int, help="step checkpoints kept (default 3)")
    p.add_argument("--patience", type=int, help="evaluations without improvement before stopping")
    p.add_argument("--config", help="YAML file of options (top-level loop keys, model: section)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any option, e.g. --set lr=3e-4 --set model.hidden=256")
    p.add_argument("--json", action="store_true", help="print only the final result as JSON")
    p.set_defaults(run=_run_train)


def _run_train(args) -> int:
    import json

    from .train import run as run_module
    from .train.config import read_yaml
    from .train.guards import TrainingDiverged
    from .train.inspect import text_table

    flags = {"data": args.data, "steps": args.steps, "minutes": args.minutes, "batch_size": args.batch_size,
             "lr": args.lr, "seed": args.seed, "device": args.device, "precision": args.precision,
             "eval_every": args.eval_every, "checkpoint_every": args.checkpoint_every, "keep": args.keep,
             "patience": args.patience}
    if args.minutes is not None and args.steps is None and not args.resume:
        flags["steps"] = 10**9  # the time budget decides
    layers = [read_yaml(args.config)] if args.config else []
    cfg, run_dir = run_module.configure(args.family, layers + [flags], args.set, args.run_dir, args.resume)
    try:
        result = run_module.train(cfg, run_dir, resume=args.resume)
    except TrainingDiverged as e:
        print(f"lowerbound: error: {e}", file=sys.stderr)
        return 1
    except run_module.Stopped as e:
        print(f"lowerbound: {e}", file=sys.stderr)
        return e.code
    if result:  # rank 0 of a distributed run, or the only process
        print(json.dumps(result) if args.json else text_table(result))
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run's bound on a split (or a diffusers model's: --diffusers)")
    p.add_argument("run_dir", nargs="?", help="a run directory written by lowerbound train")
    p.add_argument("--diffusers", metavar="DIR", help="score a diffusers UNet + scheduler saved by "
                   "save_pretrained in DIR (local files only) instead of a run")
    p.add_argument("--data", help="the data set a --diffusers model is scored on (default digits)")
    p.add_argument("--split", default="test", choices=["test", "valid", "train"])
    p.add_argument("--estimator", help="bound estimator (the model's default if omitted)")
    p.add_argument("--samples", type=int, help="samples of a stochastic estimator (e.g. IWAE k, ODE probes)")
    p.add_argument("--ode", action="append", default=[], metavar="KEY=VALUE",
                   help="an option of --estimator ode, e.g. rtol=1e-4, solver=rk4, steps=50 (repeatable)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int, help="seed of the Monte Carlo draws (default: the run's final "
                   "scoring, so the number is the one in report.md)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--samples-for-metrics", type=int, metavar="N",
                   help="also score N samples by the sample metrics (FD, KID, precision/recall, ...)")
    p.add_argument("--json", action="store_true", help="print only the result as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=_run_eval)


def _run_eval(args) -> int:
    import json

    from .train.inspect import evaluate_run, text_table

    if args.diffusers is not None or args.data is not None:
        result = _eval_diffusers(args)
        print(json.dumps(result) if args.json else text_table(result))
        return 0
    if args.run_dir is None:
        raise UserError("lowerbound eval needs a run directory, or --diffusers DIR.")
    result = evaluate_run(args.run_dir, args.split, estimator=args.estimator, samples=args.samples,
                          checkpoint=args.checkpoint, batch_size=args.batch_size, seed=args.seed,
                          device=args.device, samples_for_metrics=args.samples_for_metrics,
                          options=_key_values(args.ode, "--ode"), progress=not args.no_progress)
    print(json.dumps(result) if args.json else text_table(result))
    return 0


def _eval_diffusers(args) -> dict:
    from . import data
    from .adapters import load_diffusers
    from .train.inspect import evaluate_model

    if args.diffusers is None or args.run_dir is not None:
        raise UserError("Give either a run directory or --diffusers DIR (with --data), not both.")
    if args.checkpoint != "best":
        raise UserError("--checkpoint applies to run directories, not --diffusers.")
    dataset = data.load(args.data or "digits")
    if dataset.levels is None:
        raise UserError(f"{dataset.name} is continuous; a diffusers model is scored on discrete levels.")
    model = load_diffusers(args.diffusers, levels=dataset.levels)
    return evaluate_model(model, dataset, args.split, estimator=args.estimator, samples=args.samples,
                          batch_size=args.batch_size or 256, seed=args.seed, device=args.device,
                          source=f"diffusers: {args.diffusers}", options=_key_values(args.ode, "--ode"),
                          samples_for_metrics=args.samples_for_metrics, progress=not args.no_progress)


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="draw samples from a run and write a PNG grid")
    p.add_argument("run_dir", help="a run directory written by lowerbound train")
    p.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", help="PNG path (default RUN_DIR/samples/sample-seedS-nN.png)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="the nets under autocast: bf16 (GPU, or a CPU with bfloat16 instructions), "
                   "fp16 (GPU)")
    p.add_argument("--batch-size", type=int, default=64, help="samples drawn at once (default 64)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=_run_sample)


def _run_sample(args) -> int:
    from .train.inspect import sample_run

    path = sample_run(args.run_dir, args.n, seed=args.seed, out=args.output, checkpoint=args.checkpoint,
                      device=args.device, precision=args.precision, batch_size=args.batch_size,
                      progress=not args.no_progress)
    print(path)
    return 0


# ---------------------------------------------------------------- compare (issue 12)
def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="train every family on one data set for the same budget; "
                       "one table, compare.json/.md and a self-contained compare.html")
    p.add_argument("--data", default="digits", help="data set name (default digits)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a loader option of the data set, e.g. n_train=5000 (repeatable)")
    p.add_argument("--families", default="all",
                   help="'all' (every family that can model the data), a list like vae,diffusion, or none")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget of every family (default 5)")
    p.add_argument("--out", required=True, help="folder of the comparison: one run directory per family")
    p.add_argument("--runs", nargs="+", default=[], metavar="DIR", help="existing run directories to include")
    p.add_argument("--seeds", type=int, default=1, help="runs per family, seeds 0..S-1 (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an option for every run, e.g. --set device=cpu --set eval_every=50")
    p.add_argument("--no-tight", action="store_true", help="skip the tighter estimators (IWAE-1000, ...)")
    p.add_argument("--tight-samples", type=int,
                   help="samples of the tighter estimators (default: each family's own)")
    p.add_argument("--sample-n", type=int, default=64,
                   help="samples drawn for sample metrics (default 64; 0: none)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(run=_run_compare)


def _run_compare(args) -> int:
    from .compare import CompareConfig, compare, entries_for
    from .train.run import Stopped

    data_options = _key_values(args.data_option, "--data-option")
    entries = [] if args.families.strip() == "none" else entries_for(args.families, args.data, data_options)
    cfg = CompareConfig(out=args.out, data=args.data, data_options=data_options, entries=entries,
                        minutes=args.minutes, seeds=args.seeds, runs=args.runs, sets=args.set,
                        tight=not args.no_tight, tight_samples=args.tight_samples, sample_n=args.sample_n,
                        progress=not args.no_progress)
    try:
        result = compare(cfg)
    except Stopped as e:
        print(f"lowerbound: {e}; rerun the same compare command to continue.", file=sys.stderr)
        return e.code
    print(result["paths"]["md"])
    print(result["paths"]["html"])
    return 0


# ---------------------------------------------------------------- entry point
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lowerbound", description="Likelihood-based generative models, trained and "
                     "compared by the evidence lower bound, in bits per dimension.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_demo, _add_data, _add_train, _add_eval, _add_sample, _add_compare):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if argv is None and "torch.distributed" in sys.modules and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from .train.runtime import end_worker

        end_worker(code)  # a torchrun worker: see end_worker for why it leaves at once
    return code


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as e:
        print(f"lowerbound: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine refused a file operation the library did not foresee
        what = f" {e.filename}" if e.filename else ""
        print(f"lowerbound: error: {e.strerror or e}{':' if what else ''}{what}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lowerbound: interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
