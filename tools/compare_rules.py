"""Checkpoint rules, member pairings and calibration, compared on validation from saved sweep probabilities.

    python tools/sweep.py --model best --seed 777 --save-probs logs/p0-seed777   # and seeds 1, 2
    python tools/compare_rules.py logs/p0-seed777 logs/p0-seed1 logs/p0-seed2
    python tools/compare_rules.py logs/p0-seed{777,1,2} --pair logs/p1-seed{777,1,2}   # member 2 swapped

Reads each run's `epoch_NN.npz` (every member's softmax on validation and
test after each epoch) and `labels.npz`. For each checkpoint rule
(`kerascnn.callbacks.CHECKPOINT_RULES`: highest validation accuracy, lowest
validation NLL, last epoch), the score is **cross-fitted**: the validation
split is cut into two seeded halves; the rule picks its epoch on one half
and is scored on the other, both ways, and the two are averaged. A rule
that picks on noise then pays for it, as it would on the test set, without
the test set being read. The rules are ranked on that; the test accuracy of
each rule's epoch (picked on the whole validation split) is printed after,
for reporting.

With `--pair`, a second list of runs (one member each): the ensemble of the
first runs' member 2 replaced by the paired run's member is compared with
the first runs' own, both at the rule given by `--rule`.

Also prints, at each rule's epoch, the temperature fitted on validation and
the test ECE / NLL / Brier before and after it (`kerascnn.calibration`).
"""

import argparse
import glob
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kerascnn import calibration  # noqa: E402

RULES = ("accuracy", "nll", "last")


def load_run(folder, members=None):
    """(val (E, M, Nv, C), test (E, M, Nt, C), y_val, y_test) of one sweep run's saved probabilities."""
    files = sorted(glob.glob(os.path.join(folder, "epoch_*.npz")))
    if not files:
        raise SystemExit(f"no epoch_NN.npz in {folder}: run tools/sweep.py with --save-probs {folder}")
    labels = np.load(os.path.join(folder, "labels.npz"))
    val = np.stack([np.load(f)["val"] for f in files])
    test = np.stack([np.load(f)["test"] for f in files])
    if members is not None:
        val, test = val[:, members], test[:, members]
    return val, test, labels["y_val"], labels["y_test"]


def pick(rule, probs, labels):
    """The 0-based epoch `rule` keeps, from per-epoch ensemble probabilities `probs` (E, N, C)."""
    if rule == "last":
        return len(probs) - 1
    if rule == "accuracy":  # the first epoch reaching the best, as save_best_only keeps it
        acc = (probs.argmax(-1) == labels).mean(-1)
        return int(np.flatnonzero(acc == acc.max())[0])
    nlls = [calibration.nll(p, labels) for p in probs]
    return int(np.argmin(nlls))


def cross_fitted(rule, probs, labels, seed=0):
    """(accuracy, NLL) on each half of validation at the epoch the rule picks on the other half, averaged."""
    order = np.random.default_rng(seed).permutation(len(labels))
    halves = order[: len(order) // 2], order[len(order) // 2 :]
    acc, nll = [], []
    for a, b in (halves, halves[::-1]):
        e = pick(rule, probs[:, a], labels[a])
        acc.append(float((probs[e, b].argmax(-1) == labels[b]).mean()))
        nll.append(calibration.nll(probs[e, b], labels[b]))
    return float(np.mean(acc)), float(np.mean(nll))


def summary(values):
    values = np.asarray(values, float)
    return {"mean": float(values.mean()), "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": [round(float(v), 6) for v in values]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python tools/compare_rules.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="folders written by tools/sweep.py --save-probs")
    parser.add_argument("--pair", nargs="+", default=None, help="one-member runs to swap in for member 2, in order")
    parser.add_argument("--rule", choices=RULES, default=None, help="the rule for --pair (default: the winner)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    runs = [load_run(r) for r in args.runs]
    out = {"runs": args.runs, "rules": {}}
    for rule in RULES:
        rows = []
        for val, test, y_val, y_test in runs:
            v, t = val.mean(1), test.mean(1)  # the ensemble: members averaged
            cf_acc, cf_nll = cross_fitted(rule, v, y_val)
            e = pick(rule, v, y_val)
            temperature = calibration.fit_temperature(v[e], y_val)
            rows.append({"epoch": e + 1, "cf_val_accuracy": cf_acc, "cf_val_nll": cf_nll,
                         "val_accuracy": float((v[e].argmax(-1) == y_val).mean()),
                         "test_accuracy": float((t[e].argmax(-1) == y_test).mean()),
                         "temperature": temperature,
                         "test_before": calibration.calibration_scores(t[e], y_test),
                         "test_after": calibration.calibration_scores(calibration.scale(t[e], temperature), y_test)})
        out["rules"][rule] = {"per_run": rows, **{k: summary([r[k] for r in rows]) for k in
                                                  ("cf_val_accuracy", "cf_val_nll", "val_accuracy", "test_accuracy",
                                                   "temperature")}}
    ranked = sorted(RULES, key=lambda r: (-out["rules"][r]["cf_val_accuracy"]["mean"],
                                          out["rules"][r]["cf_val_nll"]["mean"]))
    out["ranked_on_validation"] = ranked
    print(f"{'rule':<9} {'cross-fitted val acc':>22} {'cross-fitted val NLL':>22} {'epochs kept':>14} "
          f"{'test acc (reported)':>22} {'T':>6}")
    for rule in ranked:
        r = out["rules"][rule]
        print(f"{rule:<9} {r['cf_val_accuracy']['mean']:>13.4%} ± {r['cf_val_accuracy']['sd']:.4%} "
              f"{r['cf_val_nll']['mean']:>13.4f} ± {r['cf_val_nll']['sd']:.4f} "
              f"{','.join(str(x['epoch']) for x in r['per_run']):>14} "
              f"{r['test_accuracy']['mean']:>13.4%} ± {r['test_accuracy']['sd']:.4%} {r['temperature']['mean']:>6.3f}")
    for rule in ranked:
        before = np.mean([x["test_before"]["ece"] for x in out["rules"][rule]["per_run"]])
        after = np.mean([x["test_after"]["ece"] for x in out["rules"][rule]["per_run"]])
        nb = np.mean([x["test_before"]["nll"] for x in out["rules"][rule]["per_run"]])
        na = np.mean([x["test_after"]["nll"] for x in out["rules"][rule]["per_run"]])
        print(f"calibration at {rule}: test ECE {before:.4%} -> {after:.4%}, NLL {nb:.4f} -> {na:.4f}")
    if args.pair:
        rule = args.rule or ranked[0]
        if len(args.pair) != len(args.runs):
            raise SystemExit("--pair needs one run for each of the runs")
        pairs = []
        for (val, test, y_val, y_test), other in zip(runs, args.pair):
            oval, otest, _, _ = load_run(other, members=[0])
            epochs = min(len(val), len(oval))
            own_v, own_t = val[:epochs].mean(1), test[:epochs].mean(1)
            mix_v = (val[:epochs, 1] + oval[:epochs, 0]) / 2
            mix_t = (test[:epochs, 1] + otest[:epochs, 0]) / 2
            row = {}
            for name, v, t in (("own", own_v, own_t), ("paired", mix_v, mix_t)):
                e = pick(rule, v, y_val)
                cf_acc, cf_nll = cross_fitted(rule, v, y_val)
                row[name] = {"epoch": e + 1, "val_accuracy": float((v[e].argmax(-1) == y_val).mean()),
                             "val_nll": calibration.nll(v[e], y_val), "cf_val_accuracy": cf_acc,
                             "cf_val_nll": cf_nll, "test_accuracy": float((t[e].argmax(-1) == y_test).mean())}
            single = oval[:epochs, 0]
            e = pick(rule, single, y_val)
            row["paired_member_alone"] = {"epoch": e + 1, "val_accuracy": float((single[e].argmax(-1) == y_val).mean()),
                                          "val_nll": calibration.nll(single[e], y_val)}
            pairs.append(row)
        out["pair"] = {"rule": rule, "per_seed": pairs}
        for name in ("own", "paired"):
            va = summary([p[name]["val_accuracy"] for p in pairs])
            vn = summary([p[name]["val_nll"] for p in pairs])
            ta = summary([p[name]["test_accuracy"] for p in pairs])
            print(f"{name:<7} at {rule}: val acc {va['mean']:.4%} ± {va['sd']:.4%}, val NLL {vn['mean']:.4f} ± "
                  f"{vn['sd']:.4f}; test (reported) {ta['mean']:.4%} ± {ta['sd']:.4%} {ta['values']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
