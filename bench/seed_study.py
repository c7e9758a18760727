"""The tutorial's training curve over several seeds, gpu-siamese beside the tutorial's own Keras code on
TensorFlow's CPU build, on the same data: one run per program and seed (kept in OUT, so a study can be
extended with more seeds later), then a table of loss and val_loss per epoch with each program's mean,
standard deviation and range over the seeds, and the difference of the means with its standard error.

One run of either program is one draw: a seed moves the figures of an epoch by more than the two
programs' means differ, so a single run of each says little about which trains better.

    python3 bench/seed_study.py [--seeds 0-5] [--epochs 5] [--out bench/results/seeds] [--only-summary]
                                [--bar 1:0.1825/0.1647,3:0.1598/0.1580,5:0.1564/0.1538]

--bar takes one run's figures (epoch:loss/val_loss, as Keras prints them, to four decimals) and says,
for every run of either program, whether its curve is at least as good at each of those epochs.

gpu-siamese is the release build (cargo build --release first); TensorFlow is bench/.venv's Python
(bench/compare.sh installs it), or --python. The summary needs only the standard library.
"""

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_seeds(text):
    seeds = []
    for part in text.split(","):
        if "-" in part:
            first, last = part.split("-")
            seeds.extend(range(int(first), int(last) + 1))
        else:
            seeds.append(int(part))
    return seeds


def gpu_siamese_curve(out, seed, epochs, binary, data, run):
    folder = os.path.join(out, "gpu-siamese", f"seed-{seed}")
    metrics = os.path.join(folder, "metrics.csv")
    curve = read_metrics(metrics)
    if run and (curve is None or len(curve["loss"]) < epochs):
        if os.path.exists(os.path.join(folder, "resume.safetensors")):
            command = [binary, "train", "--resume", folder, "--epochs", str(epochs)]
        else:
            command = [binary, "train", "--epochs", str(epochs), "--seed", str(seed), "--out", folder]
            if data:
                command += ["--data", data]
        print(" ".join(command), file=sys.stderr)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        curve = read_metrics(metrics)
    return curve


def read_metrics(metrics):
    """A run's loss and val_loss per epoch from its metrics.csv; None before it has one."""
    if not os.path.exists(metrics):
        return None
    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    return {"loss": [float(r["loss"]) for r in rows], "val_loss": [float(r["val_loss"]) for r in rows]}


def tensorflow_curve(out, seed, epochs, python, data, run):
    path = os.path.join(out, "tensorflow", f"seed-{seed}.json")
    curve = None
    if os.path.exists(path):
        with open(path) as f:
            curve = json.load(f)
    if run and (curve is None or len(curve["loss"]) < epochs):
        command = [python, os.path.join(ROOT, "bench", "tutorial_keras.py"), "--seed", str(seed), "--epochs", str(epochs)]
        if data:
            command += ["--data", data]
        print(" ".join(command), file=sys.stderr)
        done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
        curve = json.loads(done.stdout.strip().splitlines()[-1])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(curve, f)
    return curve


def describe(values):
    if not values:
        return "—", None, None
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {sd:.4f} ({min(values):.4f}–{max(values):.4f}, n={len(values)})", mean, sd


def summary(curves, epochs):
    print("| epoch | figure | gpu-siamese: mean ± sd (range, n) | TensorFlow: mean ± sd (range, n) | difference | its standard error |")
    print("|---:|---|---|---|---:|---:|")
    for epoch in range(1, epochs + 1):
        for figure in ("loss", "val_loss"):
            cells, stats = [], []
            for program in ("gpu-siamese", "tensorflow"):
                values = [c[figure][epoch - 1] for c in curves[program] if len(c[figure]) >= epoch]
                text, mean, sd = describe(values)
                cells.append(text)
                stats.append((mean, sd, len(values)))
            (m1, s1, n1), (m2, s2, n2) = stats
            if m1 is None or m2 is None:
                difference, error = "—", "—"
            else:
                difference = f"{m1 - m2:+.4f}"
                error = f"{math.sqrt(s1 * s1 / n1 + s2 * s2 / n2):.4f}" if n1 > 1 and n2 > 1 else "—"
            print(f"| {epoch} | {figure} | {cells[0]} | {cells[1]} | {difference} | {error} |")


def parse_bar(text):
    bar = {}
    for part in text.split(","):
        epoch, figures = part.split(":")
        loss, val_loss = figures.split("/")
        bar[int(epoch)] = {"loss": float(loss), "val_loss": float(val_loss)}
    return bar


def check_bar(curves, seeds, bar):
    """Each run against the bar, at the four decimals Keras prints: where it is worse, if anywhere."""
    print()
    print("| program | seed | at least as good at every epoch of the bar | worse at |")
    print("|---|---:|---|---|")
    for program in ("gpu-siamese", "tensorflow"):
        met = 0
        for seed, curve in zip(seeds[program], curves[program]):
            if len(curve["loss"]) < max(bar):
                print(f"| {program} | {seed} | not run to epoch {max(bar)} yet | |")
                continue
            worse = [
                f"epoch {epoch} {figure} {curve[figure][epoch - 1]:.4f} > {limit:.4f}"
                for epoch, limits in sorted(bar.items())
                for figure, limit in limits.items()
                if round(curve[figure][epoch - 1], 4) > limit
            ]
            met += not worse
            print(f"| {program} | {seed} | {'yes' if not worse else 'no'} | {'; '.join(worse) or '—'} |")
        complete = sum(len(c["loss"]) >= max(bar) for c in curves[program])
        if complete:
            print(f"| {program} | all | {met} of {complete} | |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0-5", help="e.g. 0-5 or 0,3,7")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "seeds"))
    parser.add_argument("--data", help="the Fashion-MNIST folder (default: each program's own)")
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gpu-siamese"))
    parser.add_argument("--python", default=os.path.join(ROOT, "bench", ".venv", "bin", "python"))
    parser.add_argument("--programs", default="gpu-siamese,tensorflow")
    parser.add_argument("--only-summary", action="store_true", help="run nothing; summarise the runs in OUT")
    parser.add_argument("--bar", help="one run's figures to hold every run to: epoch:loss/val_loss,...")
    args = parser.parse_args()

    programs = args.programs.split(",")
    if not args.only_summary:
        if "gpu-siamese" in programs and not os.access(args.binary, os.X_OK):
            sys.exit(f"{args.binary}: not built (cargo build --release)")
        if "tensorflow" in programs and not os.access(args.python, os.X_OK):
            sys.exit(f"{args.python}: no such Python; run bench/compare.sh once (it installs TensorFlow there) or pass --python")
    curves = {"gpu-siamese": [], "tensorflow": []}
    seeds = {"gpu-siamese": [], "tensorflow": []}
    for seed in parse_seeds(args.seeds):
        if "gpu-siamese" in programs:
            curve = gpu_siamese_curve(args.out, seed, args.epochs, args.binary, args.data, not args.only_summary)
            if curve:
                curves["gpu-siamese"].append(curve)
                seeds["gpu-siamese"].append(seed)
        if "tensorflow" in programs:
            curve = tensorflow_curve(args.out, seed, args.epochs, args.python, args.data, not args.only_summary)
            if curve:
                curves["tensorflow"].append(curve)
                seeds["tensorflow"].append(seed)
    summary(curves, args.epochs)
    if args.bar:
        check_bar(curves, seeds, parse_bar(args.bar))


if __name__ == "__main__":
    main()
