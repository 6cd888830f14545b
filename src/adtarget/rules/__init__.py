"""adtarget.rules."""
