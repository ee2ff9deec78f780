"""Top-k logits in the knowledge store: bytes per token at k = 8, 32, 128 against the dense fp32 row, and
what each k costs a distilled student, against dense (live-teacher) forward-KL distillation, in one run.

There is no pre-trained language model on this machine, so the teacher is made here: a 4-layer GPT-2
(hidden 256) with MiniLM's 30,522-token vocabulary, trained by kdforge (a `finetune` stage, task `lm`) on
SST-2 training sentences. Each student (1 layer cut from it) is distilled with `forward_kl` for the same
steps, from the live teacher (dense) or from stores at each k; quality = next-token accuracy and perplexity
on SST-2 dev sentences. Writes the table into BENCHMARKS.md.

    python benchmarks/store_topk.py [--rows 8000] [--out runs/bench-topk]
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from _common import command, machine, shared_data, table, write_section

import kdforge
from kdforge.models.loading import quiet_transformers, resolve
from kdforge.recipe import validate_recipe
from kdforge.store import KnowledgeStore
from kdforge.store.codec import logits_per_token_bytes

TOP_K = (8, 32, 128)
HEADER = [
    "student",
    "logit bytes / token",
    "vs dense fp32",
    "dev next-token accuracy",
    "dev perplexity",
    "accuracy vs dense",
]


def make_teacher_backbone(folder: Path) -> Path:
    """A fresh GPT-2 with MiniLM's WordPiece tokenizer, saved as a plain HF folder."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(resolve("minilm"))
    config = GPT2Config(
        n_layer=4, n_embd=256, n_head=4, n_positions=128, vocab_size=len(tokenizer),
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def recipe(name: str, data: Path, rows: int, teacher: dict | None, student: dict, methods: list, epochs: float) -> dict:
    out = {
        "name": name,
        "seed": 42,
        "student": student,
        "task": {"name": "lm"},
        "data": {"train": [{"path": str(data / "glue_sst2" / "train.tsv"), "limit": rows}],
                 "eval": str(data / "glue_sst2" / "dev.tsv")},
        "methods": methods,
        "training": {"epochs": epochs, "batch_size": 32, "lr": 1e-3, "max_length": 64, "save_every": 100000},
        "output": {"benchmark": False, "export": False},
    }  # fmt: skip
    if teacher is None:
        out["kind"] = "finetune"
    else:
        out["teacher"] = teacher
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8000, help="SST-2 training sentences")
    parser.add_argument("--teacher-epochs", type=float, default=4)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-topk"))
    args = parser.parse_args()
    quiet_transformers()
    data, out = shared_data(), args.out.resolve()
    backbone = out / "backbone"
    if not (backbone / "config.json").is_file():
        make_teacher_backbone(backbone)
    teacher_run = out / "teacher"
    kdforge.run(
        validate_recipe(
            recipe("topk-teacher", data, args.rows, None, {"model": str(backbone)}, [], args.teacher_epochs)
        ),
        teacher_run,
        show=False,
    )
    teacher = str(teacher_run / "stages" / "distill" / "model")
    student = {"num_layers": 1}
    methods = [{"name": "forward_kl"}]
    results, sizes = {}, {}
    results["dense"] = kdforge.run(
        validate_recipe(recipe("topk-dense", data, args.rows, {"model": teacher}, student, methods, 1)),
        out / "dense",
        show=False,
    )
    for k in TOP_K:
        store = out / f"store-k{k}"
        shutil.rmtree(store, ignore_errors=True)
        spec = {"model": teacher, "mode": "cached", "store": {"path": str(store), "top_k": k}}
        results[f"k={k}"] = kdforge.run(
            validate_recipe(recipe(f"topk-{k}", data, args.rows, spec, student, methods, 1)), out / f"k{k}", show=False
        )
        opened = KnowledgeStore(store)
        tokens = int(sum(s.lengths.sum() for s in opened.rows))
        logit_bytes = sum(a.nbytes for s in opened.rows for n, a in s.arrays.items() if n.startswith("token_logits"))
        sizes[f"k={k}"] = (logit_bytes / tokens, opened.manifest.build_seconds, opened.manifest.bytes)
    classes = 30522
    dense_bytes = logits_per_token_bytes(classes, 0)[1]
    teacher_eval = results["dense"]["metrics"]["teacher"]["eval"]
    dense_eval = results["dense"]["metrics"]["student"]["eval"]
    rows = [["teacher (4 layers)", "–", "–", teacher_eval["accuracy"], teacher_eval["perplexity"], "–"]]
    rows.append(["student, dense logits (live teacher)", f"{dense_bytes:,}", "1x", dense_eval["accuracy"],
                 dense_eval["perplexity"], "–"])  # fmt: skip
    for k in TOP_K:
        name = f"k={k}"
        ev = results[name]["metrics"]["student"]["eval"]
        per_token, build, _ = sizes[name]
        rows.append([f"student, store top-{k}", f"{per_token:,.0f}", f"{dense_bytes / per_token:,.0f}x smaller",
                     ev["accuracy"], ev["perplexity"], f"{ev['accuracy'] - dense_eval['accuracy']:+.2f}"])  # fmt: skip
    (out / "summary.json").write_text(json.dumps({"results": {k: v["metrics"] for k, v in results.items()},
                                                  "sizes": sizes}, indent=1, default=str))  # fmt: skip
    body = f"""## Knowledge store: top-k logits, size per token and quality cost (issue 4)

Command: `{command()}`, on {machine()}.
Teacher: a 4-layer GPT-2 (hidden 256, MiniLM's 30,522-token vocabulary) trained here by kdforge on {args.rows:,}
SST-2 training sentences ({args.teacher_epochs:g} epochs); no pre-trained language model is available offline.
Students: its first block, distilled with `forward_kl` for one epoch on the same sentences, from the live
teacher (dense logits) or from a store at each k. Quality: next-token accuracy (x100) and perplexity on SST-2
dev sentences. Bytes per token are the stored logits alone (top-k log-probs fp16 + ids int32 + tail mass fp32).

{table(HEADER, rows)}
"""
    write_section("store-topk", body)
    print(body)


if __name__ == "__main__":
    main()
