"""sedma."""
