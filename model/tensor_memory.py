"""Peak tensor memory of a call, as the CPU allocator counts it (torch.profiler memory events).

Resident-set peaks also count the free memory glibc keeps for reuse and move by up to 60%
between identical processes; this count is the memory the code itself holds. Used by the memory
tests and `benchmarks/model_speed.py`.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.profiler import ProfilerActivity, profile

__all__ = ["peak_live_bytes"]


def peak_live_bytes(fn: Callable[[], object]) -> int:
    """Peak of CPU tensor bytes allocated and not yet freed while `fn` runs."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak
