"""python -m gpt_mini.knowledge (or gpt_mini.calibrate): the refusal thresholds at a grid of values on a
development set, to choose them on the calibration half and report them on the other."""

import json

from .checkpoint import load_model
from .config import ROOT
from .errors import ArgumentParser, UserError, run_cli
from .knowledge import CONFIDENCE_THRESHOLD, SIMILARITY_THRESHOLD, course_of, keeps_alone, read_dev
from .quality import refusal_report


def grid(confidences=None, similarities=None) -> list[tuple[float, float]]:
    """The pairs of thresholds to try. The default grid always holds the thresholds in force, so the calibration
    table shows the chosen row."""
    confidences = confidences or sorted({0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, CONFIDENCE_THRESHOLD})
    similarities = similarities or sorted({0.0, 0.2, 0.25, 0.3, 0.35, 0.4, SIMILARITY_THRESHOLD})
    return [(c, s) for c in confidences for s in similarities]


def passes(attempt, c: float, s: float) -> bool:
    """attempt: (confidence, similarity, ..., closer to a question taught to be refused, the model refused itself);
    does the gate let it through? The last two do not depend on the thresholds."""
    return not attempt[-1] and not attempt[-2] and attempt[0] >= c and attempt[1] >= s


def chosen(tries, c: float, s: float, two_turn: bool = False):
    """What the chat keeps at thresholds c, s (knowledge.reply_in_context). A first question: the answer to the
    whole, or, when the gate (not the model itself) refuses it, the surest answer to a part that the gate passes.
    A two-turn row (tries: with the earlier exchange, alone): the one knowledge.keeps_alone keeps."""
    if two_turn:
        with_context, alone = tries
        keep = keeps_alone(passes(alone, c, s), alone[1], alone[0], passes(with_context, c, s), with_context[0])
        return alone if keep else with_context
    whole = tries[0]
    if passes(whole, c, s) or whole[-1]:
        return whole
    passed = [t for t in tries[1:] if passes(t, c, s)]
    return max(passed, key=lambda t: t[0]) if passed else whole


def sweep(items, confidences=None, similarities=None, two_turn=None) -> list[dict]:
    """items: per question its tries (see chosen; two_turn marks the two-turn rows), each (confidence, similarity,
    closer to a refused question, the model refused itself) -> share refused at each pair of thresholds."""
    two_turn = two_turn or [False] * len(items)
    return [{"confidence": c, "similarity": s,
             "refused": sum(not passes(chosen(t, c, s, two), c, s) for t, two in zip(items, two_turn))
             / max(1, len(items))}
            for c, s in grid(confidences, similarities)]


def share(flags, among) -> float:
    """The share of True flags among the questions marked in `among`."""
    return sum(f for f, a in zip(flags, among) if a) / max(1, sum(among))


def table(scores: dict) -> list[dict]:
    """refusal_report's scores (per question its tries, each (confidence, similarity, F1, closer to a refused
    question, refused by the model) for course questions) -> one row per pair of thresholds: shares refused (all
    course questions, those whose answer to the whole question is right, those whose answer is wrong, the
    questions to refuse), course questions answered right, and the share of all the questions handled right (a
    course question answered right, any other refused): the rule maximizes that on the calib half, which mixes
    course and other questions about 2:1, as a class asks them."""
    n_in, n_out, rows = len(scores["in"]), len(scores["out"]), []
    two_turn = scores.get("two_turn", {})
    two_in = two_turn.get("in") or [False] * n_in
    right_whole = [t[0][2] >= 0.8 for t in scores["in"]]
    for (c, s), out in zip(grid(), sweep(scores["out"], two_turn=two_turn.get("out"))):
        kept = [chosen(t, c, s, two) for t, two in zip(scores["in"], two_in)]
        refused = [not passes(k, c, s) for k in kept]
        answered = sum(not no and k[2] >= 0.8 for k, no in zip(kept, refused)) / max(1, n_in)
        rows.append({"confidence": c, "similarity": s,
                     "refused": [share(refused, [True] * n_in), share(refused, right_whole),
                                 share(refused, [not r for r in right_whole]), out["refused"]], "right": answered,
                     "handled": (answered * n_in + out["refused"] * n_out) / max(1, n_in + n_out)})
    return rows


def main(argv=None):
    p = ArgumentParser(description="校准拒答阈值 / calibrate the refusal threshold on the development set")
    p.add_argument("--ckpt", default=str(ROOT / "checkpoints" / "last.pt"))
    p.add_argument("--dev", default=str(ROOT / "data" / "dev_class.jsonl"),
                   help="开发集（有 completion 的要答，没有的要拒答）/ dev set: rows with a completion are answered")
    p.add_argument("--split", default="calib_new", choices=("calib_new", "report", "calib", "calib_old", "all"),
                   help="在哪一部分上看：calib_new（12 月 6 日新写的，用来选模型和阈值）；report 用来报告；calib 和 "
                        "calib_old 是以前的校准部分（挑过训练数据，不再干净）/ which part: choose the model and the "
                        "thresholds on calib_new (written on 6 Dec), report on report; calib and calib_old are former "
                        "calibration halves (used to pick training data, no longer clean)")
    args = p.parse_args(argv)
    model, tok, ckpt = load_model(args.ckpt)
    dev_in, dev_out = read_dev(args.dev, args.split)
    if not dev_in or not dev_out:
        raise UserError(f"{args.dev} 的 {args.split} 部分缺少要回答或要拒答的问题",
                        f"the {args.split} part of {args.dev} lacks questions to answer or to refuse")
    report = refusal_report(model, tok, course_of(ckpt), dev_in, dev_out, CONFIDENCE_THRESHOLD,
                            SIMILARITY_THRESHOLD)
    scores = report.pop("scores")
    print(json.dumps(report, ensure_ascii=False))
    print("confidence >= | similarity >= | in-course refused | right answers refused | wrong answers refused | "
          "out-of-course refused | course answered right | all handled right")
    rows = table(scores)
    for r in rows:
        print(f"{r['confidence']:13.2f} | {r['similarity']:13.2f} | "
              + " | ".join(f"{x:.1%}" for x in r["refused"] + [r["right"], r["handled"]]))
    best = max(rows, key=lambda r: (round(r["handled"], 9), r["similarity"], r["confidence"]))  # ties: the stricter
    print(f"处理对的问题最多 / most questions handled right: confidence >= {best['confidence']:.2f}, similarity >= "
          f"{best['similarity']:.2f} ({best['handled']:.1%}; course right {best['right']:.1%}, "
          f"out of course refused {best['refused'][3]:.1%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
