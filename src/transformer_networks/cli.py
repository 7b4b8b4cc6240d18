"""The `transformer-networks` command line: the parser, and one table (`COMMANDS`) from each subcommand to the
typed function of its domain module that does the work, which Python users can call as well:

    train       training.train (settings from settings.resolve_settings)    evaluate   training.evaluate
    translate   inference.translate_stream                                  generate   inference.generate_stream
    classify    inference.classify_stream                                   attention  inference.draw_attention
    explore     explorer.write_explorer / serve_explorer (the attention explorer page)
    answer      inference.answer_questions / answer_stream
    chat        inference.ChatSession (a terminal) / chat_stream (a pipe)
    average     training.average.average_checkpoints / average_run          plot       viz.plot_curves
    convert     pretrained.convert                                          export     pretrained.export
    info        models.summary.info                                         forward    models.summary.demo
    demo        train, evaluate and plot of the SCAN demo (`make demo`)

Each entry of `COMMANDS` only turns parsed arguments into that call and prints its result; `main` turns a
`UserError` into a one-line message with exit code 2.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .backends.onednn import use_onednn
from .checkpoints import load_checkpoint
from .config import COMPILE_MODES, PRESETS, TrainConfig
from .device import pick_device
from .errors import UserError
from .generation.logits import check_sampling
from .generation.steps import slide_keep
from .inference import (
    ChatSession,
    answer_questions,
    answer_stream,
    chat_stream,
    classify_stream,
    draw_attention,
    generate_stream,
    load_for,
    read_lines,
    translate_stream,
)
from .models import MODELS
from .models.summary import demo, describe, info
from .pretrained import convert, export
from .settings import parse_overrides, resolve_settings, split_settings
from .tasks import TASKS
from .training import evaluation
from .training.average import average_checkpoints, average_run
from .training.trainer import TrainResult, train
from .version import __version__
from .viz.curves import plot_curves

__all__ = ["COMMANDS", "demo", "info", "main", "parse_overrides", "split_settings"]  # the last three: older imports

# Flags of `train` that are shorthands for a training setting (the same as --set NAME=VALUE).
TRAIN_FLAGS = (
    "warmup",
    "report_to",
    "weight_decay",
    "grad_accum",
    "tokenizer",
    "vocab_size",
    "max_len",
    "truncate",
    "batch_size",
    "max_tokens",
    "block_size",
    "max_steps",
    "max_epochs",
    "max_minutes",
    "eval_every",
    "patience",
    "lr",
    "device",
    "seed",
    "precision",
    "compile",
    "compile_mode",
    "text_column",
    "label_column",
    "skip_nonfinite",
)


def _train(args: argparse.Namespace) -> int:
    """`train TASK ...`: resolve the settings, train, print the best validation metrics."""
    from .data.splits import DataSpec

    if args.resume is not None:
        return _resume(args)
    if args.task is None or args.out is None:
        raise UserError(f"train needs a task ({', '.join(TASKS)}) and --out DIR, or --resume RUN_DIR")
    overrides: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name in TRAIN_FLAGS:
        value = getattr(args, name)
        if value is not None and value is not False:
            overrides[name], origin[name] = value, f"--{name.replace('_', '-')}"
    for key, value in parse_overrides(args.overrides).items():
        overrides[key], origin[key] = value, f"--set {key}"
    model_config, train_config, model_fields = resolve_settings(args.preset, args.config_file, overrides, origin)
    if args.init and model_fields:
        raise UserError(
            f"--init takes the architecture from {args.init}; model settings "
            f"({', '.join(sorted(model_fields))}) cannot change it"
        )
    spec = DataSpec(
        data=args.data or [],
        valid=args.valid or [],
        source_file=args.source_file,
        target_file=args.target_file,
        valid_source_file=args.valid_source_file,
        valid_target_file=args.valid_target_file,
    )
    return _finished(
        train(
            args.task,
            args.out,
            data=spec,
            model_config=model_config,
            train_config=train_config,
            model_fields_set=model_fields,
            overwrite=args.overwrite,
            quiet=args.quiet,
            init=args.init,
        )
    )


def _resume(args: argparse.Namespace) -> int:
    """`train --resume RUN_DIR` (or `train TASK --out RUN_DIR --resume`): continue a run from its last checkpoint
    with its own settings; nothing else may be changed, or the run would not be the one it was."""
    run = args.out if args.resume is True else args.resume
    if run is None:
        raise UserError("--resume needs the run directory: --resume RUN_DIR")
    changed = [
        f"--{name.replace('_', '-')}"
        for name in (*TRAIN_FLAGS, "data", "valid", "preset", "config_file")
        if getattr(args, name, None) not in (None, False, []) and name != "max_steps"
    ] + ["--set"] * bool(args.overrides)
    if changed:
        raise UserError(
            f"--resume continues a run with its own settings (only --max-steps may extend it); leave out "
            f"{', '.join(changed)}"
        )
    return _finished(train(args.task or "", run, resume=True, max_steps=args.max_steps, quiet=args.quiet))


def _finished(result: TrainResult) -> int:
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    if result.interrupted:
        print(f"transformer-networks: {result.stop_reason}", file=sys.stderr)
        return 130 if result.interrupted == "SIGINT" else 143
    shown = ", ".join(f"{k} {v:.4g}" for k, v in result.best.items())
    print(f"best validation: {shown}")
    print(f"checkpoint: {result.out / 'best'}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    """`evaluate CHECKPOINT...`: print the task's metrics (one JSON object with --json)."""
    from .data.splits import DataSpec

    spec = DataSpec(data=args.data or [], source_file=args.source_file, target_file=args.target_file)
    log = None if args.json or args.quiet else (lambda message: print(message, file=sys.stderr))
    if len(args.checkpoint) > 1:
        if args.predictions:
            raise UserError("--predictions writes one checkpoint's answers; leave it out for an ensemble")
        if args.examples:
            raise UserError("--examples prints one checkpoint's predictions; leave it out for an ensemble")
        result = evaluation.evaluate_ensemble(args.checkpoint, spec, split=args.split, device=args.device, log=log)
    else:
        result = evaluation.evaluate(
            args.checkpoint[0],
            spec,
            split=args.split,
            device=args.device,
            samples=args.examples,
            log=log,
            num_beams=args.beam,
            length_penalty=args.length_penalty,
            predictions=args.predictions,
            null_threshold=args.null_threshold,
        )
    if args.json:
        print(
            json.dumps(
                {
                    "task": result.task,
                    "data": result.data,
                    "examples": result.examples,
                    "dropped": result.dropped,
                    **result.metrics,
                }
            )
        )
        return 0
    unit = TASKS[result.task].raw_unit
    dropped = f", {result.dropped:,} too long or empty and left out" if result.dropped else ""
    print(f"checkpoint: {result.checkpoint}")
    print(f"data:       {result.data} ({result.examples:,} {unit}{dropped})")
    for name, value in result.metrics.items():
        print(f"{name + ':':<20}{value:.4f}")
    for sample in result.samples:
        print()
        for key, value in sample.items():
            print(f"  {key + ':':<11} {value}")
    return 0


def _stdin() -> Any:
    return sys.stdin.buffer


def _line_progress(quiet: bool) -> Any:
    """A tqdm bar counting input lines on stderr when it is a terminal; None otherwise."""
    if quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(file=sys.stderr, unit="line", dynamic_ncols=True)


def _translate(args: argparse.Namespace) -> int:
    """`translate CHECKPOINT`: source lines on stdin, one translation per line on stdout."""
    if args.n_best > args.beam:
        raise UserError(f"--n-best {args.n_best} needs --beam of at least {args.n_best}")
    ck = load_for("translation", args.checkpoint, pick_device(args.device))
    bar = _line_progress(args.quiet)
    translate_stream(
        ck,
        _stdin(),
        sys.stdout,
        num_beams=args.beam,
        length_penalty=args.length_penalty,
        n_best=args.n_best,
        batch_size=args.batch_size,
        truncate=args.truncate,
        on_lines=None if bar is None else bar.update,
    )
    if bar is not None:
        bar.close()
    return 0


def _generate(args: argparse.Namespace) -> int:
    """`generate CHECKPOINT`: continue a prompt (--prompt, else all of stdin)."""
    if not args.greedy:
        check_sampling(args.temperature, args.top_k, args.top_p)
    ck = load_for("lm", args.checkpoint, pick_device(args.device))
    if args.prompt is not None:
        prompt = args.prompt
    else:
        prompt = "\n".join(line for _, lines in read_lines(_stdin(), 1024) for line in lines)
    window = ck.config.max_seq_len
    n_prompt = len(ck.tokenizer.encode(prompt))  # (a prompt that does not fit is an error: no note before it)
    if n_prompt < window and n_prompt + args.max_new_tokens > window and not args.quiet:
        print(
            f"note: the model's context is {window} tokens: past it, the model sees only the last "
            f"{slide_keep(window)} to {window} tokens (it starts again from the last {slide_keep(window)} each time "
            "its context fills)",
            file=sys.stderr,
        )
    pieces = generate_stream(
        ck,
        prompt,
        max_new_tokens=args.max_new_tokens,
        do_sample=not args.greedy,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        stop=args.stop,
        truncate=args.truncate,
    )
    first = next(pieces, "")  # the prompt's checks (empty, too long) raise before anything is printed
    print(prompt + first, end="", flush=True)
    for piece in pieces:  # the continuation as it is generated
        print(piece, end="", flush=True)
    print()
    return 0


CHAT_HELP = (
    "commands: /reset forgets the conversation, /system TEXT sets a new system message (and starts over), "
    "/save FILE appends the conversation to FILE as a line of the training format, /exit (or Ctrl-D) ends; "
    "Ctrl-C stops a reply"
)


def _chat(args: argparse.Namespace) -> int:
    """`chat CHECKPOINT`: a conversation at the terminal (replies streamed), or one JSON reply per input line
    when stdin is not a terminal."""
    if not args.greedy:
        check_sampling(args.temperature, args.top_k, args.top_p)
    ck = load_for("chat", args.checkpoint, pick_device(args.device))
    options: dict[str, Any] = {
        "max_new_tokens": args.max_new_tokens,
        "do_sample": not args.greedy,
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "seed": args.seed,
        "stop": args.stop,
    }
    if not _stdin_is_terminal():
        chat_stream(ck, _stdin(), sys.stdout, **options)
        return 0
    session = ChatSession(ck, system=args.system, **options)
    print(f"chatting with {ck.path} ({ck.config.max_seq_len} tokens of context); {CHAT_HELP}", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print()
            continue
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command, _, rest = text.partition(" ")
            if command in ("/exit", "/quit"):
                return 0
            if command == "/reset":
                session.reset()
                print("(conversation reset)", file=sys.stderr)
            elif command == "/system":
                if not rest.strip():
                    print("usage: /system TEXT", file=sys.stderr)
                    continue
                session.set_system(rest.strip())
                print("(new system message; conversation reset)", file=sys.stderr)
            elif command == "/save":
                if not rest.strip():
                    print("usage: /save FILE", file=sys.stderr)
                    continue
                try:
                    with open(rest.strip(), "a", encoding="utf-8") as f:
                        f.write(session.to_json() + "\n")
                except OSError as e:
                    print(f"cannot write {rest.strip()}: {e.strerror}", file=sys.stderr)
                    continue
                print(f"(saved to {rest.strip()})", file=sys.stderr)
            else:
                print(f"unknown command {command}; {CHAT_HELP}", file=sys.stderr)
            continue
        dropped = session.dropped
        pieces = session.reply(line)
        try:
            for piece in pieces:
                print(piece, end="", flush=True)
            print()
        except KeyboardInterrupt:
            print(" [stopped]")
        except UserError as e:  # a message too long for the context: say so, keep the session
            print(f"error: {e}", file=sys.stderr)
        finally:
            pieces.close()
        if session.dropped > dropped:
            print(f"(the context is full: dropped the {session.dropped - dropped} oldest exchange(s))", file=sys.stderr)


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _classify(args: argparse.Namespace) -> int:
    """`classify CHECKPOINT`: one text per line on stdin; `label<TAB>probability` (or JSON) per line on stdout."""
    ck = load_for("classification", args.checkpoint, pick_device(args.device))
    bar = _line_progress(args.quiet)
    classify_stream(
        ck,
        _stdin(),
        sys.stdout,
        json_lines=args.json,
        batch_size=args.batch_size,
        truncate=args.truncate,
        on_lines=None if bar is None else bar.update,
    )
    if bar is not None:
        bar.close()
    return 0


def _answer(args: argparse.Namespace) -> int:
    """`answer CHECKPOINT --question TEXT --context FILE`: the answer span; without --question, JSONL questions
    on stdin, one JSON answer per line on stdout."""
    ck = load_for("qa", args.checkpoint, pick_device(args.device))
    if args.question is None:
        if args.context is not None:
            raise UserError("--context goes with --question; without them, give JSONL on stdin")
        bar = _line_progress(args.quiet)
        answer_stream(
            ck,
            _stdin(),
            sys.stdout,
            n_best=args.n_best,
            null_threshold=args.null_threshold,
            on_lines=None if bar is None else bar.update,
        )
        if bar is not None:
            bar.close()
        return 0
    if args.context is None:
        raise UserError("--question needs --context FILE (- for stdin)")
    context = _read_context(args.context)
    [answers] = answer_questions(ck, [(args.question, context)], n_best=args.n_best, null_threshold=args.null_threshold)
    if args.json:
        shown = answers[0].to_dict() if args.n_best == 1 else {"answers": [a.to_dict() for a in answers]}
        print(json.dumps(shown, ensure_ascii=False))
    else:
        for a in answers:
            print(a.text if a.text else "(no answer)")
    return 0


def _read_context(name: str) -> str:
    """The text of a context file, or of stdin for "-" (UTF-8)."""
    from .data.readers import read_text

    if name == "-":
        return "\n".join(line for _, lines in read_lines(_stdin(), 1024) for line in lines)
    return read_text(name)


def _attention(args: argparse.Namespace) -> int:
    """`attention CHECKPOINT --text ... --out FILE.png`: draw attention heatmaps."""
    print(
        draw_attention(
            load_checkpoint(args.checkpoint),
            args.text,
            args.out,
            target=args.target,
            kind=args.kind,
            layer=args.layer,
            head=args.head,
            truncate=args.truncate,
            context=args.context,
        )
    )
    return 0


def _average(args: argparse.Namespace) -> int:
    """`average CKPT... --out DIR`, or `average RUN --last N --out DIR`."""
    if args.last is not None:
        if len(args.checkpoints) != 1:
            raise UserError("--last N takes one run directory")
        out, n = average_run(args.checkpoints[0], args.last, args.out, overwrite=args.overwrite)
    else:
        out, n = average_checkpoints(args.checkpoints, args.out, overwrite=args.overwrite), len(args.checkpoints)
    print(f"averaged {n} checkpoints into {out}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    """`convert HF_DIR OUT_DIR`: a Hugging Face model directory in our layout."""
    model, out = convert(args.hf_dir, args.out_dir, overwrite=args.overwrite)
    print(f"{type(model).__name__}, {model.num_parameters():,} parameters -> {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    """`export CHECKPOINT --onnx OUT.onnx` and/or `--hf DIR` (GPT-2 / BERT layout)."""
    for path in export(args.checkpoint, onnx=args.onnx, hf=args.hf, overwrite=args.overwrite):
        print(path)
    return 0


def _plot(args: argparse.Namespace) -> int:
    """`plot RUN_DIR`: learning curves to a PNG."""
    print(plot_curves(args.run_dir, args.out))
    return 0


def _info(args: argparse.Namespace) -> int:
    summary = info(args.family, args.preset, args.config_file, parse_overrides(args.overrides))
    print(summary.config.to_json(), end="") if args.json else print(describe(summary))
    return 0


# `demo` (and `make demo`): an encoder-decoder learns SCAN from scratch, the settings of configs/scan-demo.yaml
# (which explains them; a test keeps the two equal).
DEMO_MODEL = {
    "d_model": 128,
    "n_heads": 8,
    "n_layers": 2,
    "d_ff": 512,
    "dropout": 0.0,
    "positional": "rope",
    "qk_norm": True,
}
DEMO_TRAIN = {
    "tokenizer": "word",
    "max_tokens": 1024,
    "lr": 0.0015,
    "schedule": "cosine",
    "warmup": 100,
    "min_lr_ratio": 0.05,
    "max_steps": 4000,
    "eval_every": 1000,
    "eval_examples": 400,
}


def _demo(args: argparse.Namespace) -> int:
    """`demo`: train the SCAN demo, then evaluate it on the test split and plot its curves (what `make demo`
    runs); with --forward (or the old --preset / --batch-size / --seq-len), one forward pass of a preset."""
    if args.forward or any(v is not None for v in (args.preset, args.batch_size, args.seq_len)):
        return _forward(args)
    settings = [x for k, v in {**DEMO_MODEL, **DEMO_TRAIN}.items() for x in ("--set", f"{k}={v}")]
    train = ["train", "translation", "--data", "builtin:scan", "--preset", "small", *settings, "--out", args.out]
    for argv in (
        train + (["--overwrite"] if args.overwrite else []) + (["--device", args.device] if args.device else []),
        ["evaluate", args.out, "--examples", "3"] + (["--device", args.device] if args.device else []),
        ["plot", args.out],
    ):
        code = main(argv)
        if code:
            return code
    return 0


def _forward(args: argparse.Namespace) -> int:
    """`forward`: build a preset's encoder-decoder, run one forward pass on random tokens, print its size."""
    print(describe(demo(args.preset or "paper-base", args.batch_size or 2, args.seq_len or 32)))
    return 0


def _prepare(args: argparse.Namespace) -> int:
    """`prepare lm --data PATH... --out DIR`: tokenize a corpus once into token shards that `train lm --data DIR`
    reads through memory maps."""
    from .data.prepared import prepare_lm

    prepare_lm(
        args.data,
        args.out,
        kind=args.tokenizer,
        vocab_size=args.vocab_size,
        valid=args.valid,
        valid_fraction=args.valid_fraction,
        text_field=args.text_field,
        errors=args.errors,
        tokenizer=args.tokenizer_file,
        sample_bytes=int(args.tokenizer_sample_mb * 1e6),
        overwrite=args.overwrite,
        quiet=args.quiet,
    )
    return 0


def _explore(args: argparse.Namespace) -> int:
    """`explore RUN --text ... --out FILE.html`: the attention explorer as one file; without --out, live on
    loopback until Ctrl-C."""
    from .explorer import serve_explorer, write_explorer

    options: dict[str, Any] = {
        "target": args.target,
        "context": args.context,
        "truncate": args.truncate,
        "continuation": args.continuation,
        "top_k": args.top_k,
        "min_weight": args.min_weight,
        "max_weights": args.max_weights,
    }
    ck = load_checkpoint(args.checkpoint, pick_device(args.device))
    if args.out is not None:
        if args.text is None:
            raise UserError("--out writes the page for one input: give it with --text")
        out = write_explorer(ck, args.text, args.out, overwrite=args.overwrite, **options)
        print(f"{out} ({out.stat().st_size / 1e6:.2f} MB)")
        return 0
    for name in ("target", "context"):  # the page's form gives these in the live mode
        if options[name] is not None and args.text is None:
            raise UserError(f"--{name} goes with --text (the first input the page shows)")
    try:
        server = serve_explorer(ck, args.host, args.port, text=args.text, **options)
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from None
    host, port = str(server.server_address[0]), server.server_address[1]
    print(f"attention explorer for {ck.path} at http://{host}:{port}/ (Ctrl-C stops)", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _serve(args: argparse.Namespace) -> int:
    """`serve RUN [NAME=RUN ...]`: an OpenAI-compatible HTTP API over the checkpoints, until Ctrl-C or SIGTERM
    (which stops accepting, finishes the requests in flight, then exits)."""
    try:
        import uvicorn

        from .serving.app import ServerSettings, create_app
    except ImportError as e:
        raise UserError(f"serve needs {e.name}: pip install 'transformer-networks[serve]'") from None
    device = pick_device(args.device)
    models = {}
    for spec in args.models:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = os.path.basename(os.path.normpath(spec)), spec
        if not name or not path:
            raise UserError(f"{spec!r}: give a run directory, or NAME=RUN")
        if name in models:
            raise UserError(f"two models are named {name!r}: give one of them another name with NAME=RUN")
        ck = load_checkpoint(path, device)
        if device.type == "cpu":
            use_onednn(ck.model)
        models[name] = ck
        print(f"serving {name!r}: {ck.task} model from {ck.path}", file=sys.stderr)
    settings = ServerSettings(
        api_key=args.api_key or os.environ.get("TN_API_KEY") or None,
        max_body_bytes=args.max_body_bytes,
        max_batch_size=args.max_batch_size,
        max_queue=args.max_queue,
        timeout=args.timeout,
    )
    app = create_app(models, settings)
    log_level = "warning" if args.quiet else "info"
    uvicorn.run(app, host=args.host, port=args.port, log_level=log_level, timeout_graceful_shutdown=args.timeout)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": _demo,
    "forward": _forward,
    "info": _info,
    "train": _train,
    "prepare": _prepare,
    "evaluate": _evaluate,
    "translate": _translate,
    "generate": _generate,
    "classify": _classify,
    "answer": _answer,
    "chat": _chat,
    "serve": _serve,
    "explore": _explore,
    "attention": _attention,
    "average": _average,
    "convert": _convert,
    "export": _export,
    "plot": _plot,
}


# Options of `train` that only some tasks read (the rest read all): `train TASK --help` leaves out the others'.
TASK_OPTIONS = {
    "source_file": {"translation"},
    "target_file": {"translation"},
    "valid_source_file": {"translation"},
    "valid_target_file": {"translation"},
    "max_tokens": {"translation"},
    "block_size": {"lm"},
    "text_column": {"classification"},
    "label_column": {"classification"},
    "batch_size": set(TASKS) - {"translation"},
    "max_len": set(TASKS) - {"lm"},
    "truncate": set(TASKS) - {"lm"},
}


TASK_MODELS = {
    "lm": "language model",
    "translation": "translator",
    "classification": "classifier",
    "qa": "question-answering model",
    "chat": "chat model",
}


class _TaskHelp(argparse.Action):
    """`--help` of `train`: with a task named before it, only the options that task reads."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, *_: Any) -> None:
        task = getattr(namespace, "task", None)
        if task is not None:
            for action in parser._actions:
                if task not in TASK_OPTIONS.get(action.dest, {task}):
                    action.help = argparse.SUPPRESS
            parser.usage = f"{parser.prog} {task} --out DIR [options]"
            parser.description = f"Train a {TASK_MODELS.get(task, task + ' model')}. " + (parser.description or "")
        parser.print_help()
        parser.exit()


def _show_training_defaults(parser: argparse.ArgumentParser) -> None:
    """Append "(default X)" to the help of each training flag whose help does not give it, from TrainConfig."""
    defaults = TrainConfig().to_dict()
    for action in parser._actions:
        value = defaults.get(action.dest)
        shown = value is not None and value is not False
        if action.dest in TRAIN_FLAGS and shown and "default" not in (action.help or ""):
            action.help = f"{action.help} (default {value})" if action.help else f"default {value}"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit code 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            hints = [hint for hint in map(self._close_option, message[len(prefix) :].split()) if hint]
            message = "; ".join([message, *hints])
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._words = list(sys.argv[1:] if args is None else args)  # for the hints of `error`
        return super().parse_args(args, namespace)

    def _close_option(self, word: str) -> str | None:
        """The option of the subcommand used (`train`, `generate`, ...) closest to `word` ("--max_steps" ->
        "--max-steps")."""
        if not word.startswith("-"):
            return None
        options: set[str] = set()
        parsers: list[argparse.ArgumentParser] = [self]
        while parsers:
            parser = parsers.pop()
            for action in parser._actions:
                options.update(o for o in action.option_strings if o.startswith("--"))
                if isinstance(action, argparse._SubParsersAction):  # only the subcommands named on the line
                    used = [name for name in getattr(self, "_words", []) if name in action.choices]
                    parsers.extend(action.choices[name] for name in used[:1])
        name = word.split("=")[0]
        match = difflib.get_close_matches(name.replace("_", "-"), sorted(options), n=1, cutoff=0.75)
        return f"{name}: did you mean {match[0]}?" if match else None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="transformer-networks",
        description="Transformer networks (Vaswani et al. 2017): train, "
        "evaluate and use translators, language models, classifiers, question-answering and chat models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "demo",
        help="train an encoder-decoder on built-in SCAN (about 5 minutes on 2 CPU cores), evaluate it, plot it",
        description="What `make demo` runs: train translation on builtin:scan with the settings of "
        "configs/scan-demo.yaml, print the test split's scores and 3 examples, draw RUN/curves.png. "
        "With --forward: one forward pass of a preset (as `forward`).",
    )
    p.add_argument("--out", default="runs/scan-demo", help="the run directory (default runs/scan-demo)")
    p.add_argument("--overwrite", action="store_true", help="replace the run directory if it exists")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--forward", action="store_true", help="only build a model and run a forward pass (`forward`)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="--forward: the preset (default paper-base)")
    p.add_argument("--batch-size", type=_positive_int, help="--forward: the batch (default 2)")
    p.add_argument("--seq-len", type=_positive_int, help="--forward: the sequence length (default 32)")

    p = sub.add_parser("forward", help="build a preset's encoder-decoder, run a forward pass, print its size")
    p.add_argument("--preset", default="paper-base", choices=sorted(PRESETS))
    p.add_argument("--batch-size", type=_positive_int, default=2)
    p.add_argument("--seq-len", type=_positive_int, default=32)

    p = sub.add_parser("info", help="build a model from a preset or config file and print its size")
    p.add_argument("--family", default="seq2seq", choices=sorted(MODELS))
    p.add_argument("--preset", help=f"one of: {', '.join(sorted(PRESETS))} (default small, as train)")
    p.add_argument(
        "--config", dest="config_file", metavar="FILE", help="YAML or JSON settings, as train reads them (the model's)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field (repeatable), e.g. --set positional=rope",
    )
    p.add_argument("--json", action="store_true", help="print the resolved config as JSON")

    p = sub.add_parser(
        "train",
        help="train a language model, translator, classifier, question-answering or chat model; write a run directory",
        description="Train on files or on built-in data (builtin:scan, builtin:scan-length, "
        "builtin:stdlib-docs, builtin:stdlib-topics, builtin:babi; the default when no data is given).",
        add_help=False,
    )
    p.add_argument("-h", "--help", action=_TaskHelp, help="show this help (train TASK --help: that task's options)")
    p.add_argument("task", nargs="?", choices=list(TASKS))
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="RUN_DIR",
        help="continue RUN_DIR (or --out) from its last checkpoint, exactly as it would have gone on",
    )
    p.add_argument(
        "--init",
        metavar="PATH",
        help="fine-tune pretrained weights: a checkpoint of ours or a local "
        "Hugging Face directory (BERT for classification and qa, GPT-2 for lm, BART/Marian for translation), "
        "with its own tokenizer.json",
    )
    p.add_argument(
        "--data",
        nargs="+",
        metavar="PATH",
        help="training files (lm: files or directories; "
        "translation: source<TAB>target TSV, JSONL or CSV; classification: TSV/CSV/JSONL; qa: SQuAD JSON or JSONL), "
        "or builtin:NAME",
    )
    p.add_argument("--valid", nargs="+", metavar="PATH", help="validation data (default: a held-out part of --data)")
    p.add_argument("--source-file", help="translation: source side, line-aligned with --target-file")
    p.add_argument("--target-file")
    p.add_argument("--valid-source-file")
    p.add_argument("--valid-target-file")
    p.add_argument("--out", metavar="DIR", help="the run directory (refused if it holds files)")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument("--preset", help=f"model preset: {', '.join(sorted(PRESETS))} (default small)")
    p.add_argument(
        "--config",
        dest="config_file",
        metavar="FILE",
        help="YAML or JSON settings (model and training fields, flat or under model:/train:)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="set any model or training field (repeatable), e.g. --set d_model=128 --set lr=5e-4",
    )
    p.add_argument("--tokenizer", choices=["char", "word", "bpe", "unigram"])
    p.add_argument("--vocab-size", type=_positive_int, help="bpe/unigram vocabulary size (default 8000)")
    p.add_argument(
        "--max-len", type=_positive_int, help="longest example in tokens (default 256; qa: a window, default 384)"
    )
    p.add_argument("--truncate", action="store_true", help="cut over-long examples instead of dropping them")
    p.add_argument("--batch-size", type=_positive_int, help="sequences per batch (lm, classification)")
    p.add_argument("--max-tokens", type=_positive_int, help="translation: tokens per batch (default 4096)")
    p.add_argument("--block-size", type=_positive_int, help="lm: tokens per sequence (default 128)")
    p.add_argument("--max-steps", type=_positive_int, help="optimizer steps")
    p.add_argument("--max-epochs", type=float, help="passes over the training data (whichever limit comes first)")
    p.add_argument("--max-minutes", type=float, help="wall-clock limit of the training loop")
    p.add_argument("--eval-every", type=_positive_int, help="steps between evaluations and checkpoints")
    p.add_argument("--patience", type=_positive_int, help="early stopping after N evaluations without progress")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument(
        "--warmup", type=int, help="steps of linear warmup (default: 5%% of the run's steps, --set warmup_ratio=R)"
    )
    p.add_argument("--weight-decay", type=float, help="AdamW's decoupled weight decay (matrices only)")
    p.add_argument("--grad-accum", type=_positive_int, help="batches per optimizer step")
    p.add_argument(
        "--report-to",
        metavar="TRACKERS",
        help="also log to these, comma-separated: csv (RUN/metrics.csv), tensorboard (RUN/tensorboard), wandb "
        "(WANDB_MODE=offline needs no account)",
    )
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument(
        "--compile-mode",
        choices=COMPILE_MODES,
        help="torch.compile's mode (implies --compile): reduce-overhead records CUDA graphs, for small models on a GPU",
    )
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--seed", type=int, help="seeds the model's initialization, data order and dropout")
    p.add_argument("--text-column", help="classification: the text column (default text, else sentence)")
    p.add_argument("--label-column", help="classification: the label column (default label)")
    p.add_argument(
        "--skip-nonfinite",
        type=_positive_int,
        metavar="N",
        help="skip at most N batches whose loss is NaN or infinite (default: stop at the first)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _show_training_defaults(p)

    p = sub.add_parser(
        "prepare",
        help="tokenize a language-modeling corpus once into token shards (train lm --data DIR memory-maps them)",
        description="Reads text files, directories (recursively), .gz, JSONL and Parquet (the --text-field); trains "
        "the tokenizer (char and word on the whole corpus, bpe and unigram on its first --tokenizer-sample-mb); "
        "tokenizes in parallel; writes uint16 (or uint32) token shards, documents separated by <eos>, the "
        "tokenizer and manifest.json (written last: an interrupted prepare leaves none).",
    )
    p.add_argument("task", choices=["lm"], help="the task the data is for (language modeling)")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH", help="files or directories")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--valid", nargs="+", default=[], metavar="PATH", help="validation text (default: the corpus's end)")
    p.add_argument("--valid-fraction", type=float, default=0.005, help="held out without --valid (default 0.005)")
    p.add_argument("--tokenizer", default="bpe", choices=["char", "word", "bpe", "unigram"], help="default bpe")
    p.add_argument("--vocab-size", type=_positive_int, default=8000, help="bpe/unigram vocabulary (default 8000)")
    p.add_argument("--tokenizer-file", metavar="tokenizer.json", help="use this tokenizer instead of training one")
    p.add_argument(
        "--tokenizer-sample-mb", type=float, default=16.0, help="MB of text a subword tokenizer trains on (default 16)"
    )
    p.add_argument("--text-field", default="text", help="JSONL field / Parquet column of the text (default text)")
    p.add_argument("--errors", choices=["strict", "replace"], default="strict", help="bytes that are not UTF-8")
    p.add_argument("--overwrite", action="store_true", help="replace DIR (prepared data only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("evaluate", help="print a checkpoint's metrics on its test or validation data, or on files")
    p.add_argument(
        "checkpoint",
        nargs="+",
        help="a checkpoint directory, or a run directory (its best checkpoint); several classification "
        "checkpoints are evaluated as an ensemble (their class probabilities averaged; needs --data)",
    )
    p.add_argument("--data", nargs="+", metavar="PATH", help="files in the task's format, or builtin:NAME")
    p.add_argument("--source-file")
    p.add_argument("--target-file")
    p.add_argument(
        "--split",
        choices=["train", "valid", "test"],
        help="which part of the run's data (default test; test falls back to the validation data when "
        "the run had no test split); with --data builtin:NAME, test or train",
    )
    p.add_argument("--examples", type=int, default=0, metavar="N", help="also print N predictions")
    p.add_argument("--beam", type=_positive_int, default=4, help="translation: beam width for BLEU (default 4)")
    p.add_argument("--length-penalty", type=float, default=0.6, help="translation: GNMT alpha (default 0.6)")
    p.add_argument(
        "--predictions",
        metavar="FILE.json",
        help="qa: also write {question id: answer text}, the official SQuAD evaluation's input",
    )
    p.add_argument(
        "--null-threshold",
        type=float,
        help="qa (SQuAD v2): answer nothing when the no-answer score beats the best span's by more than this",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser(
        "translate",
        help="translate source lines from stdin to stdout, one per line",
        description="Reads source sentences on stdin, writes translations to stdout in the same "
        "order (empty lines stay empty). Beam search with the GNMT length penalty, as the paper.",
    )
    p.add_argument("checkpoint", help="a translation checkpoint, or a run directory (its best checkpoint)")
    p.add_argument("--beam", type=_positive_int, default=4, help="beam width (default 4; 1 = greedy)")
    p.add_argument("--length-penalty", type=float, default=0.6, help="GNMT alpha (default 0.6)")
    p.add_argument(
        "--n-best", type=_positive_int, default=1, help="print the N best per input as LINE<TAB>SCORE<TAB>TEXT"
    )
    p.add_argument("--batch-size", type=_positive_int, default=64, help="sentences decoded together (default 64)")
    p.add_argument("--truncate", action="store_true", help="cut inputs longer than the model's context")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "generate",
        help="continue a prompt with a language model",
        description="Samples a continuation of --prompt (or of stdin) and prints prompt and "
        "continuation. Sampling by default; --greedy for the most likely tokens.",
    )
    p.add_argument("checkpoint", help="a language-model checkpoint, or a run directory")
    p.add_argument("--prompt", help="the text to continue (default: all of stdin)")
    p.add_argument("--max-new-tokens", type=_positive_int, default=200)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=_positive_int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, help="makes sampling reproducible")
    p.add_argument("--greedy", action="store_true", help="take the most likely token at every step")
    p.add_argument(
        "--stop", action="append", default=[], metavar="STR", help="end the output before this string (repeatable)"
    )
    p.add_argument("--truncate", action="store_true", help="keep the end of a prompt longer than the context")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("classify", help="classify text lines from stdin: label<TAB>probability per line")
    p.add_argument("checkpoint", help="a classification checkpoint, or a run directory")
    p.add_argument("--json", action="store_true", help="one JSON object per line with every class's probability")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--truncate", action="store_true", help="cut texts longer than the model's context")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser(
        "answer",
        help="answer questions with a question-answering model: a span of the context",
        description="With --question and --context FILE (- for stdin): print the answer. Without them: JSONL on "
        'stdin, {"question", "context"} per line, one JSON object per line on stdout '
        '({"answer", "start", "end", "score"}: character offsets into the context, end exclusive).',
    )
    p.add_argument("checkpoint", help="a question-answering checkpoint, or a run directory")
    p.add_argument("--question", help="the question")
    p.add_argument("--context", metavar="FILE", help="the passage to find the answer in (- for stdin)")
    p.add_argument("--n-best", type=_positive_int, default=1, help="the N best answers (default 1)")
    p.add_argument(
        "--null-threshold",
        type=float,
        help="SQuAD v2 models: answer nothing when the no-answer score beats the best span's by more than this",
    )
    p.add_argument("--json", action="store_true", help="--question: print the JSON object")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser(
        "chat",
        help="talk with a chat model: replies stream as they are generated",
        description="At a terminal: a conversation; " + CHAT_HELP + ". With stdin not a terminal: one conversation "
        'per line in the training format ({"messages": [...]}, ending with a user message), one '
        '{"role": "assistant", "content": ...} JSON object per line on stdout.',
    )
    p.add_argument("checkpoint", help="a chat checkpoint, or a run directory")
    p.add_argument("--system", help="the system message")
    p.add_argument("--max-new-tokens", type=_positive_int, default=256, help="longest reply (default 256)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--top-k", type=_positive_int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, help="makes sampling reproducible")
    p.add_argument("--greedy", action="store_true", help="take the most likely token at every step")
    p.add_argument(
        "--stop", action="append", default=[], metavar="STR", help="also end a reply before this string (repeatable)"
    )
    p.add_argument("--device", default="auto")

    p = sub.add_parser(
        "serve",
        help="serve checkpoints over HTTP: an OpenAI-compatible API (completions, chat) and our own endpoints",
        description="Serves each checkpoint under a model name (the run directory's name, or NAME=RUN): "
        "/v1/completions and /v1/chat/completions (OpenAI's API, streamed or not, with continuous batching), "
        "/v1/translations, /v1/classifications, /v1/answers, /v1/models, /health and /metrics (Prometheus). "
        "Binds 127.0.0.1 unless --host says otherwise. "
        "Needs the serve extra: pip install 'transformer-networks[serve]'.",
    )
    p.add_argument("models", nargs="+", metavar="RUN|NAME=RUN", help="checkpoints or run directories to serve")
    p.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    p.add_argument(
        "--api-key", help="every endpoint but /health then needs 'Authorization: Bearer KEY' (also: $TN_API_KEY)"
    )
    p.add_argument("--max-batch-size", type=_positive_int, default=16, help="rows decoded together (default 16)")
    p.add_argument(
        "--max-queue",
        type=_positive_int,
        default=64,
        help="requests waiting before the server answers 503 (default 64)",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a request may take (default 300)")
    p.add_argument("--max-body-bytes", type=_positive_int, default=1 << 20, help="largest request body (default 1 MiB)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true", help="no log line per request")

    p = sub.add_parser("attention", help="draw attention heatmaps (layers x heads) for a text to a PNG")
    p.add_argument("checkpoint", help="a checkpoint of any task, or a run directory")
    p.add_argument("--text", required=True, help="the input (a translator's source, a QA model's question)")
    p.add_argument("--context", help="question answering: the passage (text)")
    p.add_argument("--target", help="translation: the target to force (default: the model's greedy translation)")
    p.add_argument(
        "--kind",
        choices=["encoder", "decoder", "cross"],
        help="which attention (default: cross for translation, else the model's self-attention)",
    )
    p.add_argument("--layer", type=int, help="only this layer (from 0)")
    p.add_argument("--head", type=int, help="only this head (from 0)")
    p.add_argument("--truncate", action="store_true")
    p.add_argument("--out", required=True, metavar="FILE.png")

    p = sub.add_parser(
        "explore",
        help="the attention explorer: an interactive page of every layer's and head's attention",
        description="With --out, writes one self-contained HTML file (no network needed) for --text; without it, "
        "serves the page on 127.0.0.1, where text typed into the page is run by the model. Views: head view, "
        "model view (layers x heads), one head's heatmap, a table of per-head statistics; the model's outputs "
        "beside them.",
    )
    p.add_argument("checkpoint", help="a checkpoint of any task, or a run directory")
    p.add_argument("--text", help="the input (a translator's source, a QA model's question); needed with --out")
    p.add_argument("--context", help="question answering: the passage (text)")
    p.add_argument("--target", help="translation: the target to force (default: the model's greedy translation)")
    p.add_argument("--out", metavar="FILE.html", help="write the page to this file (default: serve it live)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE.html if it exists")
    p.add_argument(
        "--continuation",
        type=int,
        default=16,
        metavar="N",
        help="language models: also show the greedy continuation of N tokens, step by step (default 16)",
    )
    p.add_argument("--top-k", type=_positive_int, default=5, help="next tokens shown per position (default 5)")
    p.add_argument(
        "--min-weight",
        type=float,
        help="leave out weights under this (default: the smallest of 0.001, 0.002, 0.005, ... that keeps "
        "--max-weights); 0.001 keeps every weight shown within 1e-3 of the model's",
    )
    p.add_argument(
        "--max-weights",
        type=_positive_int,
        default=2_000_000,
        help="the most weights the page stores, over all layers and heads (default 2000000)",
    )
    p.add_argument("--truncate", action="store_true", help="cut an input longer than the model's context")
    p.add_argument("--host", default="127.0.0.1", help="live mode: the address (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="live mode: the port (default 8765; 0 picks a free one)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("average", help="average the weights of several checkpoints (as the paper reports)")
    p.add_argument(
        "checkpoints", nargs="+", metavar="CKPT", help="checkpoints of one model, or one run directory with --last N"
    )
    p.add_argument("--last", type=_positive_int, metavar="N", help="the run's last N kept checkpoints (step-*)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")

    p = sub.add_parser(
        "convert", help="convert a local Hugging Face model directory (BERT, GPT-2, BART, Marian) to our layout"
    )
    p.add_argument("hf_dir", metavar="HF_DIR")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--overwrite", action="store_true", help="write into OUT_DIR even if it holds files")

    p = sub.add_parser(
        "export", help="export a model to ONNX (classifier, language model) or to the Hugging Face layout (GPT-2, BERT)"
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a run, checkpoint, or model directory")
    p.add_argument(
        "--onnx", metavar="OUT.onnx", help="a language model also writes OUT.decode.onnx (one step with the KV cache)"
    )
    p.add_argument("--hf", metavar="DIR", help="config.json + model.safetensors that transformers loads")
    p.add_argument("--overwrite", action="store_true")

    p = sub.add_parser("plot", help="draw a run's learning curves (loss, metric, learning rate) to a PNG")
    p.add_argument("run_dir")
    p.add_argument("--out", help="the PNG (default RUN_DIR/curves.png)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"transformer-networks: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("transformer-networks: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
