"""Time one optimizer step: optreg's Adam / Adam+L2 / AdamW against torch.optim's.

Run (from the repository root, with the project's virtual environment)::

    python benchmarks/optimizer_step.py [--quick] [--threads N] [--out FILE.json] [--compiled]

What it measures. Two parameter sets, each with a fixed random gradient per tensor:

* ``lenet5``: LeNet-5's 10 tensors, 62,006 parameters (conv 3→6 5×5, conv 6→16 5×5,
  conv 16→120 5×5, linear 120→84, linear 84→10; each a weight and a bias);
* ``mixed25m``: ~25M parameters in ~150 tensors of mixed shapes (an embedding, transformer
  blocks, a conv stack, a head; matrices, 4-D kernels and vectors).

For each row, two optimizers A and B live at once, on two identical copies of the parameters, and
single steps alternate A B, B A, A B, ... (so drift in the machine hits both alike). Each pair gives
a ratio time(A) / time(B); the row reports the median ratio with its interquartile range
(A = optreg, B = torch: < 1 means optreg is faster). The ``control`` row times torch against
itself and shows the noise floor. Both sides decay the same tensors (only ``ndim > 1``; the torch
side through param groups). The ``foreach/single`` rows compare optreg's two kernels and, over a
sweep of sizes, locate the crossover that ``optreg.optim._common.default_foreach`` encodes.

The C allocator's state changes the cost of the large temporaries (page faults on freshly mapped
memory moved torch's own 25M step by 3x), so the script pins it: unless ``MALLOC_MMAP_THRESHOLD_``
is already set, it re-executes itself with ``MALLOC_MMAP_THRESHOLD_`` (32 MiB, glibc's maximum)
and ``MALLOC_TRIM_THRESHOLD_`` (64 GiB) in the environment, so that freed temporaries stay in the
heap and are reused. Torch runs with ``--threads`` intra-op threads (default 1). ``--compiled``
adds a stretch row at 25M: a ``torch.compile``'d Adam step against torch's ``fused=True``.
Results and a machine description go to ``--out``
(default ``benchmarks/results/optimizer_step.json``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(64 * 1024**3),
}


def pin_allocator() -> None:
    """Re-execute this script with the allocator thresholds set, unless they already are."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return
    settings = " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())
    print(f"re-executing with {settings} (pins glibc malloc for the large temporaries)", flush=True)
    env = {**os.environ, **MALLOC_ENV}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


if __name__ == "__main__":
    pin_allocator()

import torch  # noqa: E402  (imported after the re-exec so the allocator settings apply)

from optreg.optim import Adam, AdamW  # noqa: E402
from optreg.regularization import param_groups  # noqa: E402

# ----------------------------------------------------------------------------- parameter sets


def lenet5_shapes(scale: float = 1.0) -> list[tuple[int, ...]]:
    """LeNet-5's 10 tensors (62,006 parameters at ``scale=1``; widths scale by √scale)."""

    def w(n: int) -> int:
        return max(1, round(n * scale**0.5))

    c1, c2, c3, f1 = w(6), w(16), w(120), w(84)
    return [
        (c1, 3, 5, 5), (c1,),
        (c2, c1, 5, 5), (c2,),
        (c3, c2, 5, 5), (c3,),
        (f1, c3), (f1,),
        (10, f1), (10,),
    ]  # fmt: skip


def mixed_shapes(scale: float = 1.0) -> list[tuple[int, ...]]:
    """~25M parameters in 150 tensors at ``scale=1``; widths scale by √scale (numel by ~scale)."""

    def w(n: int) -> int:
        return max(1, round(n * scale**0.5))

    d, ff, c = w(512), w(2048), w(160)
    shapes: list[tuple[int, ...]] = [(w(3584), d), (w(512), d)]  # token and position embeddings
    for _ in range(6):  # transformer blocks: 12 tensors each
        shapes += [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,)]  # norm, attention
        shapes += [(d,), (d,), (ff, d), (ff,), (d, ff), (d,)]  # norm, MLP
    for _ in range(18):  # conv stack: kernel, bias, norm weight, norm bias
        shapes += [(c, c, 3, 3), (c,), (c,), (c,)]
    shapes += [(d,), (d,), (w(1000), d), (w(1000),)]  # final norm, head
    return shapes


def make_params(shapes: list[tuple[int, ...]], seed: int = 0) -> list[torch.Tensor]:
    """Leaf float32 tensors with a fixed random gradient each (the same for every copy)."""
    g = torch.Generator().manual_seed(seed)
    params = []
    for shape in shapes:
        p = (torch.randn(shape, generator=g) * 0.05).requires_grad_()
        p.grad = torch.randn(shape, generator=g) * 1e-2
        params.append(p)
    return params


def numel(shapes: list[tuple[int, ...]]) -> int:
    return sum(torch.Size(s).numel() for s in shapes)


# ----------------------------------------------------------------------------- optimizers

LR, L2_WD, ADAMW_WD = 1e-3, 5e-4, 1e-2

# variant -> (optreg constructor, torch constructor); both decay only tensors with ndim > 1.
Factory = Callable[[list[torch.Tensor], dict], torch.optim.Optimizer]
VARIANTS: dict[str, tuple[Factory, Factory]] = {
    "Adam": (
        lambda ps, kw: Adam(ps, lr=LR, **kw),
        lambda ps, kw: torch.optim.Adam(ps, lr=LR, **kw),
    ),
    "Adam+L2": (
        lambda ps, kw: Adam(ps, lr=LR, weight_decay=L2_WD, **kw),
        lambda ps, kw: torch.optim.Adam(param_groups(ps, L2_WD), lr=LR, **kw),
    ),
    "AdamW": (
        lambda ps, kw: AdamW(ps, lr=LR, weight_decay=ADAMW_WD, **kw),
        lambda ps, kw: torch.optim.AdamW(param_groups(ps, ADAMW_WD), lr=LR, **kw),
    ),
}

# torch path name -> constructor kwargs
TORCH_PATHS = {"default": {}, "single": {"foreach": False}, "foreach": {"foreach": True}}
OPTREG_PATHS = {"default": {}, "single": {"foreach": False}, "foreach": {"foreach": True}}


def fused_runs_on_cpu() -> bool:
    """Whether torch's fused Adam runs here (it does on CPU since torch 2.4)."""
    try:
        p = torch.zeros(2, requires_grad=True)
        p.grad = torch.ones(2)
        torch.optim.Adam([p], fused=True).step()
        return True
    except (RuntimeError, ValueError):
        return False


# ----------------------------------------------------------------------------- timing


def time_pairs(
    make_a: Callable[[], torch.optim.Optimizer],
    make_b: Callable[[], torch.optim.Optimizer],
    pairs: int,
    warmup: int,
) -> dict:
    """Alternate single steps of A and B; return the median (and quartiles) of time(A)/time(B)."""
    opt_a, opt_b = make_a(), make_b()
    for _ in range(warmup):
        opt_a.step()
        opt_b.step()
    clock = time.perf_counter_ns
    ratios, times_a, times_b = [], [], []
    gc.collect()
    gc.disable()
    try:
        for i in range(pairs):
            if i % 2 == 0:
                t0 = clock()
                opt_a.step()
                t1 = clock()
                opt_b.step()
                t2 = clock()
                ta, tb = t1 - t0, t2 - t1
            else:
                t0 = clock()
                opt_b.step()
                t1 = clock()
                opt_a.step()
                t2 = clock()
                tb, ta = t1 - t0, t2 - t1
            ratios.append(ta / tb)
            times_a.append(ta)
            times_b.append(tb)
    finally:
        gc.enable()
    del opt_a, opt_b
    gc.collect()
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return {
        "ratio_median": statistics.median(ratios),
        "ratio_q1": q1,
        "ratio_q3": q3,
        "a_median_us": statistics.median(times_a) / 1e3,
        "b_median_us": statistics.median(times_b) / 1e3,
        "pairs": pairs,
    }


# ----------------------------------------------------------------------------- compiled (stretch)

_compiled_update = None


def compiled_update() -> Callable:
    """Adam's update for one flat tensor, compiled by inductor into one fused loop (lazily)."""
    global _compiled_update
    if _compiled_update is None:

        def update(p, g, m, v, one_minus_beta1, beta2, one_minus_beta2, step_size, bc2_sqrt, eps):
            m.lerp_(g, one_minus_beta1)  # m_t = β₁m + (1 − β₁)g
            v.mul_(beta2).add_(g * g * one_minus_beta2)  # v_t = β₂v + (1 − β₂)g²
            p.sub_(step_size * m / (v.sqrt() / bc2_sqrt + eps))  # θ_t = θ − γ m̂/(√v̂ + ε)

        # dynamic=True: one kernel for every tensor length; scalars are passed as 0-D tensors,
        # since Python floats would be specialised and recompiled at every step.
        _compiled_update = torch.compile(update, dynamic=True, fullgraph=True)
    return _compiled_update


class CompiledAdam(Adam):
    """optreg.Adam (no weight decay) whose per-tensor update is one torch.compile'd kernel.

    A benchmark-only sketch of "compile the update": same equations, fused by inductor into one
    pass over memory per tensor (not bit-identical to the eager kernels).
    """

    @torch.no_grad()
    def step(self, closure=None):
        update = compiled_update()
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, [], steps, [])
            beta1, beta2 = group["betas"]
            for p, g, m, v, step_t in zip(params, grads, exp_avgs, exp_avg_sqs, steps, strict=True):
                step_t += 1
                t = step_t.item()
                scalars = torch.tensor(
                    [1 - beta1, beta2, 1 - beta2, group["lr"] / (1 - beta1**t),
                     (1 - beta2**t) ** 0.5, group["eps"]],
                    dtype=torch.float64,
                )  # fmt: skip
                update(p.view(-1), g.view(-1), m.view(-1), v.view(-1), *scalars.unbind())


def compiled_rows(shapes: list[tuple[int, ...]], fused: bool) -> list[tuple]:
    """Compiled Adam against torch's fused and default Adam (after checking it is correct)."""
    ours, ref = make_params(shapes), make_params(shapes)
    opt_ours, opt_ref = CompiledAdam(ours, lr=LR), Adam(ref, lr=LR, foreach=False)
    start = time.perf_counter()
    for _ in range(3):
        opt_ours.step()
        opt_ref.step()
    print(f"  compiled Adam: compile + 3 steps {time.perf_counter() - start:.1f} s", flush=True)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    del ours, ref, opt_ours, opt_ref
    compiled = lambda: CompiledAdam(make_params(shapes), lr=LR)  # noqa: E731
    rows = [("Adam: compiled / torch default", compiled, lambda: torch.optim.Adam(
        make_params(shapes), lr=LR))]  # fmt: skip
    if fused:
        rows.append(
            (
                "Adam: compiled / torch fused",
                compiled,
                lambda: torch.optim.Adam(make_params(shapes), lr=LR, fused=True),
            )
        )
    return rows


def rows_for(shapes: list[tuple[int, ...]], fused: bool, full: bool) -> list[tuple]:
    """(row name, make A, make B) for one parameter set."""

    def opt(factory: Factory, kw: dict) -> Callable[[], torch.optim.Optimizer]:
        return lambda: factory(make_params(shapes), kw)

    rows = []
    adam_optreg, adam_torch = VARIANTS["Adam"]
    rows.append(("control torch/torch (Adam default)", opt(adam_torch, {}), opt(adam_torch, {})))
    for name, (mk_optreg, mk_torch) in VARIANTS.items():
        rows.append((f"{name}: default / torch default", opt(mk_optreg, {}), opt(mk_torch, {})))
        if full or name == "Adam":
            rows.append(
                (
                    f"{name}: single / torch single",
                    opt(mk_optreg, OPTREG_PATHS["single"]),
                    opt(mk_torch, TORCH_PATHS["single"]),
                )
            )
        rows.append(
            (
                f"{name}: foreach / torch foreach",
                opt(mk_optreg, OPTREG_PATHS["foreach"]),
                opt(mk_torch, TORCH_PATHS["foreach"]),
            )
        )
        if fused and (full or name == "Adam"):
            rows.append(
                (
                    f"{name}: default / torch fused",
                    opt(mk_optreg, {}),
                    opt(mk_torch, {"fused": True}),
                )
            )
    rows.append(
        (
            "Adam: optreg foreach / optreg single",
            opt(adam_optreg, OPTREG_PATHS["foreach"]),
            opt(adam_optreg, OPTREG_PATHS["single"]),
        )
    )
    return rows


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer pairs and rows (smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1)")
    parser.add_argument("--out", default="benchmarks/results/optimizer_step.json",
                        help="JSON results")
    parser.add_argument("--no-sweep", action="store_true", help="skip the foreach crossover sweep")
    parser.add_argument(
        "--compiled", action="store_true", help="also time a torch.compile'd Adam step at 25M"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine()
    print(
        f"torch {info['torch']}, {info['cpu']} ({info['cpu_capability']}), "
        f"torch threads = {torch.get_num_threads()} (set by --threads), "
        f"malloc: {info['malloc_env']}"
    )
    fused = fused_runs_on_cpu()
    print(f"torch fused=True on CPU: {'runs' if fused else 'not available, skipped'}")

    # pairs, warmup per parameter set: many cheap steps at LeNet, fewer expensive ones at 25M.
    plan = {
        "lenet5": (lenet5_shapes(), (300, 20) if args.quick else (3000, 100)),
        "mixed25m": (mixed_shapes(), (6, 2) if args.quick else (30, 3)),
    }
    results = []
    for set_name, (shapes, (pairs, warmup)) in plan.items():
        print(f"\n{set_name}: {len(shapes)} tensors, {numel(shapes):,} parameters")
        print(f"  {'A / B':<42} {'median':>7} {'[q1, q3]':>15} {'A us':>10} {'B us':>10}")
        rows = rows_for(shapes, fused, full=not args.quick)
        if args.compiled and set_name == "mixed25m":
            rows += compiled_rows(shapes, fused)
        for row, make_a, make_b in rows:
            r = time_pairs(make_a, make_b, pairs, warmup)
            results.append({"set": set_name, "row": row, "numel": numel(shapes), **r})
            print(
                f"  {row:<42} {r['ratio_median']:7.3f} "
                f"[{r['ratio_q1']:.3f}, {r['ratio_q3']:.3f}] "
                f"{r['a_median_us']:10.1f} {r['b_median_us']:10.1f}",
                flush=True,
            )

    sweep = []
    if not args.no_sweep and not args.quick:
        print("\nforeach crossover: optreg Adam foreach / optreg Adam single")
        adam_optreg = VARIANTS["Adam"][0]
        families = {
            "mixed": (mixed_shapes, (0.01, 0.02, 0.04, 0.08, 0.16, 0.32)),
            "lenet5": (lenet5_shapes, (4.0, 16.0, 64.0)),
        }
        for family, (shapes_at, scales) in families.items():
            for scale in scales:
                shapes = shapes_at(scale)
                n = numel(shapes)
                pairs = max(20, min(1000, int(4e8 / n)))

                def make(kw: dict, shapes: list = shapes) -> Callable[[], torch.optim.Optimizer]:
                    return lambda: adam_optreg(make_params(shapes), kw)

                r = time_pairs(make({"foreach": True}), make({"foreach": False}), pairs, 5)
                sweep.append({"family": family, "numel": n, "tensors": len(shapes), **r})
                print(
                    f"  {family:<7} {len(shapes):>4} tensors {n:>11,} params: "
                    f"{r['ratio_median']:.3f} [{r['ratio_q1']:.3f}, {r['ratio_q3']:.3f}]  "
                    f"single {r['b_median_us']:.0f} us",
                    flush=True,
                )

    out = {"machine": info, "torch_fused_on_cpu": fused, "results": results, "sweep": sweep}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nwrote {args.out}")
    return out


if __name__ == "__main__":
    main()
