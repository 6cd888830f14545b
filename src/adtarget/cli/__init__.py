"""adtarget.cli."""
