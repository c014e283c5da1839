"""Subnormal floats in the seed study's ``torch-adam-wd`` scenario, with and without flush-to-zero.

    python benchmarks/denormals.py --data-dir D [--steps 3000] [--threads 1]

torch Adam with weight_decay = 0.1 on every tensor shrinks LeNet-5's weights towards zero until
most parameters and Adam moments are subnormal (|x| < 1.2e-38 in float32). On some CPUs (Intel
AVX-512 machines here) arithmetic on subnormals is many times slower. optreg's remedy: every run
executes with flush-to-zero on, on every thread of torch's pool
(:func:`optreg.runtime.set_flush_denormal_everywhere`): ``torch.set_flush_denormal(True)`` alone
sets the FTZ/DAZ bits of the calling thread only, and a pool that already exists keeps computing
subnormals on its other threads.

This script trains that scenario for ``--steps`` steps three times — flush-to-zero off, on the
calling thread only (``torch.set_flush_denormal``), on every thread (optreg) — after a first
parallel operation has created the thread pool, and prints, every ``--every`` steps, the number
of subnormal parameters and moments and the time per step of the last interval. Numerically,
flushing replaces values below 1.2e-38 by 0: a relative change of the affected values of 100 %,
but of absolute size < 1.2e-38, far below anything the loss can see (the histories differ only
once subnormals appear).
"""

from __future__ import annotations

import argparse
import time

import torch

from optreg.atomic import write_json
from optreg.data import iterate_batches, load_cifar10, normalize
from optreg.runtime import execution, machine_info
from optreg.studies.seed import SCENARIOS
from optreg.training.builders import build_loss, build_model, build_optimizer

TINY = torch.finfo(torch.float32).tiny


def count_subnormal(tensors: list[torch.Tensor]) -> int:
    return sum(int(((t != 0) & (t.abs() < TINY)).sum()) for t in tensors)


MODES = ("off", "calling thread", "every thread")


def train(config, data, steps: int, every: int, flush: str, threads: int) -> list[dict]:
    rows = []
    with execution(threads, flush == "every thread"):
        if flush == "calling thread":
            torch.set_flush_denormal(True)  # what torch offers: this thread's FTZ/DAZ bits
        model = build_model(config, torch.device("cpu"))
        criterion = build_loss(config, model)
        optimizer = build_optimizer(config, model)
        step, start = 0, time.perf_counter()
        while step < steps:
            for x, y in iterate_batches(data.images, data.labels, config.batch_size):
                loss = criterion(model(normalize(x)), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                if step % every == 0:
                    params = list(model.parameters())
                    moments = [
                        s[k] for s in optimizer.state.values() for k in ("exp_avg", "exp_avg_sq")
                    ]
                    now = time.perf_counter()
                    rows.append(
                        {
                            "step": step,
                            "ms_per_step": (now - start) / every * 1e3,
                            "subnormal_params": count_subnormal(params),
                            "subnormal_moments": count_subnormal(moments),
                            "loss": loss.item(),
                        }
                    )
                    print(
                        f"  flush {flush:<14} step {step:5d}: {rows[-1]['ms_per_step']:6.2f} "
                        f"ms/step, subnormal params {rows[-1]['subnormal_params']:6d}, "
                        f"moments {rows[-1]['subnormal_moments']:6d}, loss {loss.item():.4f}",
                        flush=True,
                    )
                    start = time.perf_counter()
                if step >= steps:
                    break
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/denormals.json")
    args = parser.parse_args()
    config = next(s for s in SCENARIOS if s.name == "torch-adam-wd").build(
        seed=0, batch_size=32, epochs=1
    )
    data = load_cifar10(args.data_dir).train
    torch.set_num_threads(args.threads)
    torch.ones(1 << 22).mul_(2)  # a parallel op: the pool's threads exist before FTZ is set
    results = {flush: train(config, data, args.steps, args.every, flush, args.threads)
               for flush in MODES}
    last = {flush: rows[-1] for flush, rows in results.items()}
    for flush, row in last.items():
        print(f"last {args.every} steps, flush-to-zero {flush}: {row['ms_per_step']:.2f} ms/step, "
              f"{row['subnormal_params']} subnormal parameters, {row['subnormal_moments']} "
              "subnormal moments")
    out = write_json(args.out, {"machine": machine_info(), "threads": args.threads,
                                "results": results})
    print(f"saved {out}")


if __name__ == "__main__":
    main()
