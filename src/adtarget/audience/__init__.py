"""adtarget.audience."""
