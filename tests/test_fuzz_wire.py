"""The wire fuzz benchmark's short run (tests/fuzz_wire.py): 20,000 mutated inputs, no failure.

The benchmark itself is ``python tests/fuzz_wire.py --inputs 1000000``; docs/security.md has
its figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fuzz_wire import run


def test_twenty_thousand_mutated_wire_inputs_raise_only_frame_or_auth_errors() -> None:
    result = run(20_000, seed=15)
    assert result["failures"] == 0, result["first_failures"]
    assert set(result["per_target"]) == {
        "frame_decoder", "parse_items", "decode_message", "unpack_control", "hs1", "hs2", "hs3",
    }  # fmt: skip
    assert result["outcomes"]["FrameError"] > 0 and result["outcomes"]["accepted"] > 0
