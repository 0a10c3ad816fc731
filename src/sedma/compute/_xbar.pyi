# Type stub of the compiled read path (_xbar.c); sedma.compute.xbar_kernel is its only caller.
from typing import Any

def fused_read(*args: Any) -> int: ...
