"""ImageCLEF VQA-Med 2019 loader: pipe-separated files with ``#`` answer alternatives."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rarl.data.loaders.common import _canonical_split, _find_file, _finish, _require_path
from rarl.data.rows import BadRow, RowCollector, image_file, text
from rarl.errors import UserError
from rarl.io import decode_line, text_lines
from rarl.schema.sample import Sample

if TYPE_CHECKING:
    from rarl.config import DatasetSpec

# --------------------------------------------------------------------------------------------------
# VQA-Med 2019: pipe-separated text. train/val: id|question|answer; test: id|category|question|answer

VQA_MED_FILES: dict[str, tuple[str, ...]] = {
    "train": ("All_QA_Pairs_train.txt",),
    "validation": ("All_QA_Pairs_val.txt",),
    "test": ("VQAMed2019_Test_Questions_w_Ref_Answers.txt",),
}
VQA_MED_IMAGE_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("Train_images",),
    "validation": ("Val_images",),
    "test": ("VQAMed2019_Test_Images",),
}
VQA_MED_RULE = "closed when the answer (any '#' alternative) is yes/no, otherwise open"


def load_vqa_med_2019(spec: DatasetSpec) -> list[Sample]:
    """ImageCLEF VQA-Med 2019 QA files (path: a QA ``.txt`` or the unpacked root folder)."""
    path = _require_path(spec)
    split = _canonical_split(spec.split)
    if path.is_dir():
        found = _find_file(path, VQA_MED_FILES.get(split, ()))
        if found is None:
            raise UserError(
                f"{path}: no VQA-Med 2019 QA file for split '{spec.split}' "
                f"(looked for {', '.join(VQA_MED_FILES.get(split, ('?',)))})"
            )
        root, path = path, found
    else:
        root = path.parent
        # a QA file names its own split (the images folder follows it, whatever spec.split says)
        split = next((key for key, names in VQA_MED_FILES.items() if path.name in names), split)
    image_root = Path(spec.image_dir) if spec.image_dir else None
    if image_root is None:
        image_root = _find_file(root, VQA_MED_IMAGE_DIRS.get(split, ()), kind="dir") or _find_file(
            path.parent, VQA_MED_IMAGE_DIRS.get(split, ()), kind="dir"
        )
    image_root = image_root or path.parent
    collector = RowCollector(str(path), spec.skip_bad)
    lines = text_lines(path.read_bytes())  # "\n" only: a U+2028 inside a question is not a line break
    from rarl.answers import infer_question_type

    for number, raw in enumerate(lines, start=1):
        line = decode_line(raw, str(path), number).rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("|")
        try:
            if len(parts) == 3:
                image_id, question, answer = parts
                category = None
            elif len(parts) == 4:
                image_id, category, question, answer = parts
            else:
                raise BadRow(
                    None, f"expected 'id|question|answer' or 'id|category|question|answer', got {line!r:.80}"
                )
            row = {"image_id": image_id, "question": question, "answer": answer}
            image_id, question, answer = (text(row, key) for key in ("image_id", "question", "answer"))
            image = image_file(image_root, f"{image_id}.jpg", "image_id")
        except BadRow as error:
            collector.bad(number, error)
            continue
        closed = any(infer_question_type(alt) == "closed" for alt in answer.split("#"))
        collector.inferred_types += 1
        collector.samples.append(
            Sample(
                id=f"{image_id}-{number}",
                image=image,
                question=question,
                answer=answer,  # '#' alternatives and '(…)' kept: rarl.tasks.vqa_med_2019 reads them
                question_type="closed" if closed else "open",
                split=spec.split,
                extra={"category": category.strip() if category else None},
            )
        )
    return _finish(collector, spec, VQA_MED_RULE)
