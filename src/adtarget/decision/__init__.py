"""adtarget.decision."""
