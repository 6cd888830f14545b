"""adtarget.api."""
