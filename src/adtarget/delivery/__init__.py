"""adtarget.delivery."""
