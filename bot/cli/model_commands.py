"""`chatbot train | eval | reply | attention`: the nlp engine from the command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from bot.cli import arguments
from bot.cli.errors import CliError, one_line
from bot.cli.outputs import check_checkpoint_output, check_file_output
from config import Settings

ATTENTION_IMAGE_SUFFIXES = (".png", ".svg", ".pdf")  # what matplotlib writes without extras


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_train(subparsers)
    _register_eval(subparsers)
    _register_reply(subparsers)
    _register_attention(subparsers)


# ---- train ---------------------------------------------------------------------------------------


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model on dialogue pairs",
        description="Train the seq2seq model. Sources: chitchat, chatterbot, or .tsv/.jsonl files. "
        "Unset options come from the settings (CHATBOT_TRAINING__*, CHATBOT_MODEL__*).",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="SOURCE",
        help="chitchat | chatterbot | FILE.tsv | FILE.jsonl (repeatable)",
    )
    p.add_argument("--out", required=True, type=Path, help="checkpoint directory to write")
    p.add_argument("--epochs", type=int, dest="max_epochs")
    p.add_argument("--max-steps", type=arguments.positive_int)
    p.add_argument(
        "--time-budget", type=arguments.positive_float, dest="time_budget_minutes", metavar="MIN"
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=arguments.finite_float, dest="learning_rate")
    p.add_argument("--label-smoothing", type=arguments.finite_float)
    p.add_argument("--context-turns", type=int)
    p.add_argument("--max-length", type=int)
    p.add_argument("--min-count", type=int)
    p.add_argument("--max-vocab", type=int)
    p.add_argument("--seed", type=arguments.seed)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        help="bfloat16 autocast (default: where the hardware has native bf16)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=["linear", "cosine", "constant", "plateau"],
        help="learning rate over the budget (default linear decay to zero)",
    )
    p.add_argument("--warmup-steps", type=int)
    p.add_argument(
        "--validate-every",
        type=int,
        dest="validate_every_steps",
        metavar="STEPS",
        help="validate (and log sample replies) every STEPS steps instead of every epoch",
    )
    p.add_argument(
        "--average-last",
        type=int,
        metavar="N",
        help="average the weights of the last N validations if that validates better",
    )
    p.add_argument("--cell", choices=["gru", "lstm"])
    p.add_argument("--embedding-dim", type=int)
    p.add_argument("--hidden-size", type=int)
    p.add_argument("--layers", type=int, dest="num_layers")
    p.add_argument("--dropout", type=arguments.finite_float)
    p.add_argument("--attention", choices=["dot", "general", "concat"])
    p.add_argument("--no-tie", action="store_false", dest="tie_embeddings", default=None)
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument(
        "--init-from",
        type=Path,
        metavar="DIR",
        help="a second stage: start from this checkpoint's weights, vocabulary, sizes and context "
        "rule with a fresh schedule (its test pairs stay the test pairs)",
    )
    p.add_argument(
        "--reverse", action="store_true", help="train the MMI reverse model p(context | reply)"
    )
    p.add_argument(
        "--fp16-weights",
        action="store_true",
        help="store weights as float16 (half the size; no optimizer state kept)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_train, log_level=logging.INFO)


def _override(section: Any, args: argparse.Namespace) -> Any:
    """A copy of a settings section with every CLI flag the user gave."""
    given = {
        k: v for k, v in vars(args).items() if k in type(section).model_fields and v is not None
    }
    return section.model_validate({**section.model_dump(), **given})


def run_train(args: argparse.Namespace, settings: Settings) -> int:
    from nlp.training import train_from_sources

    if args.init_from is not None:
        _check_init_from(args)
    if args.resume and not (args.out / "config.json").is_file():
        raise CliError(f"--resume: no checkpoint to resume in {args.out}")
    check_checkpoint_output(args.out)
    try:
        training = _override(settings.training, args)
        model = _override(settings.model, args)
    except ValueError as exc:
        raise CliError(f"invalid option {one_line(exc)}") from exc
    result = train_from_sources(
        args.data,
        args.out,
        training,
        model,
        settings.text,
        resume=args.resume,
        init_from=args.init_from,
        reverse=args.reverse,
        fp16_weights=args.fp16_weights,
        show_progress=not args.quiet and sys.stderr.isatty(),
    )
    print(
        json.dumps(
            {
                "out": str(args.out),
                "best_valid_ppl": round(_exp(result.best_valid_loss), 3),
                "steps": result.steps,
                "epochs": result.epochs,
                "minutes": round(result.seconds / 60, 2),
                "stopped_because": result.stopped_because,
            }
        )
    )
    return 0


# What a checkpoint fixes: a second stage takes these from the checkpoint it starts from.
_FIXED_BY_CHECKPOINT = {
    "context_turns": "--context-turns",
    "max_length": "--max-length",
    "min_count": "--min-count",
    "max_vocab": "--max-vocab",
    "cell": "--cell",
    "embedding_dim": "--embedding-dim",
    "hidden_size": "--hidden-size",
    "num_layers": "--layers",
    "dropout": "--dropout",
    "attention": "--attention",
    "tie_embeddings": "--no-tie",
}


def _check_init_from(args: argparse.Namespace) -> None:
    if args.resume:
        raise CliError("--init-from starts a new run; --resume continues one: use one of them")
    if not (args.init_from / "config.json").is_file():
        raise CliError(f"--init-from: no checkpoint in {args.init_from}")
    if args.init_from.resolve() == args.out.resolve():
        raise CliError("--init-from: write the second stage to another --out directory")
    given = [flag for key, flag in _FIXED_BY_CHECKPOINT.items() if getattr(args, key) is not None]
    if given:
        raise CliError(
            f"--init-from: {', '.join(given)} come from the checkpoint {args.init_from}; drop them"
        )


def _exp(x: float) -> float:
    import math

    return math.exp(min(x, 50.0))


# ---- decoding options shared by reply and eval -----------------------------------------------


def add_decoding_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--beam", type=int, metavar="N", help="beam search with N beams")
    group.add_argument("--sample", action="store_true", help="sample (see --top-p, --top-k)")
    group.add_argument("--greedy", action="store_true", help="greedy decoding")
    group.add_argument(
        "--rerank",
        type=int,
        metavar="N",
        help="sample N replies and keep the best scored (with --mmi: plus the reverse model)",
    )
    p.add_argument("--min-length", type=int, help="tokens before a reply may end")
    p.add_argument(
        "--no-repeat-words",
        action="store_true",
        default=None,
        help="no token right after itself, each content word at most once a reply",
    )
    p.add_argument("--length-weight", type=arguments.finite_float, dest="rerank_length_weight")
    p.add_argument("--top-p", type=arguments.finite_float)
    p.add_argument("--top-k", type=int)
    p.add_argument(
        "--temperature", type=arguments.finite_float, help="sample and rerank: 0.01 to 100"
    )
    p.add_argument("--max-length", type=int, help="longest reply in tokens")
    p.add_argument(
        "--mmi",
        type=Path,
        metavar="REVERSE_DIR",
        help="rerank candidates with this reverse model (MMI-bidi; chatbot train --reverse)",
    )
    p.add_argument("--mmi-weight", type=arguments.finite_float)
    p.add_argument("--int8", action="store_true", help="int8 dynamic quantisation (CPU)")


def decoding_from_args(settings: Settings, args: argparse.Namespace) -> Any:
    # Only what the operator set: an untouched section lets a checkpoint's decoding.json apply.
    d = settings.decoding.model_dump(include=settings.decoding.model_fields_set)
    if args.beam is not None:
        d.update(strategy="beam", beam_size=args.beam)
    elif args.sample:
        d["strategy"] = "sample"
    elif args.greedy:
        d["strategy"] = "greedy"
    elif args.rerank is not None:
        d.update(strategy="rerank", rerank_candidates=args.rerank)
    for name in (
        "top_p",
        "top_k",
        "temperature",
        "max_length",
        "mmi_weight",
        "min_length",
        "rerank_length_weight",
        "no_repeat_words",
    ):
        if getattr(args, name) is not None:
            d[name] = getattr(args, name)
    if args.mmi is not None:
        d["mmi_reverse_dir"] = args.mmi
    if args.int8:
        d["quantize_int8"] = True
    try:
        decoding = type(settings.decoding).model_validate(d)
    except ValueError as exc:
        raise CliError(f"invalid decoding option {one_line(exc)}") from exc
    if decoding.blocklist_path is not None:
        check_blocklist(decoding.blocklist_path)
    return decoding


def check_blocklist(path: Path) -> None:
    """The model reads it as it loads; a file it cannot read is one line here instead."""
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CliError(f"cannot read the blocklist {path}: not UTF-8 text") from None
    except OSError as exc:
        raise CliError(f"cannot read the blocklist {path}: {exc.strerror or exc}") from None


# ---- eval ----------------------------------------------------------------------------------------


def _register_eval(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on its test (or valid) split",
        description="Perplexity, distinct-1/2, generic-reply rate, mean reply length and BLEU on "
        "the split the checkpoint was trained with; printed and written to DIR/eval-SPLIT.json.",
    )
    p.add_argument("checkpoint", type=Path, metavar="DIR")
    p.add_argument("--split", choices=["test", "valid", "train"], default="test")
    p.add_argument(
        "--data",
        action="append",
        metavar="SOURCE",
        help="evaluate on these sources instead of the ones the model was trained on",
    )
    p.add_argument("--out", type=Path, help="where to write the JSON (default DIR/eval-SPLIT.json)")
    p.add_argument("--limit", type=int, metavar="N", help="only the split's first N pairs")
    p.add_argument(
        "--sizes",
        metavar="N,N,...",
        help="also the reply metrics on the first N pairs for each N (e.g. 40,300,3000)",
    )
    p.add_argument(
        "--pairs-like",
        type=Path,
        metavar="DIR0",
        help="score the pairs of checkpoint DIR0's recipe (same pairs for two models)",
    )
    p.add_argument(
        "--record",
        action="store_true",
        help="also store the result in DIR/metrics.json (key SPLIT, or SPLIT@N)",
    )
    p.add_argument(
        "--prompts",
        type=Path,
        metavar="FILE",
        help="instead of metrics: replies to each prompt of FILE, as a markdown table",
    )
    compare = p.add_mutually_exclusive_group()
    compare.add_argument(
        "--compare", type=Path, metavar="DIR2", help="with --prompts: a second model's replies"
    )
    compare.add_argument(
        "--compare-decoding",
        metavar="JSON",
        help="with --prompts: replies of the same model with other decoding settings, e.g. "
        '\'{"strategy": "beam", "min_length": 3}\'',
    )
    add_decoding_options(p)
    p.set_defaults(run=run_eval)


def _sizes(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise CliError(f"--sizes must be numbers separated by commas, not {text!r}") from exc
    if not sizes or min(sizes) < 1:
        raise CliError("--sizes must be positive numbers")
    return sizes


def run_eval(args: argparse.Namespace, settings: Settings) -> int:
    from nlp.checkpoint import read_config
    from nlp.evaluation import evaluate_checkpoint, record_metrics

    if args.limit is not None and args.limit < 1:
        raise CliError("--limit must be at least 1")
    from nlp.decoding_recipe import choose_decoding

    decoding = choose_decoding(decoding_from_args(settings, args), args.checkpoint)
    if args.prompts is not None:
        return _eval_prompts(args, settings, decoding)
    if args.compare or args.compare_decoding:
        raise CliError("--compare and --compare-decoding need --prompts")
    out = args.out or args.checkpoint / f"eval-{args.split}.json"
    read_config(args.checkpoint)  # a missing checkpoint is the error, not its output directory
    check_file_output(out)
    if args.record:
        check_file_output(args.checkpoint / "metrics.json")
    metrics = evaluate_checkpoint(
        args.checkpoint,
        args.split,
        decoding,
        args.data,
        limit=args.limit,
        sizes=_sizes(args.sizes),
        pairs_like=args.pairs_like,
    )
    if args.record:
        key = args.split if args.limit is None else f"{args.split}@{args.limit}"
        record_metrics(args.checkpoint, key, metrics)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return 0


def _eval_prompts(args: argparse.Namespace, settings: Settings, decoding: Any) -> int:
    from nlp.decoding_recipe import changed_decoding
    from nlp.prompt_eval import read_prompts, side_by_side
    from nlp.responder import Responder

    prompts = read_prompts(args.prompts)
    out = args.out or args.checkpoint / f"prompts-{args.prompts.stem}.md"
    check_file_output(out)
    texts = [p.text for p in prompts]
    first = Responder(args.checkpoint, decoding)
    columns = [(f"{args.checkpoint.name} ({decoding.strategy})", first.reply(texts))]
    if args.compare is not None:
        second = Responder(args.compare, decoding)
        columns.append((f"{args.compare.name} ({decoding.strategy})", second.reply(texts)))
    elif args.compare_decoding is not None:
        try:
            other = changed_decoding(decoding, args.compare_decoding)
        except ValueError as exc:
            raise CliError(f"--compare-decoding: {one_line(exc)}") from exc
        # Its own Responder: what a decoding loads (a reverse model, a blocklist, int8 weights)
        # comes with the Responder, not with a call to it.
        replies = Responder(args.checkpoint, other).reply(texts)
        columns.append((f"{args.checkpoint.name} ({args.compare_decoding})", replies))
    out.write_text(side_by_side(prompts, columns, f"Replies to {args.prompts}"), "utf-8")
    print(f"{len(prompts)} prompts, {len(columns)} column(s): {out}")
    return 0


# ---- reply ---------------------------------------------------------------------------------------


def _register_reply(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reply",
        help="print the model's reply to a text",
        description="Reply to TEXT. Several TEXTs are decoded as one batch, one reply per line.",
    )
    p.add_argument("checkpoint", type=Path, metavar="DIR")
    p.add_argument("texts", nargs="+", metavar="TEXT")
    add_decoding_options(p)
    p.set_defaults(run=run_reply)


def run_reply(args: argparse.Namespace, settings: Settings) -> int:
    from nlp.decoding_recipe import choose_decoding
    from nlp.responder import Responder

    decoding = choose_decoding(decoding_from_args(settings, args), args.checkpoint)
    responder = Responder(args.checkpoint, decoding)
    for reply in responder.reply(args.texts):
        print(reply)
    return 0


# ---- attention -----------------------------------------------------------------------------------


def _register_attention(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "attention",
        help="draw the attention heatmap of a reply",
        description="Greedy-decode a reply to TEXT and save its attention weights as a PNG "
        "(reply words down, context words across).",
    )
    p.add_argument("checkpoint", type=Path, metavar="DIR")
    p.add_argument("text", metavar="TEXT")
    p.add_argument("--out", type=Path, default=Path("attention.png"))
    p.set_defaults(run=run_attention)


def run_attention(args: argparse.Namespace, settings: Settings) -> int:
    from nlp.plots import plot_attention
    from nlp.responder import Responder

    check_file_output(args.out, suffixes=ATTENTION_IMAGE_SUFFIXES)
    responder = Responder(args.checkpoint, settings.decoding)
    source, reply, weights = responder.attention(args.text)
    if not reply.tokens:
        raise CliError("the model produced an empty reply: nothing to draw")
    plot_attention(weights, source, reply.tokens, args.out)
    print(f"{reply.text}\n(attention heatmap written to {args.out})")
    return 0
