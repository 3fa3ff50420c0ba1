"""`streamhar train`: quantization-aware training of a variable-width network into a bundle."""
from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from streamhar.cli.main import add_data_dir_option
from streamhar.datasets.paths import resolve_data_dir
from streamhar.errors import UsageError
from streamhar.models.config import FUSIONS


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def register(sub) -> None:
    p = sub.add_parser("train", help="train a variable-width ternary network on a data set's train split")
    p.add_argument("--dataset", required=True, choices=("dsads", "usc-had", "opportunity"))
    p.add_argument("--task", help="label track (OPPORTUNITY: locomotion or gestures)")
    p.add_argument("--fusion", default="early", choices=FUSIONS)
    p.add_argument("--widths", type=_floats, default=(0.25, 0.5, 1.0), help="e.g. 0.25,0.5,1.0")
    p.add_argument("--weight-quant", default="ternary-eq",
                   help="conv weights: ternary-eq[:xi=..], ternary-twn, binary, int8, int4, int2, fp32")
    p.add_argument("--fc-quant", default="int8", help="classifier weights (same choices)")
    p.add_argument("--act-quant", default="pact-u8", help="activations: pact-u8, pact-s8, pact-u4, ternary-act, fp32")
    p.add_argument("--channels", type=_ints, help="full-width channels per block, e.g. 48,64,96,128 (depth = count)")
    p.add_argument("--kernels", type=_ints, help="kernel size per block, e.g. 5,5,3,3")
    p.add_argument("--pools", type=_ints, help="max-pool factor per block (1 = none), e.g. 2,2,2,2")
    p.add_argument("--window", type=int, help="window length in samples (default per data set)")
    p.add_argument("--layer-weight-quant", nargs="+", default=(), metavar="SPEC",
                   help="mixed precision: one weight quantizer spec per block, e.g. int8 ternary-eq ternary-eq ternary-eq")
    p.add_argument("--train-stride", type=int, help="samples between training windows (default per data set)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=8, help="early stopping patience in epochs")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (smoke tests)")
    p.add_argument("--distill", type=float, default=0.0, metavar="ALPHA",
                   help="in-place distillation: narrow widths learn the full width's soft outputs with "
                        "weight ALPHA in [0, 1] (0 = labels only)")
    p.add_argument("--temperature", type=float, default=2.0, help="softmax temperature of --distill")
    p.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                   help="learning rate: halve on a validation plateau, or a cosine decay to 0 over --epochs")
    p.add_argument("--no-augment", action="store_true", help="no random amplitude scaling")
    p.add_argument("--out", required=True, type=Path, help="bundle file to write (.safetensors)")
    add_data_dir_option(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from streamhar.models.fit import fit
    if args.dataset == "opportunity" and args.task not in (None, "locomotion", "gestures"):
        raise UsageError(f"--task must be locomotion or gestures for opportunity, got {args.task!r}")
    from streamhar.models.train import TrainSettings   # torch: only when training

    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             patience=args.patience, max_steps=args.max_steps, augment=not args.no_augment,
                             distill=args.distill, temperature=args.temperature, schedule=args.schedule)
    if not 0.0 <= args.distill <= 1.0 or args.temperature <= 0:
        raise UsageError(f"--distill must lie in [0, 1] and --temperature be > 0, "
                         f"got {args.distill} and {args.temperature}")
    bar = tqdm(desc="epoch 1", unit="batch", file=sys.stderr, disable=None, leave=False)

    def on_step(loss: float) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def on_epoch(rec: dict) -> None:
        f1 = "  ".join(f"w{w}: {v:.3f}" for w, v in rec["val_macro_f1"].items())
        bar.write(f"epoch {rec['epoch']:>3}  loss {rec['loss']:.4f}  val macro-F1 {f1}  lr {rec['lr']:.1e}",
                  file=sys.stderr)
        bar.reset()
        bar.set_description(f"epoch {rec['epoch'] + 1}")

    path, history = fit(args.dataset, resolve_data_dir(args.data_dir), args.out, task=args.task,
                        fusion=args.fusion, widths=args.widths, weight_quant=args.weight_quant,
                        act_quant=args.act_quant, fc_weight_quant=args.fc_quant, channels=args.channels,
                        kernels=args.kernels, pools=args.pools, layer_weight_quant=tuple(args.layer_weight_quant),
                        window=args.window, stride=args.train_stride, settings=settings, on_epoch=on_epoch, on_step=on_step,
                        log=lambda m: bar.write(m, file=sys.stderr))
    bar.close()
    print(f"wrote {path}: best epoch {history.best_epoch} of {len(history.epochs)}, "
          f"mean validation macro-F1 over widths {history.best_score:.4f}")
    return 0
