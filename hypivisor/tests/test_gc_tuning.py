"""The hypivisor's collector settings (hypivisor.__main__.tune_gc): fewer collections, none over start-up's objects."""

from __future__ import annotations

import gc

from hypivisor.__main__ import GC_GEN0, tune_gc


def test_tune_gc_raises_the_first_threshold_and_freezes_what_start_up_made() -> None:
    before = gc.get_threshold()
    try:
        start_up = object.__new__(type("StartUp", (), {}))  # a container object made "at start-up"
        tune_gc()
        assert gc.get_threshold() == (GC_GEN0, before[1], before[2])
        assert gc.get_freeze_count() > 0
        assert not any(o is start_up for o in gc.get_objects())  # frozen: no collection looks at it again
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
