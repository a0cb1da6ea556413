"""COCO scores are exactly what pycocotools (and the COCO caption code) give directly on
the same files."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from spark_trainer.context import AppContext
from spark_trainer.evaluations.collector import record_outcome
from spark_trainer.evaluations.scorers import coco
from tests.conftest import Account
from tests.evaluations.helpers import create, register_model, upload, wait_finished


def _box_polygon(x: float, y: float, w: float, h: float) -> list[list[float]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def annotations() -> dict[str, Any]:
    boxes = [
        (1, 1, [10, 10, 20, 20]),  # small
        (1, 2, [50, 40, 60, 50]),  # medium
        (2, 1, [0, 0, 120, 110]),  # large
        (2, 2, [130, 20, 25, 30]),
        (3, 1, [5, 5, 40, 40]),
    ]
    return {
        "images": [
            {"id": i, "width": 200, "height": 200, "file_name": f"{i}.jpg"} for i in (1, 2, 3)
        ],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {
                "id": n,
                "image_id": image,
                "category_id": category,
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": 0,
                "segmentation": _box_polygon(*box),
            }
            for n, (image, category, box) in enumerate(boxes, start=1)
        ],
    }


def predictions() -> list[dict[str, Any]]:
    found = [
        (1, 1, [11, 10, 20, 19], 0.9),
        (1, 2, [48, 42, 60, 50], 0.8),
        (2, 1, [5, 0, 110, 110], 0.7),
        (2, 2, [100, 100, 30, 30], 0.6),  # a false positive
        (3, 2, [5, 5, 40, 40], 0.5),  # the wrong class
        (3, 1, [6, 4, 38, 42], 0.4),
    ]
    return [
        {
            "image_id": image,
            "category_id": category,
            "bbox": box,
            "score": score,
            "segmentation": _box_polygon(*box),
        }
        for image, category, box, score in found
    ]


def _write(tmp_path: Path) -> tuple[Path, Path]:
    gt, dt = tmp_path / "instances.json", tmp_path / "results.json"
    gt.write_text(json.dumps(annotations()))
    dt.write_text(json.dumps(predictions()))
    return gt, dt


def pycocotools_stats(gt: Path, dt: Path, iou_type: str) -> list[float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(gt))
        evaluator = COCOeval(truth, truth.loadRes(str(dt)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_detection_equals_pycocotools(tmp_path: Path, iou_type: str) -> None:
    gt, dt = _write(tmp_path)
    results = coco.detection(gt, dt, iou_type)
    expected = pycocotools_stats(gt, dt, iou_type)
    assert [results[name] for name in coco.STAT_NAMES] == expected
    assert 0 < results["AP"] < 1  # neither perfect nor empty: the comparison means something


def _write_captions(tmp_path: Path) -> tuple[Path, Path]:
    gt, dt = tmp_path / "captions.json", tmp_path / "captions_results.json"
    gt.write_text(
        json.dumps(
            {
                "images": [{"id": i} for i in REFERENCES],
                "annotations": [
                    {"id": 10 * i + k, "image_id": i, "caption": c}
                    for i, caps in REFERENCES.items()
                    for k, c in enumerate(caps)
                ],
            }
        )
    )
    dt.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in CANDIDATES.items()]))
    return gt, dt


REFERENCES = {
    1: ["A cat sits on a red mat.", "A small cat on the mat."],
    2: ["Two dogs run in the park.", "Dogs running across green grass."],
    3: ["A man rides a bicycle down the street.", "Someone cycling on a road."],
}
CANDIDATES = {1: "A cat is sitting on a mat.", 2: "A dog runs in a park.", 3: "A bike."}


@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR runs on Java; none on PATH")
def test_meteor_equals_the_coco_caption_scorer(tmp_path: Path) -> None:
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    results = coco.captioning(*_write_captions(tmp_path), meteor=True)
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in caps] for i, caps in REFERENCES.items()})
    res = tokenizer.tokenize({i: [{"caption": c}] for i, c in CANDIDATES.items()})
    expected = Meteor().compute_score(gts, res)[0]
    assert results["METEOR"] == pytest.approx(expected, abs=1e-9)
    assert 0 < results["METEOR"] < 1


def test_captions_equal_the_coco_caption_scorers(tmp_path: Path) -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    references, candidates = REFERENCES, CANDIDATES
    gt, dt = _write_captions(tmp_path)
    results = coco.captioning(gt, dt, meteor=False)

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in caps] for i, caps in references.items()})
    res = tokenizer.tokenize({i: [{"caption": c}] for i, c in candidates.items()})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    assert results["BLEU-4"] == bleu[3]
    assert results["ROUGE-L"] == Rouge().compute_score(gts, res)[0]
    assert results["CIDEr"] == Cider().compute_score(gts, res)[0]
    assert results["tokenizer"] == "ptb"
    assert results["CIDEr"] > 0


def test_coco_evaluation_as_a_job(
    client: TestClient, ctx: AppContext, alice: Account, tmp_path: Path
) -> None:
    gt, dt = _write(tmp_path)
    detector = tmp_path / "detector"
    detector.mkdir()
    (detector / "weights.bin").write_bytes(b"\x00" * 64)
    model = register_model(client, alice, detector, name="detector")
    ann = upload(client, alice, "coco-gt", "instances.json", gt.read_bytes())
    pred = upload(client, alice, "coco-dt", "results.json", dt.read_bytes())
    created = create(
        client,
        alice,
        model_id=model["id"],
        benchmark="coco",
        config={"annotations_dataset_id": ann["id"], "predictions_dataset_id": pred["id"]},
    )
    done = wait_finished(client, alice, created["id"])
    assert done["status"] == "completed", done
    expected = pycocotools_stats(gt, dt, "bbox")
    assert [done["results"][name] for name in coco.STAT_NAMES] == expected
    assert (done["score_name"], done["score"]) == ("AP", expected[0])

    # Recording is idempotent: once done, another call changes nothing.
    with ctx.session_factory.begin() as session:
        assert record_outcome(session, done["job_id"]) is False
    again = client.get(f"/api/evaluations/{created['id']}", headers=alice.headers).json()
    assert again == done

    # Predictions that do not fit the annotations fail the evaluation, with the reason.
    bad = upload(
        client,
        alice,
        "coco-bad",
        "bad.json",
        json.dumps([{"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]).encode(),
    )
    failed = create(
        client,
        alice,
        model_id=model["id"],
        benchmark="coco",
        config={"annotations_dataset_id": ann["id"], "predictions_dataset_id": bad["id"]},
    )
    ended = wait_finished(client, alice, failed["id"])
    assert ended["status"] == "failed"
    assert "predictions do not match the annotations" in ended["status_reason"]
    assert ended["results"] is None
