"""`rarl data`: inspect and audit datasets; write synthetic data.

``rarl data inspect configs/x.yaml`` loads the config's train and eval datasets exactly as training and
evaluation will; ``rarl data inspect PATH [--source S] [--split S]`` inspects a dataset folder or file;
``rarl data audit CONFIG|PATH`` reports answer distributions, duplicates, train/test leakage and the token
budget; ``rarl data synthetic OUT_DIR`` writes the synthetic demo set as PNG images + reasoning JSONL.
"""

from __future__ import annotations

import argparse

from rarl.schema.sources import SOURCE_NAMES

HELP = "Inspect and audit datasets (counts, prompts, leakage, token budget); write synthetic data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    inspect = sub.add_parser(
        "inspect",
        help="counts per split and question type, plus a few rendered prompts",
        description="Load a config's datasets (or a dataset path) and show counts and rendered prompts.",
    )
    inspect.add_argument(
        "target", help="a run config (.yaml), a dataset file/folder, an HF dataset name, or 'synthetic'"
    )
    inspect.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (with a .yaml target)"
    )
    inspect.add_argument(
        "--source", choices=SOURCE_NAMES, help="dataset format (default: guessed from file names)"
    )
    inspect.add_argument(
        "--split", action="append", help="split(s) to load (repeatable; default: the usual ones)"
    )
    inspect.add_argument("--limit", type=int, default=None, help="seeded subsample size")
    inspect.add_argument("--seed", type=int, default=0, help="subsample / synthetic seed")
    inspect.add_argument("--num-samples", type=int, default=64, help="synthetic only: samples per split")
    inspect.add_argument("--image-dir", default=None, help="images folder when not the format's default")
    inspect.add_argument(
        "--column-map", action="append", default=[], metavar="SRC=FIELD", help="hf/parquet column"
    )
    inspect.add_argument(
        "--skip-bad", action="store_true", help="skip bad rows (counted in the log) instead of failing"
    )
    inspect.add_argument("--show", type=int, default=2, help="rendered prompts per split (default 2)")
    inspect.add_argument(
        "--prompt", choices=("training", "reasoning", "non_reasoning"), default=None,
        help="how to render prompts (default: training templates for train data, eval.prompt for eval data)",
    )  # fmt: skip
    inspect.add_argument(
        "--processor", default=None, help="render with this model's chat template (path or 'tiny')"
    )

    audit = sub.add_parser(
        "audit",
        help="counts, answer distribution, duplicates, train/test leakage and token budget per split",
        description=(
            "Load a config's datasets (or every split of a dataset path) and report rows, question types, "
            "answer distribution, duplicates, images shared between splits (by content hash), shared "
            "(image, question, answer) triplets, image sizes and token counts against the training limits."
        ),
    )
    audit.add_argument("target", help="a run config (.yaml) or a dataset file/folder/hub id")
    audit.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (with a .yaml)")
    audit.add_argument("--source", choices=SOURCE_NAMES, help="dataset format (default: guessed)")
    audit.add_argument("--split", action="append", help="split(s) to load (default: the usual ones)")
    audit.add_argument("--image-dir", default=None, help="images folder when not the format's default")
    audit.add_argument("--skip-bad", action="store_true", help="skip bad rows (counted) instead of failing")
    audit.add_argument("--json", metavar="PATH", default=None, help="also write the audit as JSON here")

    synthetic = sub.add_parser(
        "synthetic",
        help="write the synthetic demo dataset (PNG + reasoning JSONL)",
        description="Write seeded synthetic medical-style VQA samples as PNG images and <split>.jsonl files.",
    )
    synthetic.add_argument("out_dir", help="output folder (readable with source=reasoning_jsonl)")
    synthetic.add_argument("--num-samples", type=int, default=256, help="samples per split (default 256)")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--split", action="append", help="split(s) to write (default: train and test)")
    synthetic.add_argument(
        "--overwrite", action="store_true", help="replace an existing dataset in OUT_DIR (default: refuse)"
    )


def _column_map(pairs: list[str]) -> dict[str, str]:
    from rarl.errors import UserError

    mapping = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--column-map '{pair}' must look like SOURCE_COLUMN=field")
        source, target = pair.split("=", 1)
        mapping[source.strip()] = target.strip()
    return mapping


def _inspect(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from rarl.config import DataConfig, load_config
    from rarl.data.inspect import Inspected, load_all, print_report, specs_for_path
    from rarl.errors import UserError
    from rarl.tasks.loading import guess_source, load_dataset_spec

    target = str(args.target)
    data = DataConfig()
    eval_prompt = "reasoning"
    processor = None
    if target.endswith((".yaml", ".yml")):
        config = load_config(target, list(args.overrides or []))
        data, eval_prompt = config.data, config.eval.prompt
        items = [Inspected(spec, "train") for spec in config.data.train]
        items += [Inspected(spec, "eval") for spec in config.data.eval]
        if args.split:
            items = [Inspected(replace(i.spec, split=s), i.role) for i in items for s in args.split]
        if args.limit is not None:
            items = [Inspected(replace(i.spec, limit=args.limit), i.role) for i in items]
        if args.skip_bad:
            items = [Inspected(replace(i.spec, skip_bad=True), i.role) for i in items]
        load_all(items, load_dataset_spec, tolerate_missing=False)
    else:
        if args.overrides:
            raise UserError("KEY=VALUE overrides need a config .yaml target")
        source = args.source or ("hf" if _looks_like_hub_name(target) else None)
        _check_target(target)
        specs = specs_for_path(
            target,
            source or guess_source(target),
            args.split,
            limit=args.limit,
            seed=args.seed,
            num_samples=args.num_samples,
            image_dir=args.image_dir,
            column_map=_column_map(args.column_map),
            skip_bad=args.skip_bad,
        )
        role = "train" if args.prompt == "training" else "eval"
        items = [Inspected(spec, role) for spec in specs]
        load_all(items, load_dataset_spec, tolerate_missing=not args.split)
        if all(item.samples is None for item in items):
            raise UserError("; ".join(item.error or "" for item in items))
    if args.prompt == "training":
        items = [Inspected(i.spec, "train", i.samples, i.error) for i in items]
    elif args.prompt is not None:
        eval_prompt = args.prompt
        items = [Inspected(i.spec, "eval", i.samples, i.error) for i in items]
    if args.processor:
        from rarl.config import ModelConfig
        from rarl.models import load_processor

        processor = load_processor(ModelConfig(name_or_path=args.processor))
    print_report(items, data, eval_prompt, args.show, processor)
    return 0


def _check_target(target: str) -> None:
    """A dataset target that is neither a local path nor 'synthetic' must be a hub id: ask once, up front
    (not once per split), and say "not found" in one line when it is not."""
    from pathlib import Path

    from rarl.data.hub import check_hub_id, looks_local
    from rarl.errors import UserError

    if target == "synthetic" or Path(target).expanduser().exists():
        return
    if looks_local(target):
        raise UserError(f"{target}: not found (give a config .yaml, a dataset path, or 'synthetic')")
    check_hub_id(target)


def _looks_like_hub_name(target: str) -> bool:
    """``owner/name`` that is not a local path and does not look like one: an HF hub dataset."""
    from pathlib import Path

    from rarl.data.hub import looks_local

    return not Path(target).exists() and not looks_local(target)


def _synthetic(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rarl.data.synthetic import CHANCE_LEVEL, generate_samples, write_reasoning_jsonl
    from rarl.errors import UserError

    if args.num_samples < 1:
        raise UserError(f"--num-samples must be >= 1 (got {args.num_samples})")
    splits = args.split or ["train", "test"]
    existing = [Path(args.out_dir) / f"{split}.jsonl" for split in splits]
    existing = [path for path in existing if path.exists()]
    if existing and not args.overwrite:
        raise UserError(
            f"{existing[0]} already exists; pass --overwrite to replace the dataset in {args.out_dir}"
        )
    samples = []
    for index, split in enumerate(splits):
        samples += generate_samples(args.num_samples, seed=args.seed + index, split=split)
    written = write_reasoning_jsonl(samples, args.out_dir)
    for split, path in written.items():
        print(f"rarl data: wrote {sum(1 for s in samples if s.split == split)} samples to {path}")
    print(f"rarl data: chance level {CHANCE_LEVEL['overall']:.3f} overall (closed 0.5, open 1/3)")
    return 0


def _audit(args: argparse.Namespace) -> int:
    import json

    from rarl.config import RunConfig, load_config
    from rarl.data.audit import SplitAudit, print_audit, run_audit
    from rarl.data.inspect import Inspected, load_all, specs_for_path
    from rarl.errors import UserError
    from rarl.io import atomic_write_text
    from rarl.tasks.loading import guess_source, load_dataset_spec
    from rarl.tasks.slake import slake_language_overlap

    target = str(args.target)
    if target.endswith((".yaml", ".yml")):
        config = load_config(target, list(args.overrides or []))
        items = [Inspected(spec, "train") for spec in config.data.train]
        items += [Inspected(spec, "eval") for spec in config.data.eval]
    else:
        if args.overrides:
            raise UserError("KEY=VALUE overrides need a config .yaml target")
        config = RunConfig()
        source = args.source or ("hf" if _looks_like_hub_name(target) else None)
        _check_target(target)
        specs = specs_for_path(target, source or guess_source(target), args.split, image_dir=args.image_dir)
        items = [Inspected(spec, "train" if spec.split == "train" else "eval") for spec in specs]
    if args.skip_bad:
        from dataclasses import replace

        items = [Inspected(replace(i.spec, skip_bad=True), i.role) for i in items]
    load_all(items, load_dataset_spec, tolerate_missing=True)
    if all(item.samples is None for item in items):
        raise UserError("; ".join(item.error or "" for item in items))
    audits = [
        SplitAudit(i.role, i.spec.name or i.spec.source, i.spec.split, i.samples or [], i.error)
        for i in items
    ]
    # SLAKE's languages sharing images across splits: seen only in the raw files, which its task reads
    specs_by_name = {i.spec.name or i.spec.source: i.spec for i in items}
    overlaps = {name: slake_language_overlap(spec) for name, spec in specs_by_name.items()}
    languages = {name: found for name, found in overlaps.items() if found}
    report = run_audit(audits, config, languages)
    print_audit(report)
    if args.json:
        path = atomic_write_text(args.json, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"rarl data: audit written to {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.data_command == "inspect":
        return _inspect(args)
    if args.data_command == "audit":
        return _audit(args)
    return _synthetic(args)
