"""COCO scoring: detection and segmentation with pycocotools' COCOeval, captions with the
scorers of pycocoevalcap (the COCO caption evaluation code, packaged).

Detection results are COCOeval's twelve summary numbers under their usual names. For
captions, both sides are tokenized with the Stanford PTB tokenizer when Java is on the
PATH (as the COCO server does); without Java a lower-casing, punctuation-stripping
tokenizer stands in, and METEOR (Java too) is left out.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


class CocoDataError(ValueError):
    """An annotations or predictions file that COCO tools cannot read."""


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CocoDataError(f"{what} is not JSON: {exc}") from None


def detection(annotations: Path, predictions: Path, iou_type: str) -> dict[str, Any]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _load_json(annotations, "the annotations file")
    results = _load_json(predictions, "the predictions file")
    if not isinstance(results, list) or not results:
        raise CocoDataError("predictions must be a non-empty list of COCO results")
    # pycocotools prints its progress; the job's log keeps the summary table only.
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth = COCO(str(annotations))
        try:
            detections = ground_truth.loadRes(str(predictions))
        except (AssertionError, KeyError, IndexError, TypeError) as exc:
            raise CocoDataError(f"predictions do not match the annotations: {exc!r}") from None
        evaluator = COCOeval(ground_truth, detections, iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        evaluator.summarize()
    print(table.getvalue(), end="")
    stats = {name: float(value) for name, value in zip(STAT_NAMES, evaluator.stats, strict=True)}
    return {
        "task": iou_type,
        **stats,
        "images": len(evaluator.params.imgIds),
        "predictions": len(results),
    }


_PUNCTUATION = re.compile(r"[^\w\s]")


def _simple_tokenize(captions: dict[Any, list[str]]) -> dict[Any, list[str]]:
    return {
        key: [" ".join(_PUNCTUATION.sub(" ", c.lower()).split()) for c in values]
        for key, values in captions.items()
    }


def _captions(annotations: Path, predictions: Path) -> tuple[dict[Any, Any], dict[Any, Any]]:
    truth = _load_json(annotations, "the annotations file")
    results = _load_json(predictions, "the predictions file")
    if not isinstance(truth, dict) or not isinstance(truth.get("annotations"), list):
        raise CocoDataError("caption annotations need an 'annotations' list")
    if not isinstance(results, list) or not results:
        raise CocoDataError("predictions must be a non-empty list of {image_id, caption}")
    references: dict[Any, list[dict[str, str]]] = {}
    for item in truth["annotations"]:
        references.setdefault(item["image_id"], []).append({"caption": str(item["caption"])})
    candidates: dict[Any, list[dict[str, str]]] = {}
    for item in results:
        if not isinstance(item, dict) or "image_id" not in item or "caption" not in item:
            raise CocoDataError("each prediction needs image_id and caption")
        if item["image_id"] not in references:
            raise CocoDataError(f"prediction for unknown image_id {item['image_id']!r}")
        # One caption per image is scored, as on the COCO server: the first given.
        candidates.setdefault(item["image_id"], [{"caption": str(item["caption"])}])
    return {k: references[k] for k in candidates}, candidates


def captioning(annotations: Path, predictions: Path, *, meteor: bool) -> dict[str, Any]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    references, candidates = _captions(annotations, predictions)
    java = shutil.which("java") is not None
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tokenizer = PTBTokenizer()
        gts, res = tokenizer.tokenize(references), tokenizer.tokenize(candidates)
    else:
        gts = _simple_tokenize({k: [c["caption"] for c in v] for k, v in references.items()})
        res = _simple_tokenize({k: [c["caption"] for c in v] for k, v in candidates.items()})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    scores: dict[str, Any] = {
        "task": "captions",
        "BLEU-1": float(bleu[0]),
        "BLEU-2": float(bleu[1]),
        "BLEU-3": float(bleu[2]),
        "BLEU-4": float(bleu[3]),
        "ROUGE-L": float(rouge),
        "CIDEr": float(cider),
        "METEOR": None,
        "tokenizer": "ptb" if java else "simple",
        "images": len(candidates),
    }
    if meteor and java:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            scores["METEOR"] = float(scorer.compute_score(gts, res)[0])
        finally:
            with contextlib.suppress(Exception):
                scorer.close()
    return scores
